"""lgc.lax control flow: traced predicates select, static loops unroll, data-dependent
loops are refused under jit with a reason; results equal the eager and NumPy ones."""
from __future__ import annotations

import numpy as np
import pytest

import lgc
import lgc.lax as lax
import lgc.numpy as lnp

X = np.arange(12, dtype=np.float32).reshape(3, 4) - 5


def test_cond_and_switch_traced_and_concrete():
    def f(x, k):
        a = lax.cond(x.sum() > 0, lambda v: v * 2.0, lambda v: -v, x)
        b = lax.switch(k, [lambda v: v + 1.0, lambda v: v * 0.0, lambda v: lnp.sin(v)], x)
        return a, b

    for k in (0, 1, 2, 7):
        for xv in (X, -X - 10):
            want_a = xv * 2 if xv.sum() > 0 else -xv
            wb = [xv + 1, xv * 0, np.sin(xv)][min(k, 2)]
            for a, b in (lgc.jit(f)(xv, np.int32(k)), f(lnp.asarray(xv), k)):
                np.testing.assert_allclose(np.asarray(a), want_a, rtol=1e-6)
                np.testing.assert_allclose(np.asarray(b), wb, rtol=1e-6)
    with pytest.raises(TypeError, match="scalar"):
        lax.cond(lnp.asarray(X) > 0, lambda: 1.0, lambda: 0.0)


def test_fori_loop_and_scan_unroll():
    def f(x):
        y = lax.fori_loop(0, 3, lambda i, v: v * 2.0 + i, x)
        carry, ys = lax.scan(lambda c, r: (c + r, c * r), lnp.zeros(4), x)
        _, rev = lax.scan(lambda c, r: (c + r, c), lnp.zeros(4), x, reverse=True)
        return y, carry, ys, rev

    want_y = ((X * 2 + 0) * 2 + 1) * 2 + 2
    cs = np.cumsum(X, 0)
    want_ys = np.stack([(cs[i] - X[i]) * X[i] for i in range(3)])
    want_rev = np.stack([X[i + 1:].sum(0) for i in range(3)])
    for y, carry, ys, rev in (lgc.jit(f)(X), f(lnp.asarray(X))):
        np.testing.assert_allclose(np.asarray(y), want_y)
        np.testing.assert_allclose(np.asarray(carry), X.sum(0))
        np.testing.assert_allclose(np.asarray(ys), want_ys)
        np.testing.assert_allclose(np.asarray(rev), want_rev)
    # a traced bound: a while loop in the graph (tests/test_while_loop.py has the rest)
    fn = lgc.jit(lambda x, n: lax.fori_loop(0, n, lambda i, v: v + i, x))
    for n in (0, 3, 5):
        np.testing.assert_allclose(np.asarray(fn(X, np.int32(n))), X + n * (n - 1) // 2)


def test_while_loop_eager_and_jit():
    out = lax.while_loop(lambda v: v.sum() < 100, lambda v: v + 1.0, lnp.asarray(X))
    assert float(out.sum()) >= 100 and float((out - 1.0).sum()) < 100
    jitted = lgc.jit(lambda x: lax.while_loop(lambda v: v.sum() < 100, lambda v: v + 1.0, x))(X)
    np.testing.assert_array_equal(np.asarray(jitted), np.asarray(out))


def test_dynamic_slice_and_update():
    f = lgc.jit(lambda x, i: (lax.dynamic_slice(x, (i, 1), (2, 2)),
                              lax.dynamic_update_slice(x, lnp.zeros((2, 2)), (i, 2))))
    for i in (0, 1, 5):
        s, u = f(X, np.int32(i))
        j = min(i, 1)
        np.testing.assert_array_equal(np.asarray(s), X[j:j + 2, 1:3])
        want = X.copy()
        want[j:j + 2, 2:4] = 0
        np.testing.assert_array_equal(np.asarray(u), want)


def test_structural_lax_ops():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((2, 4, 5)).astype(np.float32)

    def f(a, b):
        return (lax.dot_general(a, b, (((2,), (1,)), ((0,), (0,)))),
                lax.dot_general(a, b, (((0,), (0,)), ((), ()))),
                lax.top_k(a, 2), lax.integer_pow(a, 3), lax.integer_pow(a, -2),
                lax.slice(a, (0, 1, 0), (2, 3, 4), (1, 1, 2)), lax.cumsum(a, 2, reverse=True),
                lax.map(lambda r: r.sum(), a), lax.clamp(-0.5, a, 0.5),
                lax.pad(a, 0.0, [(0, 0, 0), (1, 2, 0), (0, 1, 0)]))

    want_top = np.sort(a, -1)[..., ::-1][..., :2]
    for out in (lgc.jit(f)(a, b), f(lnp.asarray(a), lnp.asarray(b))):
        out = [np.asarray(o) if not isinstance(o, tuple) else tuple(np.asarray(v) for v in o)
               for o in out]
        np.testing.assert_allclose(out[0], a @ b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out[1], np.einsum("bij,bkl->ijkl", a, b), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out[2][0], want_top)
        assert out[2][1].dtype == np.int32
        np.testing.assert_array_equal(np.take_along_axis(a, out[2][1], -1), want_top)
        np.testing.assert_allclose(out[3], a ** 3, rtol=1e-5)
        np.testing.assert_allclose(out[4], a ** -2.0, rtol=1e-4)
        np.testing.assert_array_equal(out[5], a[0:2, 1:3, 0:4:2])
        np.testing.assert_allclose(out[6], np.flip(np.cumsum(np.flip(a, 2), 2), 2), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[7], a.sum((1, 2)), rtol=1e-5)
        np.testing.assert_array_equal(out[8], np.clip(a, -0.5, 0.5))
        np.testing.assert_array_equal(out[9], np.pad(a, [(0, 0), (1, 2), (0, 1)]))


# ---- JAX parity: values that used to be wrong without an error --------------------------------

def test_norm_matrix_ords():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    v = rng.standard_normal(5).astype(np.float32)
    v[2] = 0.0
    norm = lnp.linalg.norm
    for ord_ in (None, "fro", 1, -1, np.inf, -np.inf):
        np.testing.assert_allclose(np.asarray(norm(a, ord_)), np.linalg.norm(a, ord_), rtol=1e-5)
    for ord_ in (None, 1, 2, 3, 0.5, -1, -2, 0, np.inf, -np.inf):
        with np.errstate(divide="ignore"):   # negative orders of a vector with a zero
            want = np.linalg.norm(v, ord_)
        np.testing.assert_allclose(np.asarray(norm(v, ord_)), want, rtol=1e-5)
    b = rng.standard_normal((2, 3, 4)).astype(np.float32)
    for ord_, axis in ((1, (2, 1)), (np.inf, (0, 2)), ("fro", (1, 2)), (3, 1), (None, (0, 1))):
        np.testing.assert_allclose(np.asarray(norm(b, ord_, axis, keepdims=True)),
                                   np.linalg.norm(b, ord_, axis, keepdims=True), rtol=1e-5)
    for ord_, axis in ((2, None), (-2, None), ("nuc", None), (2, (2, 0)), ("nuc", (1, 2))):
        x = a if axis is None else b     # singular values: 2.848-like, never the Frobenius norm
        np.testing.assert_allclose(np.asarray(norm(x, ord_, axis, keepdims=axis is not None)),
                                   np.linalg.norm(x.astype(np.float64), ord_, axis,
                                                  keepdims=axis is not None), rtol=1e-5)
    u, _, vt = np.linalg.svd(a.astype(np.float64))
    np.testing.assert_allclose(np.asarray(lgc.grad(lambda m: norm(m, 2))(a)), np.outer(u[:, 0], vt[0]),
                               atol=1e-5)   # d sigma_max = u1 v1^T
    g = lgc.grad(lambda m: norm(m, 1))(a)   # the column with the largest |sum|
    want = np.zeros_like(a)
    j = np.argmax(np.abs(a).sum(0))
    want[:, j] = np.sign(a[:, j])
    np.testing.assert_allclose(np.asarray(g), want)


def test_sort_several_operands_by_keys():
    k = np.array([[3, 1, 2, 1], [0, 0, -1, 5]], np.int32)
    v = np.array([[10, 20, 30, 40], [1, 2, 3, 4]], np.float32)
    w = np.array([[1, 0, 0, 9], [7, 8, 9, 6]], np.int32)
    for out in (lax.sort((k, v)), lgc.jit(lambda k, v: lax.sort((k, v)))(k, v)):
        assert isinstance(out, tuple) and len(out) == 2
        order = np.argsort(k, -1, kind="stable")
        np.testing.assert_array_equal(np.asarray(out[0]), np.take_along_axis(k, order, -1))
        np.testing.assert_array_equal(np.asarray(out[1]), np.take_along_axis(v, order, -1))
    ks, vs = lax.sort_key_val(k, v, dimension=0)
    order = np.argsort(k, 0, kind="stable")
    np.testing.assert_array_equal(np.asarray(vs), np.take_along_axis(v, order, 0))
    out = lax.sort((k, w, v), num_keys=2)     # lexicographic on (k, w)
    order = np.lexsort((w, k), axis=-1)
    for got, want in zip(out, (k, w, v)):
        np.testing.assert_array_equal(np.asarray(got), np.take_along_axis(want, order, -1))
    np.testing.assert_array_equal(np.asarray(lax.sort(v[:, ::-1])), np.sort(v[:, ::-1]))
    # NaN last, -0.0 == 0.0 (stable), ties in order; top_k: ties to the lower index, NaN first
    x = np.array([1, 3, 3, np.nan, 2, -0.0, 0.0], np.float32)
    _, perm = lax.sort_key_val(x, np.arange(7, dtype=np.int32))
    np.testing.assert_array_equal(np.asarray(perm), [5, 6, 0, 4, 1, 2, 3])
    vals, idx = lax.top_k(x, 4)
    np.testing.assert_array_equal(np.asarray(idx), [3, 1, 2, 4])


def test_lax_arithmetic_keeps_dtypes():
    a = np.array([-7, 7, -8, 5], np.int32)
    b = np.array([2, 2, -3, -5], np.int32)
    q = lax.div(a, b)
    assert q.dtype == np.int32
    np.testing.assert_array_equal(np.asarray(q), np.trunc(a / b).astype(np.int32))
    r = lax.rem(a, b)
    assert r.dtype == np.int32
    np.testing.assert_array_equal(np.asarray(r), np.fmod(a, b))
    np.testing.assert_allclose(np.asarray(lax.div(np.float32(-7), np.float32(2))), -3.5)
    assert lax.add(np.int8(3), 4).dtype == np.int8          # a Python scalar takes the type
    for fn in (lax.add, lax.sub, lax.mul, lax.div, lax.rem, lax.max, lax.pow):
        with pytest.raises(TypeError, match="same dtype"):
            fn(a, b.astype(np.float32))


def test_cond_and_switch_gradients_ignore_the_branch_not_taken():
    def f(x):
        return lax.cond(x > 0, lnp.sqrt, lambda x: -2 * x, x)

    def h(x):
        return lax.cond(x != 0, lambda x: 1 / x, lambda x: 3 * x, x)

    def s(x):
        i = lnp.astype(x > 0, lnp.int32) + lnp.astype(x > 1, lnp.int32)
        return lax.switch(i, [lambda x: 5 * x, lnp.log, lnp.sqrt], x)

    for fn, x, want in ((f, 0.0, -2.0), (f, 4.0, 0.25), (h, 0.0, 3.0), (h, 2.0, -0.25),
                        (s, 0.0, 5.0), (s, 0.5, 2.0), (s, 4.0, 0.25)):
        for g in (lgc.grad(fn), lgc.jit(lgc.grad(fn))):
            np.testing.assert_allclose(float(g(np.float32(x))), want, rtol=1e-6)
    # higher order: the untaken branch's second derivative (0 * inf) stays out too
    np.testing.assert_allclose(float(lgc.grad(lgc.grad(h))(np.float32(0.0))), 0.0)
    np.testing.assert_allclose(float(lgc.grad(lgc.grad(f))(np.float32(0.0))), 0.0)
    gv = lgc.vmap(lgc.grad(f))(np.array([0.0, 4.0, -1.0], np.float32))
    np.testing.assert_allclose(np.asarray(gv), [-2.0, 0.25, -2.0])
    # lnp.where is not cond: the unselected sqrt's 0 * inf is NaN, as in JAX
    assert np.isnan(float(lgc.grad(lambda x: lnp.where(x > 0, lnp.sqrt(x), 0.0))(0.0)))


def test_abs_gradient_at_zero_is_one():
    np.testing.assert_array_equal(np.asarray(lgc.grad(lambda x: lnp.abs(x).sum())(
        np.array([0.0, -0.0, -2.0, 3.0], np.float32))), [1.0, 1.0, -1.0, 1.0])
    _, t = lgc.jvp(lnp.abs, (np.float32(0.0),), (np.float32(1.0),))
    assert float(t) == 1.0


def test_promotion_of_two_strong_floats_is_strong():
    """NumPy finds np.dtype('float64') == 'float': the lattice once took float32 + float64
    for a weak float, which then lost to float16 (and gave float32 under x64)."""
    h = lnp.asarray(np.ones(2, np.float16))
    mixed = lnp.asarray(np.ones(2, np.float32)) + np.ones(2, np.float64)
    assert not mixed.weak_type and (h + mixed).dtype == np.float32
    lgc.trace.enable_x64(True)
    try:
        wide = lnp.asarray(np.ones(2, np.float32)) + np.ones(2, np.float64)
        assert wide.dtype == np.float64 and not wide.weak_type
        assert (lnp.asarray(np.ones(2, np.int32)) + np.ones(2, np.int64)).dtype == np.int64
    finally:
        lgc.trace.enable_x64(False)
