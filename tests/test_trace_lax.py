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
