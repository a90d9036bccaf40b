"""lgc.numpy against NumPy: every case runs eagerly (op by op on the device) and inside one
jitted graph, and both must equal NumPy's result (values, shape; dtype after JAX's 32-bit
canonicalisation, or the dtype JAX gives where NumPy differs)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import lgc
import lgc.numpy as lnp

rng = np.random.default_rng(0)
INPUTS = {
    "x": rng.standard_normal((3, 4)).astype(np.float32),
    "y": rng.standard_normal((3, 4)).astype(np.float32),
    "p": rng.uniform(0.5, 2.0, (3, 4)).astype(np.float32),
    "u": rng.uniform(-0.9, 0.9, (3, 4)).astype(np.float32),
    "i": rng.integers(-6, 7, (3, 4)).astype(np.int32),
    "j": (rng.integers(1, 4, (3, 4)) * rng.choice([-1, 1], (3, 4))).astype(np.int32),
    "b": rng.random((3, 4)) > 0.5,
    "c": rng.random((3, 4)) > 0.3,
    "v": rng.standard_normal(4).astype(np.float32),
    "m": rng.standard_normal((4, 5)).astype(np.float32),
    "q": rng.standard_normal((4, 4)).astype(np.float32),
    "t": rng.standard_normal((2, 3, 4)).astype(np.float32),
    "idx": np.array([2, 0, 1, 2], np.int32),
    "u8": rng.integers(0, 200, (3, 4)).astype(np.uint8),
    "sh": rng.integers(0, 5, (3, 4)).astype(np.int32),
}


def C(name, f, *args, ref=None, dtype=None, tol=None):
    return (name, f, args, ref, dtype, tol)


def _canon(dt):
    return {np.dtype(np.float64): np.dtype(np.float32), np.dtype(np.int64): np.dtype(np.int32),
            np.dtype(np.uint64): np.dtype(np.uint32)}.get(np.dtype(dt), np.dtype(dt))


def run_cases(cases):
    """Eager, jitted (all cases in one graph) and NumPy results must agree."""
    names = sorted({a for c in cases for a in c[2]})
    host = {n: INPUTS[n] for n in names}

    def all_cases(m, vals):
        return {c[0]: c[1](m, *[vals[a] for a in c[2]]) for c in cases}

    dev = {k: lnp.asarray(v) for k, v in host.items()}
    eager = all_cases(lnp, dev)
    jitted = lgc.jit(lambda vals: all_cases(lnp, vals))(host)
    for name, f, args, ref, dtype, tol in cases:
        with np.errstate(all="ignore"):
            want = ref(*[host[a] for a in args]) if ref else f(np, *[host[a] for a in args])
        outs = [(eager[name], "eager"), (jitted[name], "jit")]
        for got, mode in outs:
            assert len(_seq(got)) == len(_seq(want)), (name, mode)
            for g, w in zip(_seq(got), _seq(want)):
                where = f"{name} ({mode})"
                assert isinstance(g, lgc.Array), (where, type(g))
                g, w = np.asarray(g), np.asarray(w)
                assert g.shape == w.shape, (where, g.shape, w.shape)
                assert g.dtype == np.dtype(dtype or _canon(w.dtype)), (where, g.dtype, w.dtype)
                if w.dtype.kind == "f":
                    rtol, atol = tol or (2e-5, 2e-6)
                    np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=where)
                else:
                    np.testing.assert_array_equal(g, w.astype(g.dtype), err_msg=where)


def _seq(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


ELEMENTWISE = [
    C("sin", lambda m, x: m.sin(x), "x"), C("cos", lambda m, x: m.cos(x), "x"),
    C("tan", lambda m, u: m.tan(u), "u"), C("arcsin", lambda m, u: m.arcsin(u), "u"),
    C("arccos", lambda m, u: m.arccos(u), "u"), C("arctan", lambda m, x: m.arctan(x), "x"),
    C("sinh", lambda m, x: m.sinh(x), "x"), C("cosh", lambda m, x: m.cosh(x), "x"),
    C("tanh", lambda m, x: m.tanh(x), "x"), C("arcsinh", lambda m, x: m.arcsinh(x), "x"),
    C("arccosh", lambda m, p: m.arccosh(p + 1), "p"), C("arctanh", lambda m, u: m.arctanh(u), "u"),
    C("exp", lambda m, x: m.exp(x), "x"), C("exp2", lambda m, x: m.exp2(x), "x"),
    C("expm1", lambda m, x: m.expm1(x), "x", tol=(1e-4, 1e-6)),
    C("log", lambda m, p: m.log(p), "p"), C("log2", lambda m, p: m.log2(p), "p"),
    C("log10", lambda m, p: m.log10(p), "p"), C("log1p", lambda m, p: m.log1p(p), "p"),
    C("sqrt", lambda m, p: m.sqrt(p), "p"), C("cbrt", lambda m, x: m.cbrt(x), "x"),
    C("square", lambda m, x: m.square(x), "x"), C("reciprocal", lambda m, p: m.reciprocal(p), "p"),
    C("floor", lambda m, x: m.floor(x * 3), "x"), C("ceil", lambda m, x: m.ceil(x * 3), "x"),
    C("rint", lambda m, x: m.rint(x * 3), "x"), C("round", lambda m, x: m.round(x, 2), "x"),
    C("trunc", lambda m, x: m.trunc(x * 3), "x"), C("abs", lambda m, x: m.abs(x), "x"),
    C("abs_int", lambda m, i: m.abs(i), "i"), C("sign", lambda m, x: m.sign(x), "x"),
    C("negative", lambda m, i: m.negative(i), "i"),
    C("isnan", lambda m, x: m.isnan(m.log(x)), "x"), C("isinf", lambda m, x: m.isinf(1 / (x * 0)), "x"),
    C("isfinite", lambda m, x: m.isfinite(m.log(x)), "x"),
    C("deg2rad", lambda m, x: m.deg2rad(x), "x"), C("rad2deg", lambda m, x: m.rad2deg(x), "x"),
    C("sin_int", lambda m, i: m.sin(i), "i"),
    C("add", lambda m, x, y: m.add(x, y), "x", "y"), C("sub", lambda m, x, y: x - y, "x", "y"),
    C("mul", lambda m, x, y: x * y, "x", "y"), C("div", lambda m, x, p: x / p, "x", "p"),
    C("div_int", lambda m, i, j: i / j, "i", "j"),
    C("floordiv", lambda m, x, p: x // p, "x", "p"), C("floordiv_int", lambda m, i, j: i // j, "i", "j"),
    C("mod", lambda m, x, p: x % p, "x", "p", tol=(1e-4, 1e-5)), C("mod_int", lambda m, i, j: i % j, "i", "j"),
    C("fmod_int", lambda m, i, j: m.fmod(i, j), "i", "j"),
    C("pow", lambda m, p, x: p ** x, "p", "x", tol=(1e-5, 1e-6)), C("pow_int", lambda m, i: i ** 2, "i"),
    C("maximum", lambda m, x, y: m.maximum(x, y), "x", "y"),
    C("minimum", lambda m, x, y: m.minimum(x, y), "x", "y"),
    C("hypot", lambda m, x, y: m.hypot(x, y), "x", "y"),
    C("arctan2", lambda m, x, y: m.arctan2(x, y), "x", "y"),
    C("arctan2_axes", lambda m, x: m.arctan2(m.sign(x) * (m.abs(x) > 0.5), m.floor(x)), "x"),
    C("logaddexp", lambda m, x, y: m.logaddexp(x, y), "x", "y"),
    C("eq", lambda m, i, j: i == j, "i", "j"), C("ne", lambda m, i, j: i != j, "i", "j"),
    C("lt", lambda m, x, y: x < y, "x", "y"), C("le", lambda m, i, j: i <= j, "i", "j"),
    C("gt", lambda m, x: x > 0, "x"), C("ge", lambda m, x, y: m.greater_equal(x, y), "x", "y"),
    C("logical", lambda m, b, c: m.logical_xor(m.logical_and(b, c), m.logical_or(b, m.logical_not(c))), "b", "c"),
    C("bool_ops", lambda m, b, c: (b & c) | (~b ^ c), "b", "c"),
    C("bitwise", lambda m, i, j: (i & j) | (~i ^ j), "i", "j"),
    C("shifts", lambda m, i, sh: (i << sh) + (i >> sh), "i", "sh"),
    C("scalar_ops", lambda m, x: 2 * x - 1.5 + x / 4 - 3 / (x * x + 1), "x"),
    C("rsub_int", lambda m, i: 10 - i * 3 + (i // 2) % 3, "i"),
    C("uint8", lambda m, u8: u8 + 1, "u8"),
    C("broadcast", lambda m, t, v, x: t * v + x, "t", "v", "x"),
    C("where", lambda m, b, x, y: m.where(b, x, y), "b", "x", "y"),
    C("where_scalar", lambda m, x: m.where(x > 0, x, 0.0), "x"),
    C("clip", lambda m, x: m.clip(x, -0.5, 0.5), "x"),
    C("clip_int", lambda m, i: m.clip(i, max=3), "i"),
    C("astype", lambda m, x: (x * 3).astype(m.int32), "x"),
    C("astype_bool", lambda m, x: m.floor(x).astype(bool), "x"),
    C("int_to_float", lambda m, i, x: i * x + i, "i", "x"),
]

CREATION_AND_SHAPES = [
    C("zeros", lambda m, x: m.zeros((2, 3)) + x[0, 0], "x"),
    C("ones_int", lambda m, i: m.ones((2,), m.int32) + i[0, :2], "i"),
    C("full", lambda m, x: m.full((2, 2), 7.0) * x[:2, :2], "x"),
    C("arange", lambda m, x: m.arange(4) * x, "x"),
    C("arange_float", lambda m, x: m.arange(1.0, 3.0, 0.5) + x[0], "x"),
    C("eye", lambda m, m_: m.eye(4, 5, 1) * m_ + m.identity(4)[:, :1], "m"),
    C("tri", lambda m, q: m.tri(4, 4, -1) * q, "q"),
    C("linspace", lambda m, v: m.linspace(0, 1, 4) + v, "v"),
    C("like", lambda m, i: m.zeros_like(i) + m.full_like(i, 7) + m.ones_like(i), "i"),
    C("reshape", lambda m, t: t.reshape(4, -1), "t"), C("ravel", lambda m, t: m.ravel(t), "t"),
    C("transpose", lambda m, t: m.transpose(t, (2, 0, 1)), "t"), C("T", lambda m, x: x.T, "x"),
    C("swapaxes", lambda m, t: m.swapaxes(t, 0, 2), "t"),
    C("moveaxis", lambda m, t: m.moveaxis(t, 0, -1), "t"),
    C("expand_dims", lambda m, x: m.expand_dims(x, (0, 2)), "x"),
    C("squeeze", lambda m, x: m.squeeze(x[None, :, None], (0, 2)), "x"),
    C("concatenate", lambda m, x, y: m.concatenate([x, y, x], axis=1), "x", "y"),
    C("concatenate_none", lambda m, x, t: m.concatenate([x, t], axis=None), "x", "t"),
    C("concat_promote", lambda m, x, i: m.concatenate([x, i]), "x", "i"),
    C("stack", lambda m, x, y: m.stack([x, y], axis=1), "x", "y"),
    C("hstack", lambda m, x, y: m.hstack([x, y]), "x", "y"),
    C("vstack", lambda m, v, x: m.vstack([v, x]), "v", "x"),
    C("split", lambda m, t: m.split(t, [1, 3], axis=2), "t"),
    C("split_n", lambda m, t: m.split(t, 2, axis=2), "t"),
    C("array_split", lambda m, x: m.array_split(x, 3, axis=1), "x"),
    C("pad", lambda m, x: m.pad(x, ((1, 0), (2, 1))), "x"),
    C("pad_value", lambda m, x: m.pad(x, 1, constant_values=3.5), "x"),
    C("pad_edge", lambda m, x: m.pad(x, (1, 2), mode="edge"), "x"),
    C("pad_reflect", lambda m, x: m.pad(x, ((4, 2), (5, 1)), mode="reflect"), "x"),
    C("pad_wrap", lambda m, x: m.pad(x, 1, mode="wrap"), "x"),
    C("flip", lambda m, t: m.flip(t, (0, 2)), "t"), C("flip_all", lambda m, x: m.flip(x), "x"),
    C("roll", lambda m, x: m.roll(x, 2, axis=1), "x"), C("roll_flat", lambda m, x: m.roll(x, -3), "x"),
    C("tile", lambda m, v: m.tile(v, (2, 2)), "v"),
    C("repeat", lambda m, x: m.repeat(x, 2, axis=0), "x"),
    C("tril", lambda m, q: m.tril(q, -1), "q"), C("triu", lambda m, q: m.triu(q, 1), "q"),
    C("broadcast_to", lambda m, v: m.broadcast_to(v, (3, 4)), "v"),
    C("sort", lambda m, x: m.sort(x), "x"), C("sort_axis0", lambda m, i: m.sort(i, axis=0), "i"),
    C("argsort", lambda m, x: m.argsort(x, axis=1), "x"),
    C("take", lambda m, x, idx: m.take(x, idx), "x", "idx"),
    C("take_axis", lambda m, x, idx: m.take(x, idx, axis=1), "x", "idx"),
    C("take_along_axis", lambda m, x: m.take_along_axis(x, m.argsort(x, axis=1), axis=1), "x"),
]

REDUCTIONS_AND_LINALG = [
    C("sum", lambda m, x: m.sum(x), "x", tol=(1e-5, 1e-5)),
    C("sum_axis", lambda m, t: t.sum(axis=1), "t"),
    C("sum_keep", lambda m, t: m.sum(t, axis=(0, 2), keepdims=True), "t", tol=(1e-5, 1e-5)),
    C("sum_int", lambda m, i: m.sum(i, 0), "i"), C("sum_bool", lambda m, b: m.sum(b, 1), "b"),
    C("prod", lambda m, p: m.prod(p, axis=1), "p"), C("max", lambda m, x: m.max(x, axis=0), "x"),
    C("min", lambda m, t: t.min(axis=(1, 2)), "t"), C("max_all", lambda m, i: m.max(i), "i"),
    C("mean", lambda m, t: m.mean(t, axis=-1), "t"), C("mean_int", lambda m, i: m.mean(i), "i"),
    C("var", lambda m, x: m.var(x, axis=1), "x"), C("std", lambda m, x: m.std(x, 0, ddof=1), "x"),
    C("all_any", lambda m, b: m.all(b, 0) | m.any(b, axis=1, keepdims=True), "b"),
    C("argmax", lambda m, x: m.argmax(x, axis=1), "x"), C("argmin", lambda m, x: m.argmin(x), "x"),
    C("argmax_keep", lambda m, t: m.argmax(t, axis=0, keepdims=True), "t"),
    C("cumsum", lambda m, x: m.cumsum(x, axis=1), "x"), C("cumsum_flat", lambda m, i: m.cumsum(i), "i"),
    C("cumprod", lambda m, p: m.cumprod(p, axis=0), "p"),
    C("count_nonzero", lambda m, i: m.count_nonzero(i, axis=0), "i"),
    C("matmul", lambda m, x, m_: x @ m_, "x", "m"), C("matmul_vec", lambda m, x, v: x @ v, "x", "v"),
    C("matmul_batch", lambda m, t, m_: m.matmul(t, m_), "t", "m"),
    C("matmul_int", lambda m, i, j: i @ j.T, "i", "j"),
    C("dot", lambda m, v: m.dot(v, v), "v"), C("dot_3d", lambda m, t, q: m.dot(t, q), "t", "q"),
    C("vdot", lambda m, x, y: m.vdot(x, y), "x", "y"), C("inner", lambda m, x, v: m.inner(x, v), "x", "v"),
    C("outer", lambda m, v, x: m.outer(v, x[0]), "v", "x"),
    C("tensordot", lambda m, t, x: m.tensordot(t, x, ([1, 2], [0, 1])), "t", "x"),
    C("tensordot_1", lambda m, t, m_: m.tensordot(t, m_, 1), "t", "m"),
    C("einsum_mm", lambda m, x, m_: m.einsum("ij,jk->ik", x, m_), "x", "m"),
    C("einsum_batch", lambda m, t, m_: m.einsum("bij,jk->bki", t, m_), "t", "m"),
    C("einsum_diag", lambda m, q: m.einsum("ii->i", q), "q"),
    C("einsum_trace", lambda m, q: m.einsum("ii", q), "q"),
    C("einsum_sum", lambda m, t: m.einsum("ijk->j", t), "t"),
    C("einsum_ellipsis", lambda m, t, q: m.einsum("...j,jk->...k", t, q), "t", "q"),
    C("einsum_three", lambda m, x, q, v: m.einsum("ij,jk,k->i", x, q, v), "x", "q", "v"),
    C("einsum_implicit", lambda m, x, y: m.einsum("ij,ij", x, y), "x", "y"),
    C("einsum_outer", lambda m, v: m.einsum("i,j->ij", v, v), "v"),
    C("einsum_four", lambda m, x, m_, v: m.einsum("i,ij,jk,k->", x[:, 0], x, m_, m_[0]), "x", "m", "v",
      tol=(1e-5, 1e-5)),
    C("trace", lambda m, q: m.trace(q, 1), "q"),
    C("diagonal", lambda m, t: m.diagonal(t, -1, 1, 2), "t"),
    C("diag", lambda m, v: m.diag(v) + m.diag(v[:3], 1) + m.diag(v[:3], -1), "v"),
    C("select", lambda m, x: m.select([x > 0.5, x < -0.5], [x, -x], 9.0), "x"),
    C("isclose", lambda m, x, y: m.isclose(x, x + y * 1e-6), "x", "y"),
    C("allclose", lambda m, x: m.allclose(x, x + 1e-9), "x"),
    C("array_equal", lambda m, i, j: m.logical_and(m.array_equal(i, i), m.logical_not(m.array_equal(i, j))), "i", "j"),
    C("meshgrid", lambda m, v: m.meshgrid(v, v[:3]), "v"),
    C("meshgrid_ij", lambda m, v: m.meshgrid(v, v[:3], indexing="ij"), "v"),
    C("append", lambda m, x, v: m.append(x, v), "x", "v"),
    C("cross", lambda m, t: m.cross(t[..., :3], t[..., 1:]), "t"),
    C("kron", lambda m, q, v: m.kron(q[:2, :2], v), "q", "v"),
    C("nansum", lambda m, x: m.nansum(m.log(x), axis=1), "x"),
    C("nanmax", lambda m, x: m.nanmax(m.log(x), axis=0), "x"),
    C("norm", lambda m, x: m.linalg.norm(x, axis=1), "x"),
    C("det", lambda m, q: m.linalg.det(q), "q", tol=(1e-4, 1e-5)),
]

MORE = [
    C("copy", lambda m, x: m.copy(x), "x"), C("ptp", lambda m, x: m.ptp(x, axis=1), "x"),
    C("diff", lambda m, x: m.diff(x), "x"), C("diff2", lambda m, x: m.diff(x, 2, axis=0), "x"),
    C("diff_prepend", lambda m, x: m.diff(x, prepend=0.0), "x"),
    C("average", lambda m, x, v: m.average(x, axis=1, weights=v * v), "x", "v"),
    C("median", lambda m, x: m.median(x, axis=1), "x"), C("median_all", lambda m, t: m.median(t), "t"),
    C("quantile", lambda m, x: m.quantile(x, [0.1, 0.5, 0.95], axis=0), "x"),
    C("percentile", lambda m, t: m.percentile(t, 30, axis=2, keepdims=True), "t"),
    C("nanmean", lambda m, x: m.nanmean(m.log(x), axis=0), "x"),
    C("heaviside", lambda m, x: m.heaviside(m.floor(x), 0.5), "x"),
    C("copysign", lambda m, x, y: m.copysign(x, y), "x", "y"),
    C("sinc", lambda m, x: m.sinc(m.round(x)), "x", tol=(1e-5, 1e-6)),
    C("column_stack", lambda m, v, q: m.column_stack([v, q]), "v", "q"),
    C("dstack", lambda m, x, y: m.dstack([x, y]), "x", "y"),
    C("rot90", lambda m, x: [m.rot90(x), m.rot90(x, 2), m.rot90(x, 3)], "x"),
    C("indices", lambda m, x: m.indices((2, 3)) + x[0, 0].astype(m.int32), "x"),
    C("unravel_index", lambda m, i: m.unravel_index(m.abs(i), (3, 4)), "i"),
    C("ravel_multi_index", lambda m, i: m.ravel_multi_index((m.abs(i) % 3, m.abs(i) % 4), (3, 4)), "i"),
    C("searchsorted", lambda m, v, x: m.searchsorted(m.sort(v), x), "v", "x"),
    C("searchsorted_right", lambda m, i: m.searchsorted(m.array([-2, 0, 0, 3]), i, side="right"), "i"),
    C("digitize", lambda m, x: m.digitize(x, m.array([-1.0, 0.0, 1.0])), "x"),
    C("isin", lambda m, i: m.isin(i, m.array([0, 2, 5])), "i"),
    C("bincount", lambda m, i: m.bincount(m.abs(i).ravel(), length=8) if m is not np else
      np.bincount(np.abs(i).ravel(), minlength=8), "i"),
    C("tril_indices", lambda m, q: q[m.tril_indices(4, -1)], "q"),
    C("triu_indices", lambda m, m_: m_[m.triu_indices(4, 1, 5)], "m"),
    C("logspace", lambda m, v: m.logspace(0, 2, 4) * v, "v", tol=(1e-5, 1e-5)),
    C("polyval", lambda m, v, x: m.polyval(v, x), "v", "x", tol=(1e-5, 1e-5)),
    C("interp", lambda m, x: m.interp(x, m.array([-1.0, 0.0, 0.5, 2.0]), m.array([0.0, 1.0, -1.0, 3.0])), "x"),
    C("convolve", lambda m, v, m_: m.convolve(v, m_[0]), "v", "m", tol=(1e-5, 1e-5)),
    C("convolve_same", lambda m, v: m.convolve(v, v[:2], mode="same"), "v"),
    C("correlate", lambda m, v, m_: m.correlate(m_[1], v), "v", "m"),
]

INDEXING = [
    C("int", lambda m, x: x[1], "x"), C("ints", lambda m, x: x[-1, 2], "x"),
    C("slices", lambda m, x: x[:, 1:3], "x"), C("neg_step", lambda m, t: t[::-1, :, ::2], "t"),
    C("newaxis", lambda m, x: x[None, ..., None], "x"), C("ellipsis", lambda m, t: t[..., 1], "t"),
    C("empty_slice", lambda m, x: x[2:1], "x"),
    C("array", lambda m, x, idx: x[idx], "x", "idx"),
    C("array_axis1", lambda m, x, idx: x[:, idx], "x", "idx"),
    C("list_pair", lambda m, x: x[[0, 2], [1, 3]], "x"),
    C("int_and_array", lambda m, t, idx: t[1, idx[:2]], "t", "idx"),
    C("adjacent", lambda m, t, idx: t[:, idx[:2], idx[1:3]], "t", "idx"),
    C("separated", lambda m, t, idx: t[idx[1:3], :, idx[2:]], "t", "idx"),
    C("negative_index_array", lambda m, x: x[np.array([-1, 0, -2])], "x"),
    C("arrays_and_ellipsis", lambda m, t, idx: t[idx[1:3], ..., idx[2:]], "t", "idx"),
    C("mask", lambda m, x: x[INPUTS["b"]], "x"),
    C("at_set", lambda m, x: x.at[1].set(0.0), "x",
      ref=lambda x: _np_at(x, 1, lambda a, i: a.__setitem__(i, 0.0))),
    C("at_add", lambda m, x: x.at[:, 1].add(1.0), "x",
      ref=lambda x: _np_at(x, (slice(None), 1), lambda a, i: np.add.at(a, i, 1.0))),
    C("at_dup_add", lambda m, x: x.at[[0, 0, 1], [1, 1, 2]].add(10.0), "x",
      ref=lambda x: _np_at(x, ([0, 0, 1], [1, 1, 2]), lambda a, i: np.add.at(a, i, 10.0))),
    C("at_mul", lambda m, x, idx: x.at[idx[:2]].multiply(2.0), "x", "idx",
      ref=lambda x, idx: _np_at(x, idx[:2], lambda a, i: np.multiply.at(a, i, 2.0))),
    C("at_min_max", lambda m, x, y: x.at[:2].min(y[:2]).at[2].max(y[2]), "x", "y",
      ref=lambda x, y: np.concatenate([np.minimum(x[:2], y[:2]), np.maximum(x[2:], y[2:])])),
    C("at_get", lambda m, x, idx: x.at[idx].get(), "x", "idx", ref=lambda x, idx: x[idx]),
]


def _np_at(x, idx, fn):
    a = x.copy()
    fn(a, idx)
    return a


@pytest.mark.parametrize("group", ["elementwise", "creation_shapes", "reductions_linalg",
                                   "more", "indexing"])
def test_lnp_matches_numpy(group):
    run_cases({"elementwise": ELEMENTWISE, "creation_shapes": CREATION_AND_SHAPES,
               "reductions_linalg": REDUCTIONS_AND_LINALG, "more": MORE, "indexing": INDEXING}[group])


def test_traced_integer_index():
    """Index arrays that are traced values (jit arguments) gather and scatter too."""
    x = INPUTS["x"]
    idx = np.array([[2, 0], [1, -1]], np.int32)
    f = lgc.jit(lambda x, i: (x[i], x[:, i[0]], x[i[0], i[1]], x.at[i[0]].add(1.0), x[i[0], ...]))
    a, b, c, d, e = f(x, idx)
    np.testing.assert_array_equal(np.asarray(e), x[idx[0], ...])
    np.testing.assert_array_equal(np.asarray(a), x[idx])
    np.testing.assert_array_equal(np.asarray(b), x[:, idx[0]])
    np.testing.assert_array_equal(np.asarray(c), x[idx[0], idx[1]])
    want = x.copy()
    np.add.at(want, idx[0], 1.0)
    np.testing.assert_array_equal(np.asarray(d), want)
    # leading-axis updates with traced indices: duplicates combine, negatives wrap, indices
    # out of range are dropped (as in JAX)
    i, j = np.array([0, 0, -1, 7], np.int32), np.array([1, 1, 2, 0], np.int32)
    g = lgc.jit(lambda x, i, j: (x.at[i, j].add(10.0), x.at[i].set(-1.0), x.at[i, ...].max(0.5)))
    a, b, c = (np.asarray(v) for v in g(x, i, j))
    keep = i < 3
    want = x.copy()
    np.add.at(want, (i[keep], j[keep]), 10.0)
    np.testing.assert_array_equal(a, want)
    want = x.copy()
    want[i[keep]] = -1.0
    np.testing.assert_array_equal(b, want)
    want = x.copy()
    want[i[keep]] = np.maximum(want[i[keep]], 0.5)
    np.testing.assert_array_equal(c, want)


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 4), min_size=0, max_size=3), st.data())
def test_broadcast_binary_hypothesis(shape, data):
    """Broadcasting shapes: one operand drops leading axes and sets some axes to 1."""
    k = data.draw(st.integers(0, len(shape)))
    other = [1 if data.draw(st.booleans()) else d for d in shape[k:]]
    a = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(other).astype(np.float32)

    def f(a, b):
        return lnp.maximum(a, b) * 2.0 + lnp.sum(a * b, axis=-1, keepdims=True) if a.ndim else a + b

    want = (np.maximum(a, b) * 2.0 + np.sum(a * b, axis=-1, keepdims=True)) if a.ndim else a + b
    for got in (f(lnp.asarray(a), lnp.asarray(b)), lgc.jit(f)(a, b)):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 4), min_size=1, max_size=4), st.data())
def test_reductions_hypothesis(shape, data):
    """Every reduction over a random axis set, with and without keepdims, in one graph."""
    nd = len(shape)
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, nd - 1), min_size=1))))
    keep = data.draw(st.booleans())
    a = rng.standard_normal(shape).astype(np.float32)

    def f(m, a):
        return [m.sum(a, axes, keepdims=keep), m.max(a, axes, keepdims=keep),
                m.min(a, axes, keepdims=keep), m.mean(a, axes, keepdims=keep),
                m.var(a, axes, keepdims=keep), m.prod(a, axes, keepdims=keep),
                m.argmax(a, axes[0]), m.cumsum(a, axes[-1]), m.sort(a, axes[0])]

    got = lgc.jit(lambda a: f(lnp, a))(a)
    for g, w in zip(got, f(np, a)):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, atol=1e-5)


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 5), min_size=1, max_size=3), st.data())
def test_basic_indexing_hypothesis(shape, data):
    """Random slices (any step sign), ints and newaxis, read and .at[].add, as NumPy."""
    idx = []
    for n in shape[:data.draw(st.integers(1, len(shape)))]:
        kind = data.draw(st.sampled_from(["slice", "int", "none"]))
        if kind == "int":
            idx.append(data.draw(st.integers(-n, n - 1)))
        elif kind == "none":
            idx += [None, slice(None)]
        else:
            idx.append(slice(data.draw(st.one_of(st.none(), st.integers(-n - 1, n + 1))),
                             data.draw(st.one_of(st.none(), st.integers(-n - 1, n + 1))),
                             data.draw(st.sampled_from([None, 1, 2, -1, -2]))))
    idx = tuple(idx)
    a = rng.standard_normal(shape).astype(np.float32)
    got, upd = lgc.jit(lambda a: (a[idx], a.at[idx].add(1.0)))(a)
    want = a.copy()
    want[idx] += 1.0
    np.testing.assert_array_equal(np.asarray(got), a[idx])
    np.testing.assert_array_equal(np.asarray(upd), want)


DTYPE_OPS = {
    "add": lambda m, a, b: a + b, "sub": lambda m, a, b: a - b, "mul": lambda m, a, b: a * b,
    "scalar": lambda m, a, b: a * 2, "fdiv": lambda m, a, b: a // b, "mod": lambda m, a, b: a % b,
    "max": lambda m, a, b: m.maximum(a, b), "lt": lambda m, a, b: a < b, "eq": lambda m, a, b: a == b,
    "where": lambda m, a, b: m.where(a > b, a, b), "abs": lambda m, a, b: m.abs(a),
    "sign": lambda m, a, b: m.sign(a), "bitand": lambda m, a, b: a & b,
    "sum": lambda m, a, b: m.sum(a, 0), "prod": lambda m, a, b: m.prod(a, 1),
    "mean": lambda m, a, b: m.mean(a, 1), "max_r": lambda m, a, b: m.max(a, 1),
    "argmax": lambda m, a, b: m.argmax(a, 1), "cumsum": lambda m, a, b: m.cumsum(a, 1),
    "sort": lambda m, a, b: m.sort(a, 1), "matmul": lambda m, a, b: a @ b.T,
    "concat": lambda m, a, b: m.concatenate([a, b]), "take": lambda m, a, b: a[:, [2, 0]],
    "T": lambda m, a, b: a.T,
}
# NumPy computes float16 ops in float16 too, but rounds differently in reductions and matmul
DTYPE_TOLERANCE = {"float16": {"rtol": 2e-3, "atol": 1e-3}, "float32": {"rtol": 1e-6, "atol": 1e-6}}
DTYPE_SKIP = {"bool": {"sub", "fdiv", "mod", "sign", "abs", "prod"}, "float16": {"bitand"},
              "float32": {"bitand"}}


@pytest.mark.parametrize("dt", ["bool", "int8", "uint8", "int16", "int32", "uint32", "float16",
                                "float32"])
def test_dtype_sweep(dt):
    """Arithmetic, comparisons, reductions and layout ops on every dtype: NumPy's values and
    (after 32-bit canonicalisation) NumPy's result dtype, which is JAX's for these ops."""
    dt = np.dtype(dt)
    if dt == np.bool_:
        a, b = rng.random((3, 4)) > 0.5, rng.random((3, 4)) > 0.5
    elif dt.kind in "iu":
        a = rng.integers(0 if dt.kind == "u" else -50, 100, (3, 4)).astype(dt)
        b = (rng.integers(1, 9, (3, 4)) * (1 if dt.kind == "u" else rng.choice([-1, 1], (3, 4)))).astype(dt)
    else:
        a, b = rng.standard_normal((3, 4)).astype(dt), rng.uniform(0.5, 2, (3, 4)).astype(dt)
    ops = {k: f for k, f in DTYPE_OPS.items() if k not in DTYPE_SKIP.get(dt.name, ())}
    got = lgc.jit(lambda a, b: {k: f(lnp, a, b) for k, f in ops.items()})(a, b)
    for k, f in ops.items():
        with np.errstate(all="ignore"):
            w = np.asarray(f(np, a, b))
        g = np.asarray(got[k])
        assert g.shape == w.shape and g.dtype == _canon(w.dtype), (dt, k, g.dtype, w.dtype)
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), err_msg=f"{dt} {k}",
                                   **DTYPE_TOLERANCE.get(g.dtype.name, {"rtol": 0, "atol": 0}))



def test_log1p_and_expm1_keep_their_digits_near_zero():
    """log1p and expm1 are core ops (OpenCL's log1p/expm1), not log(1 + x) and exp(x) - 1,
    which return 0 for |x| below float32's 2**-24 and lose digits well above it."""
    x = np.array([1e-10, -1e-8, 3e-6, -2e-4, 0.5, -0.5, 3.0], np.float32)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(np.asarray(lnp.log1p(x)), np.log1p(x64), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lnp.expm1(x)), np.expm1(x64), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lgc.vmap(lgc.grad(lnp.log1p))(x)), 1 / (1 + x64), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lgc.vmap(lgc.grad(lnp.expm1))(x)), np.exp(x64), rtol=1e-6)
