"""QuantizeLinear / DequantizeLinear / BitCast through lgc against onnxruntime and NumPy."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import lgc
from lgc.testing import check_op

ort = pytest.importorskip("onnxruntime")


def _model(nodes, inputs, outputs, inits, opset=21):
    g = helper.make_graph(nodes, "q", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


@pytest.mark.parametrize("zp_dtype,axis", [(np.uint8, None), (np.int8, 1), (np.int16, 0), (np.uint16, 1)])
def test_quantize_dequantize_roundtrip_matches_onnxruntime(zp_dtype, axis):
    rng = np.random.default_rng(0)
    x = rng.uniform(-4, 4, (3, 4)).astype(np.float32)
    n = 1 if axis is None else x.shape[axis]
    scale = rng.uniform(0.01, 0.05, n).astype(np.float32)
    zp = rng.integers(0, 5, n).astype(zp_dtype)
    if axis is None:
        scale, zp = scale[0], zp[0]
    attrs = {} if axis is None else {"axis": axis}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], **attrs)]
    tp = helper.np_dtype_to_tensor_dtype(np.dtype(zp_dtype))
    m = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
               [helper.make_tensor_value_info("q", tp, [3, 4]),
                helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
               [numpy_helper.from_array(np.asarray(scale), "s"), numpy_helper.from_array(np.asarray(zp), "z")])
    want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = lgc.compile(m)(x)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-6)


def test_bitcast_shares_bits():
    x = np.array([1.0, -2.5, np.inf, 0.0], np.float32)
    check_op("bitcast", [x], {"to": "i32"})
    check_op("bitcast", [np.array([-1, 5, 127], np.int8)], {"to": "u8"})
