"""Graph statistics: parameters and FLOPs counted from the types."""
import numpy as np

from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType
from lgc.ir.stats import graph_stats


def test_conv_matmul_flops_and_params():
    b = GraphBuilder()
    x = b.input("x", TensorType(dtypes.f32, (1, 3, 8, 8)))
    w = b.const(np.zeros((4, 3, 3, 3), np.float32))
    y = b.op("conv", [x, w], {"strides": (1, 1), "pads": (1, 1, 1, 1), "dilations": (1, 1), "group": 1})
    flat = b.op("reshape", [y], {"shape": (1, 256)})
    m = b.const(np.zeros((256, 10), np.float32))
    z = b.op("matmul", [flat, m])
    st = graph_stats(b.build([z]))
    assert st.params == 4 * 3 * 3 * 3 + 256 * 10
    assert st.param_bytes == 4 * st.params
    assert st.flops == 2 * (4 * 8 * 8) * (3 * 3 * 3) + 2 * 10 * 256
    assert st.ops["conv"] == 1 and st.ops["matmul"] == 1 and "const" not in st.ops
