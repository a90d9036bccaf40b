"""INT8 quantization: the quantized kernels against their NumPy references, the quantization
pass (static, weight-only, dynamic; keep-float; the drift budget), observers, calibration
loading and `lgc compile --quantize ... --report FILE`."""
import json

import numpy as np
import pytest

import lgc
from lgc.ops.quant import tile_weights
from lgc.compress import find_layers, load_calibration, quantize, quantize_graph
from lgc.compress.observers import Entropy, MinMax, Percentile, symmetric_int8, uint8_params
from lgc.compress.report import compression_report, drift
from lgc.errors import InputError
from lgc.ir.graph import TensorType
from lgc.ir import dtypes
from lgc.testing import check_ops
from lgc.trace import bind
import lgc.numpy as lnp
import lgc.nn as nn

RNG = np.random.default_rng(0)


def _i8(shape):
    return RNG.integers(-127, 128, shape).astype(np.int8)


def _f(shape, s=1.0):
    return (RNG.standard_normal(shape) * s).astype(np.float32)


# ---- kernels -------------------------------------------------------------------------------

def test_qmatmul_kernels_match_reference():
    cases = []
    for M, K, N in [(1, 64, 10), (5, 33, 17), (16, 40, 64), (3, 5, 1), (9, 7, 24)]:
        w, s, b = _i8((K, N)), RNG.uniform(1e-3, 1e-2, N).astype(np.float32), _f(N)
        cases.append(("qmatmul", [_f((M, K)), w, s, b], {}))
        xq = RNG.integers(0, 256, (2, M, K)).astype(np.uint8)
        cases.append(("qmatmul", [xq, w, s, b, np.float32(0.05), np.float32(100)], {}))
        xs = RNG.integers(-128, 128, (M, K)).astype(np.int8)
        cases.append(("qmatmul", [xs, w, s, b, np.float32(0.02), np.float32(-5)], {}))
        rows = (2, M, 1)          # a scale and zero point per row (dynamic quantization)
        cases.append(("qmatmul", [xq, w, s, b, RNG.uniform(0.01, 0.1, rows).astype(np.float32),
                                  RNG.integers(0, 255, rows).astype(np.float32)], {}))
    check_ops(cases, rtol=1e-5, atol=1e-4)


def test_qconv_kernels_match_reference():
    cases = []
    for xs, ws, at in [((1, 3, 9, 9), (8, 3, 3, 3), {"pads": (1, 1, 1, 1)}),
                       ((2, 4, 8, 8), (6, 4, 1, 1), {}),
                       ((1, 4, 9, 9), (4, 2, 3, 3), {"strides": (2, 2), "group": 2, "pads": (0, 1, 0, 1)}),
                       ((1, 2, 13), (20, 2, 5), {"pads": (2, 2), "dilations": (2,)})]:
        w, s, b = _i8(ws), RNG.uniform(1e-3, 1e-2, ws[0]).astype(np.float32), _f(ws[0])
        cases.append(("qconv", [_f(xs), w, s, b], at))
        xq = RNG.integers(0, 256, xs).astype(np.uint8)
        cases.append(("qconv", [xq, w, s, b, np.float32(0.05), np.float32(30)], at))
        for tm in (4, 8):     # weights stored tiled: tm output channels per vector load
            wt = tile_weights(w, tm, at.get("group", 1))
            tiled = {**at, "tm": tm, "w_shape": ws}
            cases.append(("qconv", [_f(xs), wt, s, b], tiled))
            cases.append(("qconv", [xq, wt, s, b, np.float32(0.05), np.float32(30)], tiled))
    check_ops(cases, rtol=1e-5, atol=1e-4)


def test_quantize_op_rounds_half_to_even_and_saturates():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1000.0, -1000.0, 0.26], np.float32)
    (got,) = lgc.testing.run_op("quantize", [x, np.float32(1), np.float32(0)], {"to": "i8"})
    np.testing.assert_array_equal(got, [0, 2, 2, 0, -2, 127, -128, 0])
    (got,) = lgc.testing.run_op("quantize", [x, np.float32(0.5), np.float32(10)], {"to": "u8"})
    np.testing.assert_array_equal(got, [11, 13, 15, 9, 7, 255, 0, 11])


def test_requantize_fuses_into_the_layer_epilogue():
    """conv -> relu -> quantize(u8) is one kernel storing bytes, and right."""
    w, s, b = _i8((8, 3, 3, 3)), RNG.uniform(1e-3, 1e-2, 8).astype(np.float32), _f(8)

    def f(x):
        y = nn.relu(bind("qconv", x, w, s, b, pads=(1, 1, 1, 1)))
        return bind("quantize", y, np.float32(0.01), np.float32(3.0), to="u8")

    x = _f((1, 3, 6, 6))
    g = lgc.make_ir(f)(x)
    exe = lgc.compile(g)
    assert len(exe.program.launches) == 1
    y = np.maximum(lgc.testing.reference_op("qconv", [x, w, s, b], {"pads": (1, 1, 1, 1)})[0], 0)
    want = np.clip(np.rint(y / np.float32(0.01)) + 3, 0, 255)
    got = exe(x).astype(np.float64)
    assert np.abs(got - want).max() <= 1 and np.mean(got != want) < 0.01


# ---- observers and weights ---------------------------------------------------------------------

def test_observers():
    x = RNG.standard_normal(200_000)
    x[0] = 60.0                                         # one outlier
    mm, pc, en = MinMax(), Percentile(99.9), Entropy()
    for part in np.array_split(x, 4):                   # growing ranges merge histogram bins
        for o in (mm, pc, en):
            o.update(part)
    assert mm.range() == (x.min(), 60.0)
    lo, hi = pc.range()
    assert 3.0 < hi < 3.8 and -3.8 < lo < -3.0         # |x| 99.9th percentile ~ 3.29
    lo, hi = en.range()
    assert 2.0 < hi < 10.0                              # clipped far below the outlier
    scale, zero = uint8_params(0.0, 6.0)
    assert zero == 0 and np.isclose(scale, 6 / 255)
    scale, zero = uint8_params(-1.0, 3.0)
    assert np.isclose(zero, 64) and np.isclose(scale, 4 / 255)


def test_symmetric_int8_per_channel():
    w = _f((16, 5)) * np.arange(1, 6, dtype=np.float32)
    q, s = symmetric_int8(w, 1)
    assert q.dtype == np.int8 and s.shape == (5,) and np.abs(q).max() == 127
    assert np.abs(q * s - w).max(axis=0).max() <= s.max() / 2 + 1e-7


# ---- the pass ----------------------------------------------------------------------------------

W1, B1 = _f((8, 3, 3, 3), 0.3), _f(8, 0.1)
W2 = _f((8 * 6 * 6, 10), 0.05)


def _cnn(x):
    h = nn.relu(bind("conv", x, W1, B1, pads=(1, 1, 1, 1)))
    return lnp.reshape(h, (x.shape[0], -1)) @ W2


@pytest.fixture(scope="module")
def cnn():
    g = lgc.make_ir(_cnn)(_f((4, 3, 6, 6)))
    feeds = [{g.input_names[0]: _f((4, 3, 6, 6))} for _ in range(4)]
    return g, feeds


def test_modes_shrink_weights_and_stay_close(cnn):
    g, feeds = cnn
    stages = [(m, quantize_graph(g, feeds, mode=m)) for m in ("int8", "int8-weights", "dynamic")]
    rep = compression_report(g, stages, feeds, runs=1)
    base = rep.stages[0]
    for st in rep.stages[1:]:
        assert st.param_bytes <= 0.3 * base.param_bytes, st
        assert st.cosine_min > 0.999, st
        assert st.max_abs_err < 0.05, st
    ops = {n.op for n in stages[0][1].nodes}
    assert {"qconv", "qmatmul", "quantize"} <= ops and "conv" not in ops
    assert "quantize" not in {n.op for n in stages[1][1].nodes}
    dyn = {n.op for n in stages[2][1].nodes}
    assert "reduce_max" in dyn and "qmatmul" in dyn
    text = rep.table()
    assert "int8-weights" in text and "cos min" in text


def test_keep_float_and_drift_budget(cnn):
    g, feeds = cnn
    names = [la.name for la in find_layers(g)]
    assert len(names) == 2
    res = quantize(g, feeds, keep_float=[names[1]])
    assert {n.op for n in res.graph.nodes} >= {"qconv", "matmul"}
    with pytest.raises(InputError, match="no quantizable layer named 'nope'"):
        quantize(g, feeds, keep_float=["nope"])
    loose = quantize(g, feeds, max_drift=0.5)
    assert loose.kept_float == [] and loose.drift <= 0.5
    tight = quantize(g, feeds, max_drift=1e-9)          # only all-float meets it
    assert sorted(tight.kept_float) == sorted(names) and tight.drift <= 1e-9
    mid = quantize(g, feeds, max_drift=loose.drift * 0.999)
    assert 1 <= len(mid.kept_float) and mid.drift <= loose.drift * 0.999
    with pytest.raises(InputError, match="needs calibration data"):
        quantize(g, None, mode="int8")


def test_drift_metrics():
    ref = [{"y": np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]], np.float32)}]
    got = [{"y": np.array([[1.0, 2.0, 2.9], [1.0, 3.0, 0.0]], np.float32)}]
    d = drift(ref, got)
    assert np.isclose(d["max_abs_err"], 2.0) and d["top1_agreement"] == 0.5
    assert d["cosine_min"] < 0.7 < d["cosine_mean"]


# ---- calibration data --------------------------------------------------------------------------

def test_load_calibration(tmp_path):
    types = {"x": TensorType(dtypes.f32, (2, 3))}
    np.savez(tmp_path / "d.npz", x=_f((6, 3)))
    feeds = load_calibration(str(tmp_path / "d.npz"), types)
    assert len(feeds) == 3 and feeds[0]["x"].shape == (2, 3)
    np.savez(tmp_path / "other.npz", images=_f((4, 2, 3)))   # one input: any name
    assert len(load_calibration(str(tmp_path / "other.npz"), types)) == 4
    folder = tmp_path / "npy"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"{i}.npy", _f((2, 3)))
    assert len(load_calibration(str(folder), types)) == 3
    with pytest.warns(UserWarning, match="accuracy .* unknown"):
        assert len(load_calibration("random", types, limit=2)) == 2
    np.savez(tmp_path / "bad.npz", x=_f((5, 4)))
    with pytest.raises(InputError, match="shape \\(5, 4\\)"):
        load_calibration(str(tmp_path / "bad.npz"), types)
    with pytest.raises(InputError, match="no such file"):
        load_calibration(str(tmp_path / "missing.npz"), types)


# ---- the command line ---------------------------------------------------------------------------

def _onnx_cnn(path):
    import onnx
    from onnx import TensorProto as T, helper as h, numpy_helper as nh
    nodes = [h.make_node("Conv", ["x", "W1", "B1"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
             h.make_node("Relu", ["c"], ["r"]), h.make_node("Flatten", ["r"], ["f"]),
             h.make_node("MatMul", ["f", "W2"], ["y"], name="fc")]
    g = h.make_graph(nodes, "cnn", [h.make_tensor_value_info("x", T.FLOAT, [4, 3, 6, 6])],
                     [h.make_tensor_value_info("y", T.FLOAT, [4, 10])],
                     [nh.from_array(W1, "W1"), nh.from_array(B1, "B1"), nh.from_array(W2, "W2")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


def _lgc(capsys, *args):
    from lgc.tools.cli import main
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_quantize_report(tmp_path, capsys):
    src = str(tmp_path / "cnn.onnx")
    _onnx_cnn(src)
    np.savez(tmp_path / "calib.npz", x=_f((16, 3, 6, 6)))
    out, rep = str(tmp_path / "q.lgc"), str(tmp_path / "rep.json")
    rc, stdout, err = _lgc(capsys, "compile", src, "-o", out, "--quantize", "int8", "--calibrate",
                           str(tmp_path / "calib.npz"), "--observer", "percentile", f"--report={rep}")
    assert rc == 0, err
    assert "quantize int8" in stdout and "cos min" in stdout
    data = json.loads(open(rep).read())
    names = [s["name"] for s in data["stages"]]
    assert names == ["float32", "quantize int8"] and data["samples"] == 4
    q = data["stages"][1]
    assert q["bytes_ratio"] < 0.3 and q["cosine_min"] > 0.999 and q["latency_ms"] > 0
    assert "passes" in data
    x = _f((4, 3, 6, 6))
    want = _cnn(x)
    got = lgc.load(out)(x)
    assert np.abs(got - np.asarray(want)).max() < 0.05
    rc, _, err = _lgc(capsys, "compile", src, "-o", out, "--keep-float", "fc")
    assert rc == 1 and "need a compression pass" in err
    rc, _, err = _lgc(capsys, "compile", src, "-o", out, "--quantize", "int8-weights", "--keep-float", "nope")
    assert rc == 1 and "lgc: error: --keep-float: no quantizable layer named 'nope'" in err


def test_cli_other_passes_and_bad_specs(tmp_path, capsys):
    """--precision, --prune and --decompose reach lgc.compress.fp16/prune/decompose and
    appear as stages of the report; a bad spec is a one-line error."""
    src = str(tmp_path / "cnn.onnx")
    _onnx_cnn(src)
    rep = str(tmp_path / "rep.json")
    rc, _, err = _lgc(capsys, "compile", src, "-o", str(tmp_path / "p.lgc"), "--prune", "channels:0.5",
                      "--precision", "fp16-weights", f"--report={rep}")
    assert rc == 0, err
    stages = json.loads(open(rep).read())["stages"]
    assert [s["name"] for s in stages] == ["float32", "prune channels:0.5", "precision fp16-weights"]
    assert stages[1]["param_bytes"] < stages[0]["param_bytes"]
    assert stages[2]["param_bytes"] < stages[1]["param_bytes"]
    rc, _, err = _lgc(capsys, "compile", src, "-o", str(tmp_path / "p.lgc"), "--decompose", "svd:2")
    assert rc == 1 and "--decompose 'svd:2': expected [compression|energy|rank:]NUMBER" in err


@pytest.mark.parametrize("k,stride,pad,M", [(3, 1, 1, 20), (1, 1, 0, 24), (3, 2, 1, 64), (5, 1, 2, 8)])
def test_cpu_panel_lowering_of_weight_only_qconv(monkeypatch, k, stride, pad, M):
    """On CPU targets a weight-only qconv runs as int8 row panels times the float panel
    GEMM's im2col (or packed image) panels, with its epilogue; same result as the op."""
    import lgc.backends.quant_kernels as qk
    monkeypatch.setattr(qk, "MIN_PANEL_FLOPS", 0)
    C, S = 16, 13
    w, b = _f((M, C, k, k), 0.1), _f(M)
    x = _f((2, C, S, S))
    g = lgc.make_ir(lambda x: nn.relu(bind("conv", x, w, b, pads=(pad,) * 4, strides=(stride,) * 2)))(x)
    q = quantize_graph(g, None, mode="int8-weights")
    node = next(n for n in q.nodes if n.op == "qconv")
    consts = q.constants()
    ref = lgc.testing.reference_op("qconv", [x] + [consts[v] for v in node.inputs[1:]], node.attrs)[0]
    exe = lgc.compile(q)
    assert any("qmatmul_panels" in name for name in exe.program.kernel_names)
    np.testing.assert_allclose(exe(x), np.maximum(ref, 0), rtol=1e-5, atol=1e-5)


def test_cpu_panel_lowering_of_int8_qconv(monkeypatch):
    import lgc.backends.quant_kernels as qk
    monkeypatch.setattr(qk, "MIN_PANEL_FLOPS", 0)
    w, s, b = _i8((24, 16, 3, 3)), RNG.uniform(1e-3, 1e-2, 24).astype(np.float32), _f(24)
    xq = RNG.integers(0, 256, (1, 16, 11, 11)).astype(np.uint8)
    args = [xq, w, s, b, np.float32(0.05), np.float32(30)]
    g = lgc.make_ir(lambda x: bind("qconv", x, *args[1:], pads=(1, 1, 1, 1)))(xq)
    exe = lgc.compile(g)
    assert any("qmatmul_panels" in name for name in exe.program.kernel_names)
    ref = lgc.testing.reference_op("qconv", args, {"pads": (1, 1, 1, 1)})[0]
    np.testing.assert_allclose(exe(xq), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("lead,K,N", [((5,), 33, 17), ((2, 7), 64, 48), ((3, 4), 16, 16)])
def test_cpu_panel_lowering_of_weight_only_qmatmul(monkeypatch, lead, K, N):
    import lgc.backends.quant_kernels as qk
    monkeypatch.setattr(qk, "MIN_PANEL_FLOPS", 0)
    w = _f((K, N), 0.1)
    x = _f(lead + (K,))
    q = quantize_graph(lgc.make_ir(lambda x: nn.relu(x @ w))(x), None, mode="int8-weights")
    node = next(n for n in q.nodes if n.op == "qmatmul")
    consts = q.constants()
    ref = lgc.testing.reference_op("qmatmul", [x] + [consts[v] for v in node.inputs[1:]])[0]
    exe = lgc.compile(q)
    assert any("qmatmul_bpanels" in name for name in exe.program.kernel_names)
    np.testing.assert_allclose(exe(x), np.maximum(ref, 0), rtol=1e-5, atol=1e-5)
