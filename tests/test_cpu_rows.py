"""CPU row kernels (lgc.backends.cpu_rows): the float16-vector softmax / log_softmax and the
split row loops of reductions and fused row kernels, against NumPy; GPU targets keep
their kernels."""
import numpy as np
import pytest

from lgc.api import Executable
from lgc.backends.fusion import plan
from lgc.backends.program import lower
from lgc.backends.target import GFX803, use_target
from lgc.ir import dtypes
from lgc.ir.builder import GraphBuilder
from lgc.ir.graph import TensorType

F32 = dtypes.f32


def _run(g, feeds, fuse=True):
    p = lower(g, fuse=fuse)
    return Executable(p, g).run(feeds), p.source


def _np_softmax(x, log=False):
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        z = x - np.max(x, axis=-1, keepdims=True)
        s = np.sum(np.exp(z), axis=-1, keepdims=True)
        return z - np.log(s) if log else np.exp(z) / s


def _softmax_graph(shape, log=False, axis=-1):
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, shape))
    return b.build([b.op("log_softmax" if log else "softmax", [x], {"axis": axis % len(shape)})])


def _rows(shape, seed=0, scale=3.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape", [(5, 37), (3, 1), (4, 16), (2, 3, 40), (7, 15), (2, 130)])
def test_softmax_vector_kernel(shape, log):
    x = _rows(shape)
    out, src = _run(_softmax_graph(shape, log), {"x": x})
    assert "vload16" in src or shape[-1] < 16
    np.testing.assert_allclose(out[next(iter(out))], _np_softmax(x, log), rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_stable_with_large_values_and_minus_inf(log):
    x = _rows((6, 45), 1)
    x[0] += 1e4                 # exp would overflow without the max subtracted
    x[1] -= 1e4
    x[2, ::3] = -np.inf         # masked entries: exactly 0 (log: -inf)
    x[3, 40] = 88.0 * 2
    out, _ = _run(_softmax_graph(x.shape, log), {"x": x})
    y = out[next(iter(out))]
    ref = _np_softmax(x, log)
    assert np.all(np.isfinite(y[[0, 1, 3]]))
    if log:
        assert np.all(y[2, ::3] == -np.inf)
        fin = np.isfinite(ref)
        np.testing.assert_allclose(y[fin], ref[fin], rtol=1e-5, atol=2e-5)
    else:
        assert np.all(y[2, ::3] == 0)
        np.testing.assert_allclose(y, ref, rtol=2e-6, atol=2e-6)


def test_softmax_nan_propagates_per_row():
    x = _rows((3, 40), 2)
    x[1, 33] = np.nan           # in the scalar tail; a NaN in the vector part too
    x[2, 5] = np.nan
    out, _ = _run(_softmax_graph(x.shape), {"x": x})
    y = out[next(iter(out))]
    assert np.all(np.isnan(y[1])) and np.all(np.isnan(y[2])) and not np.any(np.isnan(y[0]))


def test_softmax_other_axis_and_gpu_keep_their_kernels(monkeypatch):
    x = _rows((4, 24, 8), 3)
    out, src = _run(_softmax_graph(x.shape, axis=1), {"x": x})
    assert "vload16" not in src
    ref = _np_softmax(np.moveaxis(x, 1, -1))
    np.testing.assert_allclose(out[next(iter(out))], np.moveaxis(ref, -1, 1), rtol=2e-6, atol=2e-6)
    with use_target(GFX803):
        assert "vload16" not in lower(_softmax_graph((4, 64))).source
        assert "acc[16]" not in lower(_reduce_graph("reduce_sum", (8, 64))).source
    monkeypatch.setenv("LGC_CPU_ROWVEC", "0")
    assert "vload16" not in lower(_softmax_graph((4, 64))).source


def _reduce_graph(op, shape):
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, shape))
    return b.build([b.op(op, [x], {"axes": (len(shape) - 1,), "keepdims": 0})])


@pytest.mark.parametrize("op,ref", [("reduce_sum", np.sum), ("reduce_max", np.max),
                                    ("reduce_mean", np.mean), ("reduce_min", np.min)])
@pytest.mark.parametrize("shape", [(5, 48), (3, 36), (4, 33), (6, 1)])
def test_reduce_innermost_split(op, ref, shape):
    x = _rows(shape, 4)
    out, src = _run(_reduce_graph(op, shape), {"x": x})
    if shape[-1] % 16 == 0:
        assert "acc[16]" in src
    np.testing.assert_allclose(out[next(iter(out))], ref(x.astype(np.float64), axis=-1),
                               rtol=1e-5, atol=1e-5)


def test_reduce_max_split_propagates_nan():
    x = _rows((3, 32), 5)
    x[1, 17] = np.nan
    out, _ = _run(_reduce_graph("reduce_max", x.shape), {"x": x})
    y = out[next(iter(out))]
    assert np.isnan(y[1]) and np.all(np.isfinite(y[[0, 2]]))


def _layer_norm_relu(shape):
    """Layer norm with scale, bias and a relu epilogue: one row kernel."""
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, shape))
    n = shape[-1]
    scale, bias = b.input("scale", TensorType(F32, (n,))), b.input("bias", TensorType(F32, (n,)))
    ax = (len(shape) - 1,)
    mean = b.op("reduce_mean", [x], {"axes": ax})
    d = b.op("sub", [x, mean])
    var = b.op("reduce_mean", [b.op("mul", [d, d])], {"axes": ax})
    inv = b.op("reciprocal", [b.op("sqrt", [b.op("add", [var, b.const(np.float32(1e-5))])])])
    y = b.op("add", [b.op("mul", [b.op("mul", [d, inv]), scale]), bias])
    return b.build([b.op("relu", [y])])


@pytest.mark.parametrize("shape", [(6, 40), (7, 33), (3, 1), (2, 5, 64)])
def test_fused_layer_norm_with_epilogue(shape):
    g = _layer_norm_relu(shape)
    assert len(plan(g).groups) == 1
    rng = np.random.default_rng(6)
    n = shape[-1]
    feeds = {"x": _rows(shape, 7) + 5.0, "scale": rng.standard_normal(n).astype(np.float32),
             "bias": rng.standard_normal(n).astype(np.float32)}
    out, src = _run(g, feeds)
    x = feeds["x"].astype(np.float64)
    d = x - x.mean(-1, keepdims=True)
    ref = np.maximum(d / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-5) * feeds["scale"]
                     + feeds["bias"], 0)
    np.testing.assert_allclose(out[next(iter(out))], ref, rtol=1e-4, atol=1e-4)
    if n % 8 == 0:
        assert "for (int j = 0; j < 8; ++j) {" in src or "j < 16; ++j) {" in src


@pytest.mark.parametrize("extra", ["none", "prologue", "epilogue"])
@pytest.mark.parametrize("shape", [(12, 64), (5, 37), (4, 8, 24)])
def test_fused_decomposed_softmax(shape, extra):
    """max/exp/sum/div (after an elementwise prologue x * 0.5, or not) becomes the vector
    softmax kernel; with an epilogue (+ 1) it stays a generic row kernel with split row
    loops."""
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, shape))
    if extra == "prologue":
        x = b.op("mul", [x, b.const(np.float32(0.5))])
    ax = (len(shape) - 1,)
    e = b.op("exp", [b.op("sub", [x, b.op("reduce_max", [x], {"axes": ax})])])
    y = b.op("div", [e, b.op("reduce_sum", [e], {"axes": ax})])
    if extra == "epilogue":
        y = b.op("add", [y, b.const(np.float32(1.0))])
    g = b.build([y])
    assert len(plan(g).groups) == 1
    xv = _rows(shape, 8)
    xv[0, ..., 1] = -np.inf
    out, src = _run(g, {"x": xv})
    assert ("vload16" in src) == (extra != "epilogue")
    ref = _np_softmax(xv * np.float32(0.5) if extra == "prologue" else xv)
    ref = ref + 1 if extra == "epilogue" else ref
    np.testing.assert_allclose(out[next(iter(out))], ref, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("n", [40, 16, 7])
def test_softmax_takes_masking_prologue(n, log):
    """Attention masking (where(mask > 0, x * scale, -inf)) is computed inside the vector
    softmax kernel on CPU targets: one kernel; the GPU plan keeps the softmax alone."""
    shape = (2, 3, 5, n)
    b = GraphBuilder()
    x = b.input("x", TensorType(F32, shape))
    m = b.input("m", TensorType(dtypes.i32, (2, 1, 1, n)))
    keep = b.op("gt", [m, b.const(np.int32(0))])
    s = b.op("where", [keep, b.op("mul", [x, b.const(np.float32(0.125))]),
                       b.const(np.float32(-1e9))])
    g = b.build([b.op("log_softmax" if log else "softmax", [s], {"axis": 3})])
    assert [[n.op for n in gr.nodes] for gr in plan(g).groups] == [
        ["gt", "mul", "where", "log_softmax" if log else "softmax"]]
    assert len(plan(g, GFX803).groups) == 2
    rng = np.random.default_rng(9)
    xv = (rng.standard_normal(shape) * 4).astype(np.float32)
    mv = (rng.random((2, 1, 1, n)) > 0.3).astype(np.int32)
    mv[..., 0] = 1
    out, src = _run(g, {"x": xv, "m": mv})
    assert src.count("__kernel") == 1
    ref = _np_softmax(np.where(mv > 0, xv * np.float32(0.125), np.float32(-1e9)), log)
    y = out[next(iter(out))]
    if log:     # masked entries are about -1e9: compare them relatively
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=2e-5)
    else:
        np.testing.assert_allclose(y, ref, rtol=2e-6, atol=2e-6)
