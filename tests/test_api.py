"""The Python API: compile, run, per-shape caching, save/load, checked against onnxruntime."""
import numpy as np
import pytest

import lgc
from lgc.errors import InputError, ModelError, UnsupportedOp

ort = pytest.importorskip("onnxruntime")


def _ort_run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


def test_compile_run_matches_onnxruntime(small_model_path):
    model = lgc.compile(small_model_path)
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    y, z = model(x)
    ry, rz = _ort_run(small_model_path, x)
    np.testing.assert_allclose(y, ry, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(z, rz, rtol=1e-5, atol=1e-6)
    out = model.run({"x": x})
    assert list(out) == ["y", "z"]


def test_symbolic_batch_compiles_per_shape_and_caches(small_model_path):
    model = lgc.compile(small_model_path)
    for n in (1, 5, 1):
        x = np.ones((n, 4), np.float32)
        assert model(x)[0].shape == (n, 4)
    assert len(model._cache) == 2


def test_graph_load_and_compile(small_model_path):
    g = lgc.onnx.load(small_model_path, input_shapes={"x": (2, 4)})
    exe = lgc.compile(g)
    y, z = exe(np.zeros((2, 4), np.float32))
    assert y.shape == (2, 4)
    with pytest.raises(ModelError, match="symbolic"):
        lgc.onnx.load(small_model_path)


def test_save_and_load_give_same_results(small_model_path, tmp_path):
    model = lgc.compile(small_model_path)
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    exe = model.executable({"x": lgc.api.TensorType(lgc.ir.dtypes.f32, (2, 4))})
    exe.save(tmp_path / "m.lgc")
    loaded = lgc.load(tmp_path / "m.lgc")
    for a, b in zip(exe(x), loaded(x)):
        np.testing.assert_array_equal(a, b)
    assert "mul" in loaded.ir_text


def test_wrong_inputs_are_clear_errors(small_model_path):
    model = lgc.compile(small_model_path)
    with pytest.raises(InputError, match="unknown input 'nope'"):
        model.run({"nope": np.zeros((1, 4), np.float32)})
    with pytest.raises(InputError, match=r"input 'x' has shape \(1, 5\)"):
        model(np.zeros((1, 5), np.float32))
    with pytest.raises(InputError, match="dtype float64"):
        model(np.zeros((1, 4), np.float64))
    with pytest.raises(InputError, match="missing input 'x'"):
        model.run({})
    assert model(np.zeros((1, 4), np.float32))[0].shape == (1, 4)  # still usable


def test_bad_model_bytes_are_clear_errors(small_model_path):
    data = small_model_path.read_bytes()
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        lgc.compile(data[: len(data) // 2])
    with pytest.raises(ModelError):
        lgc.compile(b"\x00garbage\xff" * 10)
    with pytest.raises(ModelError, match="no such file"):
        lgc.compile("/nonexistent/model.onnx")


def test_unsupported_operator_names_op_node_and_opset():
    from onnx import TensorProto, helper
    node = helper.make_node("FancyOp", ["x"], ["y"], name="weird", domain="")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOp, match=r"FancyOp.*'weird'.*opset 17"):
        lgc.compile(m)  # at load time, before any input is seen


def test_external_data_model(tmp_path):
    import onnx
    from tests.conftest import make_small_model
    model = make_small_model()
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").exists()
    x = np.ones((2, 4), np.float32)
    ref = lgc.compile(make_small_model())(x)
    for a, b in zip(lgc.compile(path)(x), ref):
        np.testing.assert_array_equal(a, b)


def test_backend_interface(small_model_path):
    import onnx
    from onnx import helper
    backend = lgc.onnx.backend
    assert backend.supports_device("CPU")
    rep = backend.prepare(onnx.load(str(small_model_path)))
    x = np.ones((2, 4), np.float32)
    y, z = rep.run([x])
    assert y.shape == (2, 4)
    node = helper.make_node("Add", ["a", "b"], ["c"])
    (c,) = backend.run_node(node, [np.ones(3, np.float32), np.arange(3, dtype=np.float32)])
    np.testing.assert_array_equal(c, [1, 2, 3])
