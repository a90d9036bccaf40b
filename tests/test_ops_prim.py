"""lgc.ops.prim (the functions op rules are written with) against NumPy: every case runs
eagerly (op by op on the device) and inside one jitted graph, and the differentiable ones
under lgc.grad too (eagerly and jitted), against central differences of the NumPy reference.
Then prim's own semantics: weak Python scalars, no promotion, the same graphs as lgc.numpy."""
from __future__ import annotations

import numpy as np
import pytest

import lgc
import lgc.numpy as lnp
from lgc.ops import core, prim
from lgc.testing import numerical_grad

rng = np.random.default_rng(0)
INPUTS = {
    "x": rng.standard_normal((3, 4)).astype(np.float32),
    "y": rng.standard_normal((3, 4)).astype(np.float32),
    "p": rng.uniform(0.5, 2.0, (3, 4)).astype(np.float32),
    "t": rng.standard_normal((2, 3, 4)).astype(np.float32),
    "v": rng.standard_normal(4).astype(np.float32),
    "m": rng.standard_normal((4, 5)).astype(np.float32),
    "i": rng.integers(-6, 7, (3, 4)).astype(np.int32),
    "j": (rng.integers(1, 4, (3, 4)) * rng.choice([-1, 1], (3, 4))).astype(np.int32),
    "u8": rng.integers(0, 200, (3, 4)).astype(np.uint8),
    "b": rng.random((3, 4)) > 0.5,
    "c": rng.random((3, 4)) > 0.3,
    "idx": np.array([2, 0, 3, 1, 2], np.int32),
    "tidx": rng.integers(0, 4, (3, 2)).astype(np.int32),
}


def C(name, f, ref, *args, grad=False):
    """A case: prim's f and NumPy's ref on INPUTS[args]; grad: differentiate in args[0]."""
    return (name, f, ref, args, grad)


CASES = [
    # arithmetic, as rules write it with operators
    C("add", prim.add, np.add, "x", "y", grad=True),
    C("add_scalar", lambda x: prim.add(x, 2.0), lambda x: x + 2.0, "x", grad=True),
    C("add_broadcast", prim.add, np.add, "v", "x", grad=True),
    C("add_int", lambda i: prim.add(i, 3), lambda i: i + 3, "i"),
    C("sub", prim.sub, np.subtract, "x", "y", grad=True),
    C("sub_scalar_first", lambda x: prim.sub(2.0, x), lambda x: 2.0 - x, "x", grad=True),
    C("mul", prim.mul, np.multiply, "x", "y", grad=True),
    C("mul_int", prim.mul, np.multiply, "i", "j"),
    C("div", prim.div, np.divide, "x", "p", grad=True),
    C("div_int_truncates", prim.div, lambda i, j: np.trunc(i / j).astype(np.int32), "i", "j"),
    C("neg", prim.neg, np.negative, "x", grad=True),
    C("neg_int", prim.neg, np.negative, "i"),
    C("neg_uint_wraps", prim.neg, np.negative, "u8"),
    C("power", prim.power, np.power, "p", "y", grad=True),
    C("power_scalar", lambda p: prim.power(p, 3.0), lambda p: p ** 3.0, "p", grad=True),
    C("remainder", prim.remainder, np.remainder, "x", "p", grad=True),
    C("remainder_int", prim.remainder, np.remainder, "i", "j"),
    C("floor_divide", prim.floor_divide, np.floor_divide, "x", "p"),
    C("floor_divide_int", prim.floor_divide, np.floor_divide, "i", "j"),
    C("floor_divide_uint", lambda u: prim.floor_divide(u, 7), lambda u: u // 7, "u8"),
    C("maximum", prim.maximum, np.maximum, "x", "y", grad=True),
    C("minimum_scalar", lambda x: prim.minimum(x, 0.0), lambda x: np.minimum(x, 0.0), "x",
      grad=True),
    C("clip", lambda x: prim.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), "x", grad=True),
    C("clip_int_low_only", lambda i: prim.clip(i, 0), lambda i: np.maximum(i, 0), "i"),
    # comparisons and selection
    C("eq", prim.eq, np.equal, "i", "j"),
    C("ne_scalar", lambda i: prim.ne(i, 0), lambda i: i != 0, "i"),
    C("lt", prim.lt, np.less, "x", "y"),
    C("le", prim.le, np.less_equal, "i", "j"),
    C("gt_scalar", lambda x: prim.gt(x, 0.0), lambda x: x > 0.0, "x"),
    C("ge", prim.ge, np.greater_equal, "x", "y"),
    C("logical_and", prim.logical_and, np.logical_and, "b", "c"),
    C("where", prim.where, np.where, "b", "x", "y"),
    C("where_x", lambda x, b, y: prim.where(b, x, y), lambda x, b, y: np.where(b, x, y),
      "x", "b", "y", grad=True),
    C("where_scalar", lambda x, b: prim.where(b, x, 0.0), lambda x, b: np.where(b, x, 0.0),
      "x", "b", grad=True),
    C("where_scalars_only", lambda b: prim.where(b, 1.0, 0.0),
      lambda b: np.where(b, 1.0, 0.0), "b"),
    # unary
    C("exp", prim.exp, np.exp, "x", grad=True),
    C("log", prim.log, np.log, "p", grad=True),
    C("sqrt", prim.sqrt, np.sqrt, "p", grad=True),
    C("sin", prim.sin, np.sin, "x", grad=True),
    C("cos", prim.cos, np.cos, "x", grad=True),
    C("sinh", prim.sinh, np.sinh, "x", grad=True),
    C("cosh", prim.cosh, np.cosh, "x", grad=True),
    C("abs", prim.abs, np.abs, "x", grad=True),
    C("abs_int", prim.abs, np.abs, "i"),
    C("abs_uint", prim.abs, np.abs, "u8"),
    C("sign", prim.sign, np.sign, "x", grad=True),
    C("sign_int", prim.sign, np.sign, "i"),
    C("floor", prim.floor, np.floor, "x", grad=True),
    C("floor_int", prim.floor, lambda i: i, "i"),
    C("round", prim.round, np.round, "x", grad=True),
    C("round_decimals", lambda x: prim.round(x, 1), lambda x: np.round(x, 1), "x"),
    # conversion and creation
    C("astype_int", lambda x: prim.astype(x, np.int32), lambda x: x.astype(np.int32), "x"),
    C("astype_float", lambda i: prim.astype(i, np.float32), lambda i: i.astype(np.float32), "i"),
    C("astype_bool", lambda x: prim.astype(x, bool), lambda x: x != 0, "i"),
    C("astype_int64_narrowed", lambda i: prim.astype(i, np.int64), lambda i: i, "i"),
    C("asarray", lambda: prim.asarray(INPUTS["m"]), lambda: INPUTS["m"]),
    C("asarray_int64", lambda: prim.asarray(np.arange(3)), lambda: np.arange(3)),
    C("zeros", lambda: prim.zeros((2, 3)), lambda: np.zeros((2, 3))),
    C("ones_int", lambda: prim.ones(4, np.int32), lambda: np.ones(4, np.int32)),
    C("full", lambda: prim.full((2, 2), 3.5), lambda: np.full((2, 2), 3.5)),
    C("zeros_like", prim.zeros_like, np.zeros_like, "x"),
    C("ones_like_int", prim.ones_like, np.ones_like, "i"),
    C("full_like", lambda x: prim.full_like(x, 7.0), lambda x: np.full_like(x, 7.0), "x"),
    C("full_like_dtype", lambda x: prim.full_like(x, 2, np.int32),
      lambda x: np.full_like(x, 2, np.int32), "x"),
    C("arange", lambda: prim.arange(5), lambda: np.arange(5)),
    C("arange_step", lambda: prim.arange(1, 8, 2, dtype=np.float32),
      lambda: np.arange(1, 8, 2, dtype=np.float32)),
    C("arange_float", lambda: prim.arange(0.0, 1.0, 0.25), lambda: np.arange(0.0, 1.0, 0.25)),
    # shapes
    C("reshape", lambda t: prim.reshape(t, (4, -1)), lambda t: t.reshape(4, -1), "t", grad=True),
    C("reshape_flat", lambda x: prim.reshape(x, 12), lambda x: x.reshape(12), "x"),
    C("transpose", prim.transpose, np.transpose, "t", grad=True),
    C("transpose_axes", lambda t: prim.transpose(t, (1, -1, 0)),
      lambda t: np.transpose(t, (1, 2, 0)), "t", grad=True),
    C("swapaxes", lambda t: prim.swapaxes(t, 0, -1), lambda t: np.swapaxes(t, 0, -1), "t",
      grad=True),
    C("moveaxis", lambda t: prim.moveaxis(t, 0, -1), lambda t: np.moveaxis(t, 0, -1), "t",
      grad=True),
    C("moveaxis_many", lambda t: prim.moveaxis(t, (0, 1), (2, 0)),
      lambda t: np.moveaxis(t, (0, 1), (2, 0)), "t", grad=True),
    C("expand_dims", lambda x: prim.expand_dims(x, 1), lambda x: np.expand_dims(x, 1), "x",
      grad=True),
    C("expand_dims_many", lambda x: prim.expand_dims(x, (0, -1)),
      lambda x: np.expand_dims(x, (0, -1)), "x"),
    C("broadcast_to", lambda v: prim.broadcast_to(v, (3, 4)),
      lambda v: np.broadcast_to(v, (3, 4)), "v", grad=True),
    C("flip", lambda t: prim.flip(t, 1), lambda t: np.flip(t, 1), "t", grad=True),
    C("flip_all", prim.flip, np.flip, "t", grad=True),
    C("concatenate", lambda x, y: prim.concatenate([x, y], -1),
      lambda x, y: np.concatenate([x, y], -1), "x", "y", grad=True),
    C("concatenate_int", lambda i, j: prim.concatenate([i, j, i]),
      lambda i, j: np.concatenate([i, j, i]), "i", "j"),
    C("pad", lambda x: prim.pad(x, [(1, 0), (2, 1)]), lambda x: np.pad(x, [(1, 0), (2, 1)]),
      "x", grad=True),
    C("pad_value", lambda x: prim.pad(x, 1, constant_values=2.0),
      lambda x: np.pad(x, 1, constant_values=2.0), "x"),
    C("slice_in_dim", lambda t: prim.slice_in_dim(t, 1, None, axis=-1), lambda t: t[..., 1:],
      "t", grad=True),
    C("slice_in_dim_step", lambda t: prim.slice_in_dim(t, None, None, -2, axis=2),
      lambda t: t[:, :, ::-2], "t", grad=True),
    C("slice_in_dim_empty", lambda x: prim.slice_in_dim(x, 3, 1), lambda x: x[3:1], "x"),
    C("index_in_dim", lambda t: prim.index_in_dim(t, -1, axis=1), lambda t: t[:, -1], "t",
      grad=True),
    C("index_in_dim_keepdims", lambda x: prim.index_in_dim(x, 2, keepdims=True),
      lambda x: x[2:3], "x"),
    C("pad_edge", lambda x: prim.pad(x, [(1, 1), (0, 2)], mode="edge"),
      lambda x: np.pad(x, [(1, 1), (0, 2)], mode="edge"), "x"),
    C("squeeze", lambda x: prim.squeeze(prim.reshape(x, (3, 1, 4)), 1),
      lambda x: x.reshape(3, 1, 4).squeeze(1), "x", grad=True),
    C("squeeze_all", lambda v: prim.squeeze(prim.reshape(v, (1, 4, 1))),
      lambda v: v.reshape(1, 4, 1).squeeze(), "v"),
    C("split_sections", lambda t: prim.split(t, 2)[1], lambda t: np.split(t, 2)[1], "t",
      grad=True),
    C("split_indices", lambda t: prim.split(t, [1, 3], axis=-1)[2],
      lambda t: np.split(t, [1, 3], axis=-1)[2], "t", grad=True),
    C("strided_slice", lambda t: prim.strided_slice(t, (1, 2, 0), (1, -1, 2), (1, 2, 2)),
      lambda t: t[1:2, 2:0:-1, 0::2], "t", grad=True),
    # indexing
    C("take", lambda x, idx: prim.take(x, idx, axis=1), lambda x, idx: np.take(x, idx, axis=1),
      "x", "idx", grad=True),
    C("take_flat", prim.take, np.take, "x", "idx", grad=True),
    C("segment_sum", lambda x: prim.segment_sum(x, np.array([2, 2, 0], np.int32), 3),
      lambda x: np.stack([x[2], np.zeros_like(x[0]), x[0] + x[1]]), "x", grad=True),
    C("segment_sum_drops", lambda x: prim.segment_sum(x, np.array([2, -1, 5], np.int32), 3),
      lambda x: np.stack([np.zeros_like(x[0]), np.zeros_like(x[0]), x[0]]), "x"),
    C("take_along_axis", lambda x, k: prim.take_along_axis(x, k, axis=1),
      lambda x, k: np.take_along_axis(x, k, axis=1), "x", "tidx", grad=True),
    C("take_along_axis_flat", lambda x, idx: prim.take_along_axis(x, idx, None),
      lambda x, idx: np.take_along_axis(x, idx, None), "x", "idx", grad=True),
    # reductions and products
    C("sum", prim.sum, np.sum, "t", grad=True),
    C("sum_axis", lambda t: prim.sum(t, axis=1), lambda t: np.sum(t, axis=1), "t", grad=True),
    C("sum_keepdims", lambda t: prim.sum(t, (0, -1), keepdims=True),
      lambda t: np.sum(t, (0, 2), keepdims=True), "t", grad=True),
    C("sum_int_keeps_dtype", lambda i: prim.sum(i, 0), lambda i: np.sum(i, 0, np.int32), "i"),
    C("max", prim.max, np.max, "x", grad=True),
    C("max_axis", lambda t: prim.max(t, -1), lambda t: np.max(t, -1), "t", grad=True),
    C("max_keepdims", lambda x: prim.max(x, 0, keepdims=True),
      lambda x: np.max(x, 0, keepdims=True), "x", grad=True),
    C("min_keepdims", lambda x: prim.min(x, 0, keepdims=True),
      lambda x: np.min(x, 0, keepdims=True), "x", grad=True),
    C("prod", lambda p: prim.prod(p, 1), lambda p: np.prod(p, 1), "p", grad=True),
    C("mean", lambda t: prim.mean(t, (0, 2)), lambda t: np.mean(t, (0, 2)), "t", grad=True),
    C("unbroadcast", lambda t: prim.unbroadcast(t, (3, 1)),
      lambda t: t.sum(0).sum(-1, keepdims=True), "t", grad=True),
    C("unbroadcast_same_shape", lambda x: prim.unbroadcast(x, (3, 4)), lambda x: x, "x"),
    C("matmul", prim.matmul, np.matmul, "x", "m", grad=True),
    C("matmul_vector", prim.matmul, np.matmul, "v", "m", grad=True),
    C("matmul_batched", prim.matmul, np.matmul, "t", "m", grad=True),
]


def _canon(dt):
    """The dtype lgc gives a NumPy result of dtype dt (64-bit narrowed)."""
    return {np.dtype(np.float64): np.dtype(np.float32), np.dtype(np.int64): np.dtype(np.int32),
            np.dtype(np.uint64): np.dtype(np.uint32)}.get(np.dtype(dt), np.dtype(dt))


def _check(got, want, where):
    assert isinstance(got, lgc.Array), (where, type(got))
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (where, got.shape, want.shape)
    assert got.dtype == _canon(want.dtype), (where, got.dtype, want.dtype)
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=where)
    else:
        np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=where)


def test_prim_matches_numpy_eager_and_jit():
    def run(vals):
        return {name: f(*[vals[a] for a in args]) for name, f, _, args, _ in CASES}

    eager = run({k: lgc.device_put(v) for k, v in INPUTS.items()})
    jitted = lgc.jit(run)(INPUTS)
    for name, _, ref, args, _ in CASES:
        with np.errstate(all="ignore"):
            want = ref(*[INPUTS[a] for a in args])
        _check(eager[name], want, f"{name} (eager)")
        _check(jitted[name], want, f"{name} (jit)")


GRAD_CASES = [c for c in CASES if c[4]]


def _weights(name, ref, args):
    """Fixed random weights of the output's shape: the loss is sum(f(x) * w)."""
    out = np.asarray(ref(*[INPUTS[a] for a in args]))
    seed = sum(map(ord, name))
    return np.random.default_rng(seed).standard_normal(out.shape).astype(np.float32)


def _numeric_grad(ref, args, w, h=1e-3):
    """Central differences of sum(ref(x, *rest) * w) in float64, x = INPUTS[args[0]]."""
    x = INPUTS[args[0]].astype(np.float64)
    rest = [INPUTS[a] for a in args[1:]]
    return numerical_grad(lambda v: float(np.sum(np.asarray(ref(v, *rest), np.float64) * w)),
                          x, h)


def test_prim_grads_match_central_differences():
    weights = {name: _weights(name, ref, args) for name, _, ref, args, _ in GRAD_CASES}

    def loss(firsts, rest):
        total = 0.0
        for name, f, _, args, _ in GRAD_CASES:
            y = f(firsts[name], *[rest[a] for a in args[1:]])
            total = prim.add(total, prim.sum(prim.mul(y, weights[name])))
        return total

    firsts = {name: INPUTS[args[0]] for name, _, _, args, _ in GRAD_CASES}
    eager = lgc.grad(loss)({k: lgc.device_put(v) for k, v in firsts.items()},
                           {k: lgc.device_put(v) for k, v in INPUTS.items()})
    jitted = lgc.jit(lgc.grad(loss))(firsts, INPUTS)
    for name, _, ref, args, _ in GRAD_CASES:
        want = _numeric_grad(ref, args, weights[name])
        for got, mode in ((eager[name], "eager"), (jitted[name], "jit")):
            got = np.asarray(got)
            assert got.dtype == np.float32 and got.shape == want.shape, (name, mode)
            np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3, err_msg=f"{name} ({mode})")


# ---- prim's own semantics ---------------------------------------------------------------------

def test_python_scalars_take_the_operand_dtype_and_are_weak():
    x16 = lgc.device_put(np.ones(3, np.float16))
    assert prim.mul(x16, 2.0).dtype == np.float16
    assert prim.add(lgc.device_put(np.ones(3, np.uint8)), 1).dtype == np.uint8
    x = lgc.device_put(np.ones(3, np.float32))
    assert not prim.mul(x, 2.0).weak_type
    w = prim.asarray(2.0)
    assert w.weak_type and w.dtype == np.float32
    assert prim.mul(w, 3.0).weak_type and prim.reshape(prim.broadcast_to(w, (2,)), (2, 1)).weak_type
    assert not prim.mul(w, x).weak_type


def test_no_promotion():
    i = lgc.device_put(np.arange(3, dtype=np.int32))
    with pytest.raises(TypeError, match="astype"):
        prim.add(i, 0.5)
    with pytest.raises(TypeError, match="astype"):
        prim.logical_and(lgc.device_put(np.ones(2, bool)), 2)
    with pytest.raises(TypeError):
        prim.add(i, lgc.device_put(np.ones(3, np.float32)))
    with pytest.raises(TypeError):
        prim.exp(i)


@pytest.mark.parametrize("name, f, args", [
    ("reshape", lambda m, x: m.reshape(m.swapaxes(x, 0, 1), (-1,)), "x"),
    ("where", lambda m, x, b: m.where(b, m.exp(x), 0.0), "xb"),
    ("sum", lambda m, t: m.sum(m.flip(t, 1), axis=(0, 2), keepdims=True), "t"),
    ("zeros_like", lambda m, x: m.concatenate([m.zeros_like(x), m.ones_like(x)], 1), "x"),
    ("matmul", lambda m, x, m2: m.matmul(m.moveaxis(m.expand_dims(x, 0), 0, -1)[..., 0], m2),
     "xm"),
    ("take", lambda m, x, k: m.take_along_axis(m.clip(x, -1.0, 1.0), k, axis=1), "xk"),
    ("sin", lambda m, x: m.sqrt(m.add(m.cosh(m.sin(x)), m.sinh(m.cos(x)))), "x"),
    ("floor_divide", lambda m, x: m.floor_divide(x, 0.75), "x"),
])
def test_prim_traces_to_lgc_numpys_graph(name, f, args):
    """A rule moved from lgc.numpy to prim gives the same graph (so the same kernels)."""
    vals = [INPUTS[{"x": "x", "b": "b", "t": "t", "m": "m", "k": "tidx"}[a]] for a in args]
    assert str(lgc.make_ir(lambda *v: f(prim, *v))(*vals)) == \
        str(lgc.make_ir(lambda *v: f(lnp, *v))(*vals))


def test_slicing_traces_to_indexings_graph():
    t = INPUTS["t"]
    assert str(lgc.make_ir(lambda t: prim.index_in_dim(
        prim.slice_in_dim(t, None, None, -1, axis=2), 1))(t)) == \
        str(lgc.make_ir(lambda t: t[..., ::-1][1])(t))


def test_segment_sum_traces_to_lgc_nns_graph():
    ids = np.array([2, -1, 0], np.int32)
    assert str(lgc.make_ir(lambda x: prim.segment_sum(x, ids, 3))(INPUTS["x"])) == \
        str(lgc.make_ir(lambda x: lgc.nn.segment_sum(x, ids, 3))(INPUTS["x"]))


def test_core_vjp_is_the_tracing_layers():
    """The hook the rules of composite ops differentiate with (set by lgc.trace.autodiff)."""
    x = np.array([0.5, 2.0], np.float32)
    y, pull = core.vjp(lambda v: prim.mul(prim.sin(v), v), x)
    (g,) = pull(np.ones(2, np.float32))
    np.testing.assert_allclose(np.asarray(y), np.sin(x) * x, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g), np.cos(x) * x + np.sin(x), rtol=1e-6)


def test_core_vjp_needs_a_registered_transformation(monkeypatch):
    monkeypatch.setattr(core, "_vjp", [])
    with pytest.raises(RuntimeError, match="no reverse-mode"):
        core.vjp(prim.sin, np.ones(2, np.float32))


def test_core_needs_a_registered_eval_trace(monkeypatch):
    monkeypatch.setattr(core, "_stack", [])
    monkeypatch.setattr(core, "_eval_trace", [])
    with pytest.raises(RuntimeError, match="no eval trace"):
        core.bind("neg", np.ones(2, np.float32))


def test_old_core_path_still_imports():
    from lgc.trace import core as old
    assert old.bind is core.bind and old.Tracer is core.Tracer
