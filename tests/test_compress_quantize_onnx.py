"""ONNX's quantized operators in lgc against onnxruntime: models quantized by
onnxruntime.quantization (static QDQ and QOperator, per-tensor and per-channel, on given
calibration data; dynamic) give onnxruntime's outputs to within one quantization step."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import lgc

ort = pytest.importorskip("onnxruntime")
quant = pytest.importorskip("onnxruntime.quantization")


def _cnn(path, batch=4):
    rng = np.random.default_rng(0)
    inits = {"W1": rng.standard_normal((8, 1, 3, 3)) * 0.5, "B1": rng.standard_normal(8) * 0.1,
             "W2": rng.standard_normal((16, 8, 3, 3)) * 0.15, "B2": rng.standard_normal(16) * 0.1,
             "W3": rng.standard_normal((10, 64)) * 0.05, "B3": rng.standard_normal(10) * 0.1}
    nodes = [h.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             h.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
             h.make_node("Conv", ["p1", "W2", "B2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv2"),
             h.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             h.make_node("Flatten", ["r2"], ["f"], name="flat"),
             h.make_node("Gemm", ["f", "W3", "B3"], ["y"], transB=1, name="fc")]
    g = h.make_graph(nodes, "cnn", [h.make_tensor_value_info("x", T.FLOAT, [batch, 1, 8, 8])],
                     [h.make_tensor_value_info("y", T.FLOAT, [batch, 10])],
                     [nh.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


class _Reader(quant.CalibrationDataReader):
    def __init__(self, xs):
        self.it = iter([{"x": x} for x in xs])

    def get_next(self):
        return next(self.it, None)


def _output_step(model: onnx.ModelProto) -> float:
    """The scale of the DequantizeLinear producing the graph output (one quantization step)."""
    out = model.graph.output[0].name
    inits = {i.name: nh.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.output[0] == out and n.op_type == "DequantizeLinear":
            return float(inits[n.input[1]])
    raise AssertionError("no DequantizeLinear at the output")


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_quantize_static_matches_onnxruntime(tmp_path, fmt, per_channel):
    src = _cnn(str(tmp_path / "cnn.onnx"))
    rng = np.random.default_rng(1)
    calib = [rng.standard_normal((4, 1, 8, 8)).astype(np.float32) for _ in range(4)]
    out = str(tmp_path / "q.onnx")
    quant.quantize_static(src, out, _Reader(calib), quant_format=getattr(quant.QuantFormat, fmt),
                          per_channel=per_channel, activation_type=quant.QuantType.QUInt8,
                          weight_type=quant.QuantType.QInt8)
    model = onnx.load(out)
    ops = {n.op_type for n in model.graph.node}
    assert ("QLinearConv" in ops) == (fmt == "QOperator")
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = lgc.compile(out)(x)
    step = _output_step(model)
    assert np.abs(got - ref).max() <= step * 1.001, (np.abs(got - ref).max(), step)
    assert np.abs(ref).max() > 10 * step          # the comparison is not of near-zeros
    if fmt == "QDQ" and per_channel:
        # QDQ weights fold to float32; per-channel int8 requantization gets the same integers
        # back (each channel's largest |q| is 127), so the result is unchanged and 4x smaller
        from lgc.compress import quantize_graph
        from lgc.ir.stats import graph_stats
        from lgc.passes import optimize
        g = optimize(lgc.onnx.load(out))
        q = quantize_graph(g, None, mode="int8-weights")
        assert graph_stats(q).param_bytes < 0.3 * graph_stats(g).param_bytes
        assert np.abs(lgc.compile(q)(x) - ref).max() <= step * 1.001


def test_quantize_dynamic_matches_onnxruntime(tmp_path):
    """DynamicQuantizeLinear + MatMulInteger (int8 weights kept 8-bit) + Mul."""
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((64, 96)) * 0.2).astype(np.float32)
    w2 = (rng.standard_normal((96, 10)) * 0.2).astype(np.float32)
    nodes = [h.make_node("MatMul", ["x", "W1"], ["a"], name="fc1"), h.make_node("Relu", ["a"], ["r"]),
             h.make_node("MatMul", ["r", "W2"], ["y"], name="fc2")]
    g = h.make_graph(nodes, "mlp", [h.make_tensor_value_info("x", T.FLOAT, [3, 64])],
                     [h.make_tensor_value_info("y", T.FLOAT, [3, 10])],
                     [nh.from_array(w1, "W1"), nh.from_array(w2, "W2")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    src, out = str(tmp_path / "mlp.onnx"), str(tmp_path / "mlp_dyn.onnx")
    onnx.save(m, src)
    quant.quantize_dynamic(src, out, weight_type=quant.QuantType.QInt8)
    assert "MatMulInteger" in {n.op_type for n in onnx.load(out).graph.node}
    x = rng.standard_normal((3, 64)).astype(np.float32)
    ref = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    model = lgc.compile(out)
    np.testing.assert_allclose(model(x), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    graph = lgc.onnx.load(out)
    from lgc.passes import optimize
    weights = [n.output.dtype.name for n in optimize(graph).nodes
               if n.op == "const" and n.output.type.size >= 64 * 96]
    assert weights == ["i8"]           # the 64x96 weight stays 8-bit


def test_qoperator_contrib_ops_match_onnxruntime(tmp_path):
    """onnxruntime's QOperator format also emits com.microsoft QLinearAdd, QLinearMul,
    QLinearConcat and QLinearGlobalAveragePool (a residual block, a gate, a concat, a pool)."""
    rng = np.random.default_rng(0)
    inits = {"W1": rng.standard_normal((16, 3, 3, 3)) * 0.3, "B1": rng.standard_normal(16) * 0.1,
             "W2": rng.standard_normal((16, 16, 3, 3)) * 0.1, "B2": rng.standard_normal(16) * 0.1,
             "W3": rng.standard_normal((16, 16, 1, 1)) * 0.2, "W4": rng.standard_normal((10, 32)) * 0.2,
             "B4": rng.standard_normal(10) * 0.1}
    nodes = [h.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             h.make_node("Relu", ["c1"], ["r1"]),
             h.make_node("Conv", ["r1", "W2", "B2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             h.make_node("Add", ["c2", "r1"], ["s"], name="add"), h.make_node("Relu", ["s"], ["r2"]),
             h.make_node("Conv", ["r2", "W3"], ["c3"], name="conv3"),
             h.make_node("Mul", ["c3", "r2"], ["m"], name="mul"),
             h.make_node("Concat", ["m", "r2"], ["cc"], axis=1, name="cat"),
             h.make_node("GlobalAveragePool", ["cc"], ["gp"], name="gap"),
             h.make_node("Flatten", ["gp"], ["f"]),
             h.make_node("Gemm", ["f", "W4", "B4"], ["y"], transB=1, name="fc")]
    g = h.make_graph(nodes, "res", [h.make_tensor_value_info("x", T.FLOAT, [2, 3, 8, 8])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2, 10])],
                     [nh.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    src, out = str(tmp_path / "res.onnx"), str(tmp_path / "res_q.onnx")
    onnx.save(m, src)
    calib = [rng.standard_normal((2, 3, 8, 8)).astype(np.float32) for _ in range(4)]
    quant.quantize_static(src, out, _Reader(calib), quant_format=quant.QuantFormat.QOperator,
                          per_channel=True)
    model = onnx.load(out)
    contrib = {n.op_type for n in model.graph.node if n.domain == "com.microsoft"}
    assert {"QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearGlobalAveragePool"} <= contrib
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(out, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    step = _output_step(model)
    assert np.abs(lgc.compile(out)(x) - ref).max() <= step * 1.001
