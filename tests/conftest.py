import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

warnings.filterwarnings("ignore", category=DeprecationWarning)


def make_small_model(path=None, batch="N"):
    """y = relu(x * w + b), z = exp(y) - 1, with a symbolic batch dimension."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(4).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["xw"], name="scale"),
        helper.make_node("Add", ["xw", "b"], ["pre"], name="shift"),
        helper.make_node("Relu", ["pre"], ["y"], name="act"),
        helper.make_node("Exp", ["y"], ["ey"], name="exp"),
        helper.make_node("Sub", ["ey", "one"], ["z"], name="minus_one"),
    ]
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [batch, 4])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(np.array(1, np.float32), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path:
        onnx.save(model, str(path))
    return model


@pytest.fixture
def small_model_path(tmp_path):
    p = tmp_path / "small.onnx"
    make_small_model(p)
    return p
