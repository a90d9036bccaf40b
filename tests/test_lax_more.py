"""lgc.lax's convolutions, windowed reductions, padding, scans, bit functions and the rest of
JAX's lax names, and lgc.numpy's `where=` in reductions: values against NumPy/SciPy
references written here (sliding windows, explicit dilation and cropping), gradients against
central differences of those references in float64, and jit and vmap on each.

Checks are grouped into one jitted function per test where possible: each jit is one OpenCL
build (~0.4 s on PoCL), eager ops compile one program per op.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import scipy.special
from numpy.lib.stride_tricks import sliding_window_view

import lgc
import lgc.lax as lax
import lgc.numpy as lnp


# ---- NumPy references ---------------------------------------------------------------------------

def np_pad(a, value, config):
    """lax.pad in NumPy: interior padding by strided assignment, then low/high (negative:
    cropped)."""
    for axis, (lo, hi, it) in enumerate(config):
        n = a.shape[axis]
        grown = np.full(a.shape[:axis] + (n + max(n - 1, 0) * it,) + a.shape[axis + 1:], value,
                        a.dtype)
        grown[(slice(None),) * axis + (slice(None, None, it + 1),)] = a
        grown = np.pad(grown, [(0, 0)] * axis + [(max(lo, 0), max(hi, 0))]
                       + [(0, 0)] * (a.ndim - axis - 1), constant_values=value)
        a = np.take(grown, range(max(-lo, 0), grown.shape[axis] - max(-hi, 0)), axis=axis)
    return a


def _windows(a, window, strides, wdil, first_axis):
    """Sliding windows over the axes from first_axis: (..., *out, *window)."""
    axes = tuple(range(first_axis, a.ndim))
    span = [(k - 1) * d + 1 for k, d in zip(window, wdil)]
    win = sliding_window_view(a, span, axis=axes)
    lead = (slice(None),) * first_axis
    return win[lead + tuple(slice(None, None, s) for s in strides)
               + tuple(slice(None, None, d) for d in wdil)]


def np_conv(lhs, rhs, strides, pads, lhs_dil, rhs_dil, dn, fgc=1, bgc=1):
    """conv_general_dilated in float64: dn = (lhs_spec, rhs_spec, out_spec) axis tuples."""
    x = lhs.astype(np.float64).transpose(dn[0])
    w = rhs.astype(np.float64).transpose(dn[1])
    x = np_pad(x, 0.0, [(0, 0, 0)] * 2 + [(lo, hi, d - 1) for (lo, hi), d in zip(pads, lhs_dil)])
    win = _windows(x, w.shape[2:], strides, rhs_dil, 2)       # (N, C, *out, *K)
    N, O, I = x.shape[0], w.shape[0], w.shape[1]
    nb, r = N // bgc, len(strides)
    out = np.empty((nb, O) + win.shape[2:2 + r])
    sp, ks = list(range(2, 2 + r)), list(range(2 + r, 2 + 2 * r))
    for o in range(O):
        g, b = o // (O // fgc), o // (O // bgc)
        patch = win[b * nb:(b + 1) * nb, g * I:(g + 1) * I]
        out[:, o] = np.einsum(patch, [0, 1] + sp + ks, w[o], [1] + ks, [0] + sp)
    return out.transpose(np.argsort(dn[2]))


def np_reduce_window(x, init, op, window, strides, pads, base=None, wdil=None):
    nd = x.ndim
    base, wdil = base or (1,) * nd, wdil or (1,) * nd
    xp = np_pad(x.astype(np.float64), init, [(lo, hi, b - 1) for (lo, hi), b in zip(pads, base)])
    win = _windows(xp, window, strides, wdil, 0)
    ufunc = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}[op]
    return ufunc(init, ufunc.reduce(win.reshape(win.shape[:nd] + (-1,)), axis=-1))


def check_grads(f, ref, args, rng, rtol=2e-3, eps=1e-6):
    """The gradient of sum_k sum(w_k * f(*args)[k]) (lgc, float32, under jit) along a random
    direction per argument, against central differences of the float64 NumPy reference."""
    outs = ref(*[a.astype(np.float64) for a in args])
    outs = outs if isinstance(outs, tuple) else (outs,)
    ws = [rng.standard_normal(np.shape(o)) for o in outs]

    def scalar(*xs):
        ys = f(*xs)
        ys = ys if isinstance(ys, tuple) else (ys,)
        return sum(lnp.sum(lnp.asarray(y) * w.astype(np.float32)) for y, w in zip(ys, ws))

    grads = lgc.jit(lgc.grad(scalar, argnums=tuple(range(len(args)))))(*args)
    for i, (a, g) in enumerate(zip(args, grads)):
        v = rng.standard_normal(a.shape)

        def s(t):
            ys = ref(*[b.astype(np.float64) + t * v if j == i else b.astype(np.float64)
                       for j, b in enumerate(args)])
            ys = ys if isinstance(ys, tuple) else (ys,)
            return sum(np.sum(w * y) for w, y in zip(ws, ys))
        fd = (s(eps) - s(-eps)) / (2 * eps)
        np.testing.assert_allclose(np.sum(np.asarray(g, np.float64) * v), fd, rtol=rtol,
                                   atol=rtol * 0.1, err_msg=f"argument {i}")


# ---- convolution --------------------------------------------------------------------------------

NCHW = ((0, 1, 2, 3),) * 3
NHWC = ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))     # NHWC, HWIO, NHWC as axis tuples
# (lhs shape, rhs shape, strides, padding, pads for the reference, lhs_dil, rhs_dil,
#  dimension_numbers, reference dn, feature groups, batch groups)
CONV_CASES = [
    ((2, 3, 5, 6), (4, 3, 2, 3), (1, 1), "VALID", [(0, 0), (0, 0)], None, None, None, NCHW, 1, 1),
    ((2, 5, 6, 3), (2, 3, 3, 4), (2, 1), "SAME", [(0, 1), (2, 2)], None, (1, 2),
     ("NHWC", "HWIO", "NHWC"), NHWC, 1, 1),
    ((1, 2, 4, 5), (3, 2, 2, 2), (1, 1), [(1, -1), (2, 0)], [(1, -1), (2, 0)], (2, 1), None,
     ("NCHW", "OIHW", "NHWC"), ((0, 1, 2, 3), (0, 1, 2, 3), (0, 3, 1, 2)), 1, 1),
    ((2, 7, 4), (3, 2, 4), (3,), "SAME_LOWER", [(1, 1)], None, None,
     ("NWC", "WIO", "NWC"), ((0, 2, 1), (2, 1, 0), (0, 2, 1)), 2, 1),
    ((4, 4, 5, 2), (2, 2, 2, 6), (1, 1), "VALID", [(0, 0), (0, 0)], None, None,
     lax.ConvDimensionNumbers(*NHWC), NHWC, 1, 2),
    ((1, 2, 1, 4, 3), (2, 2, 1, 2, 2), (1, 2, 1), [(0, 0), (1, 1), (0, 1)],
     [(0, 0), (1, 1), (0, 1)], None, (1, 1, 2), None, ((0, 1, 2, 3, 4),) * 3, 1, 1),
    ((2, 2, 4, 5), (3, 2, 3, 2), (1, 1), "VALID", [(0, 0), (0, 0)], None, None,
     ("NCHW", "OIWH", "NCHW"), ((0, 1, 3, 2), (0, 1, 2, 3), (0, 1, 3, 2)), 1, 1),
    ((1, 3, 4, 4), (6, 1, 3, 3), (1, 1), "SAME", [(1, 1), (1, 1)], None, None, None, NCHW, 3, 1),
]


def _conv_args(rng):
    return [(rng.standard_normal(c[0]).astype(np.float32),
             rng.standard_normal(c[1]).astype(np.float32)) for c in CONV_CASES]


def _lgc_convs(*flat):
    return tuple(lax.conv_general_dilated(flat[2 * k], flat[2 * k + 1], c[2], c[3], c[5], c[6], c[7],
                                          feature_group_count=c[9], batch_group_count=c[10])
                 for k, c in enumerate(CONV_CASES))


def _np_convs(*flat):
    return tuple(np_conv(flat[2 * k], flat[2 * k + 1], c[2], c[4], c[5] or (1,) * len(c[2]),
                         c[6] or (1,) * len(c[2]), c[8], c[9], c[10])
                 for k, c in enumerate(CONV_CASES))


def test_conv_general_dilated_against_numpy():
    rng = np.random.default_rng(0)
    flat = [a for pair in _conv_args(rng) for a in pair]
    want = _np_convs(*flat)
    for k, (g, w) in enumerate(zip(lgc.jit(_lgc_convs)(*flat), want)):
        assert g.shape == w.shape, (k, g.shape, w.shape)
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-4, atol=1e-4, err_msg=str(k))
    check_grads(_lgc_convs, _np_convs, flat, rng)
    # the reference itself against SciPy: a single-channel VALID conv is a correlation
    img, ker = flat[0][0, 0].astype(np.float64), flat[1][0, 0].astype(np.float64)
    np.testing.assert_allclose(np_conv(img[None, None], ker[None, None], (1, 1), [(0, 0)] * 2,
                                       (1, 1), (1, 1), NCHW)[0, 0],
                               scipy.signal.correlate2d(img, ker, "valid"), rtol=1e-10)


def test_conv_vmap_conv_and_transpose():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 1, 2, 5, 5)).astype(np.float32)    # 3 examples
    w = rng.standard_normal((3, 4, 2, 3, 3)).astype(np.float32)    # per-example kernels
    f = lgc.jit(lgc.vmap(lambda a, b: lax.conv(a, b, (2, 1), "SAME")))
    want = np.stack([np_conv(x[i], w[i], (2, 1), [(1, 1), (1, 1)], (1, 1), (1, 1), NCHW)
                     for i in range(3)])
    np.testing.assert_allclose(np.asarray(f(x, w)), want, rtol=1e-4, atol=1e-4)
    # conv_transpose (NHWC / HWIO defaults): every input position scatters the kernel
    cases = (((2,), "SAME", 4, 3), ((3,), "VALID", 3, 2), ((1,), "SAME", 5, 4),
             ((2,), [(0, 1)], 3, 3))
    args = [(rng.standard_normal((2, n, 3)).astype(np.float32),
             rng.standard_normal((k, 3, 2)).astype(np.float32)) for _, _, n, k in cases]
    xi = rng.standard_normal((1, 6, 6, 2)).astype(np.float32)
    ker = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    g = rng.standard_normal((1, 3, 3, 4)).astype(np.float32)

    def fwd(v):
        return lax.conv_general_dilated(v, ker, (2, 2), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    @lgc.jit
    def transposed(args, g):
        # transpose_kernel=True is the gradient of the conv with respect to its input
        return ([lax.conv_transpose(a, b, c[0], c[1]) for (a, b), c in zip(args, cases)],
                lax.conv_transpose(g, ker, (2, 2), "SAME", transpose_kernel=True),
                lgc.vjp(fwd, xi)[1](g)[0])

    outs, by_transpose, by_vjp = transposed(args, g)
    for (strides, padding, n, k), (lhs, rhs), got in zip(cases, args, outs):
        s = strides[0]
        if isinstance(padding, str):
            lo = k - 1 if padding == "VALID" or s > k - 1 else int(np.ceil((k + s - 2) / 2))
            total = k + s - 2 + (max(k - s, 0) if padding == "VALID" else 0)
        else:
            lo, total = padding[0][0], sum(padding[0])
        out_len = (n - 1) * s + 1 + total - k + 1
        want = np.zeros((2, out_len, 2))
        for i in range(n):            # y[i*s + lo - kk] += x[i] * w[kk]
            for kk in range(k):
                o = i * s + lo - kk
                if 0 <= o < out_len:
                    want[:, o] += lhs[:, i] @ rhs[kk]
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4,
                                   err_msg=f"{strides} {padding}")
        if padding == "SAME":
            assert got.shape[1] == n * s
    np.testing.assert_allclose(np.asarray(by_transpose), np.asarray(by_vjp), rtol=1e-4, atol=1e-4)


def test_conv_errors_name_the_problem():
    x, w = np.zeros((1, 2, 4, 4), np.float32), np.zeros((2, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="feature_group_count 2"):
        lax.conv_general_dilated(x, w, (1, 1), "VALID", feature_group_count=2)
    with pytest.raises(TypeError, match="spatial letters"):
        lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHX"))
    with pytest.raises(ValueError, match="unknown padding"):
        lax.conv_general_dilated(x, w, (1, 1), "FULL")
    with pytest.raises(TypeError, match="one dtype"):
        lax.conv(x, w.astype(np.float16), (1, 1), "VALID")


# ---- windowed reductions, reduce, pad -----------------------------------------------------------

RW_CASES = [   # (shape, init, computation, op, window, strides, padding, ref pads, base, wdil)
    ((4, 6), -np.inf, lax.max, "max", (2, 3), (2, 1), "VALID", [(0, 0), (0, 0)], None, None),
    ((5, 5), 0.0, lax.add, "add", (3, 3), (1, 2), "SAME", [(1, 1), (1, 1)], None, None),
    ((3, 7), np.inf, lnp.minimum, "min", (2, 2), (1, 1), [(1, 0), (0, 2)], [(1, 0), (0, 2)],
     (2, 1), (1, 2)),
    ((2, 3, 4), 1.0, lax.mul, "mul", (1, 2, 2), (1, 1, 2), "VALID", [(0, 0)] * 3, None, None),
    ((1, 5), 0.5, lax.add, "add", (1, 2), (1, 1), [(0, 0), (-1, 1)], [(0, 0), (-1, 1)], None,
     (1, 3)),
    ((6,), -np.inf, lax.max, "max", (3,), (2,), "SAME", [(1, 1)], (1,), (1,)),
]


def _lgc_rws(*xs):
    return tuple(lax.reduce_window(x, c[1], c[2], c[4], c[5], c[6], c[8], c[9])
                 for x, c in zip(xs, RW_CASES))


def _np_rws(*xs):
    return tuple(np_reduce_window(x, c[1], c[3], c[4], c[5], c[7], c[8], c[9])
                 for x, c in zip(xs, RW_CASES))


def test_reduce_window_against_numpy():
    rng = np.random.default_rng(2)
    xs = [rng.uniform(0.5, 1.5, c[0]).astype(np.float32) for c in RW_CASES]
    want = _np_rws(*xs)
    for k, (g, w) in enumerate(zip(lgc.jit(_lgc_rws)(*xs), want)):
        assert g.shape == w.shape, (k, g.shape, w.shape)
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, err_msg=str(k))
    check_grads(_lgc_rws, _np_rws, xs, rng)
    # max pooling's gradient goes to the first maximum of a window (JAX's select), not shared
    ties = np.array([[1, 1, 0], [1, 1, 0]], np.float32)
    g = lgc.grad(lambda x: lax.reduce_window(x, -np.inf, lax.max, (2, 2), (1, 1), "VALID").sum())
    np.testing.assert_array_equal(np.asarray(g(ties)), [[1, 1, 0], [0, 0, 0]])
    # vmap: a batch of images, each pooled
    batch = rng.standard_normal((3, 4, 6)).astype(np.float32)
    pooled = lgc.jit(lgc.vmap(lambda x: lax.reduce_window(x, -np.inf, lax.max, (2, 3), (2, 1),
                                                          "VALID")))(batch)
    np.testing.assert_allclose(np.asarray(pooled), np.stack(
        [np_reduce_window(b, -np.inf, "max", (2, 3), (2, 1), [(0, 0), (0, 0)]) for b in batch]))


def test_reduce_with_a_computation():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    xi = rng.integers(-9, 9, (3, 4)).astype(np.int8)

    def tagged(a, b):
        return a * b
    tagged.lgc_monoid = "mul"
    got = lgc.jit(lambda x, xi: (
        lax.reduce(x, 0.0, lax.add, (0, 2)), lax.reduce(x, 1.5, lnp.add, (1,)),
        lax.reduce(x, -np.inf, lax.max, (2,)), lax.reduce(x, 0.0, lax.min, (0, 1)),
        lax.reduce(x, 1.0, tagged, (1,)), lax.reduce(xi, np.int8(0), lax.add, (1,)),
        lax.reduce((x,), (0.0,), lax.add, (0,))[0], lax.reduce(x[:, :0], 2.0, lax.max, (1,))))(x, xi)
    want = (x.sum((0, 2)), x.sum(1) + 1.5, x.max(2), np.minimum(x.min((0, 1)), 0), x.prod(1),
            xi.sum(1, dtype=np.int8), x.sum(0), np.full((3, 5), 2.0, np.float32))
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5)
    with pytest.raises(NotImplementedError, match="'<lambda>' is not lax.add"):
        lax.reduce(x, 0.0, lambda a, b: a + b, (0,))


def test_pad_interior_negative_and_traced_value():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    configs = [[(1, 2, 1), (0, 0, 0)], [(-1, 1, 2), (2, -3, 1)], [(0, 0, 0), (-2, -1, 0)],
               [(2, 0, 3), (1, 1, 0)]]

    def f(x, v):
        return tuple(lax.pad(x, v, c) for c in configs)

    def ref(x, v):
        return tuple(np_pad(x, float(v), c) for c in configs)

    v = np.float32(-0.5)
    for got in (lgc.jit(lambda x: f(x, -0.5))(x), lgc.jit(f)(x, v)):   # constant, traced value
        for g, w, c in zip(got, ref(x, v), configs):
            np.testing.assert_array_equal(np.asarray(g), w, err_msg=str(c))
    check_grads(f, ref, [x, np.asarray(v)], rng)
    ints = np.arange(5, dtype=np.int32)
    np.testing.assert_array_equal(np.asarray(lax.pad(ints, 7, [(0, -1, 1)])),
                                  np_pad(ints, 7, [(0, -1, 1)]))
    np.testing.assert_array_equal(np.asarray(lax.pad(np.zeros((0,), np.float32), 1.0, [(1, 1, 2)])),
                                  np.ones(2))
    y = lgc.vmap(lambda r: lax.pad(r, 0.0, [(1, 0, 1)]))(x)
    np.testing.assert_array_equal(np.asarray(y), np.stack([np_pad(r, 0.0, [(1, 0, 1)]) for r in x]))
    with pytest.raises(ValueError, match="negative size"):
        lax.pad(x, 0.0, [(-3, -2, 0), (0, 0, 0)])


# ---- scans ------------------------------------------------------------------------------------

def _affine(p, q):
    """Composition of h -> a h + b maps, (a1, b1) then (a2, b2): associative, not commutative."""
    return p[0] * q[0], q[0] * p[1] + q[1]


def test_associative_scan_and_cumulative_ops():
    rng = np.random.default_rng(5)
    lengths = (1, 2, 3, 5, 8)
    xs = [rng.standard_normal((2, n)).astype(np.float32) for n in lengths]
    abs_ = [(rng.uniform(0.5, 1, n).astype(np.float32), rng.standard_normal(n).astype(np.float32))
            for n in lengths]
    scans = lgc.jit(lambda xs, abs_: ([lax.associative_scan(lax.add, x, axis=1) for x in xs],
                                      [lax.associative_scan(_affine, ab, reverse=True)
                                       for ab in abs_]))(xs, abs_)
    for x, got in zip(xs, scans[0]):
        np.testing.assert_allclose(np.asarray(got), np.cumsum(x, 1), rtol=1e-5, atol=1e-6)
    for (a, b), (sa, sb) in zip(abs_, scans[1]):
        n = len(a)
        want_a, want_b, ca, cb = np.empty(n), np.empty(n), 1.0, 0.0
        for i in range(n - 1, -1, -1):
            ca, cb = a[i] * ca, a[i] * cb + b[i]
            want_a[i], want_b[i] = ca, cb
        np.testing.assert_allclose(np.asarray(sa), want_a, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(sb), want_b, rtol=1e-5, atol=1e-6)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    xi = rng.integers(-5, 5, (3, 6)).astype(np.int8)

    def f(x):
        return (lax.cummax(x, 1), lax.cummin(x, 1, reverse=True), lax.cumprod(x, 1),
                lax.cumlogsumexp(x, 0), lax.cumsum(x, 1, reverse=True))

    def ref(x):
        rev = np.flip
        return (np.maximum.accumulate(x, 1), rev(np.minimum.accumulate(rev(x, 1), 1), 1),
                np.cumprod(x, 1), np.logaddexp.accumulate(x, 0),
                rev(np.cumsum(rev(x, 1), 1), 1))

    for g, w in zip(lgc.jit(f)(x), ref(x)):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, atol=1e-6)
    check_grads(f, ref, [x], rng)
    got = lax.cummax(xi, 0)   # eager, in the operand's dtype
    assert got.dtype == np.int8 and lax.cumsum(xi, 1).dtype == np.int8
    np.testing.assert_array_equal(np.asarray(got), np.maximum.accumulate(xi, 0))
    got = lgc.jit(lgc.vmap(lambda r: lax.cummax(r, 0)))(x)
    np.testing.assert_allclose(np.asarray(got), np.maximum.accumulate(x, 1))


# ---- elementwise extras ---------------------------------------------------------------------------

def test_erf_inv_values_and_gradient():
    x = np.array([-0.999, -0.5, -1e-3, 0.0, 0.3, 0.9, 0.99999], np.float32)
    y, g = lgc.jit(lambda x: (lax.erf_inv(x), lgc.vmap(lgc.grad(lax.erf_inv))(x)))(x)
    np.testing.assert_allclose(np.asarray(y), scipy.special.erfinv(x), rtol=2e-6)
    np.testing.assert_array_equal(np.asarray(lax.erf_inv(np.array([-1.0, 1.0], np.float32))),
                                  [-np.inf, np.inf])
    np.testing.assert_allclose(np.asarray(g), np.sqrt(np.pi) / 2 * np.exp(scipy.special.erfinv(
        x.astype(np.float64)) ** 2), rtol=1e-5)
    lgc.trace.enable_x64(True)
    try:
        x64 = x.astype(np.float64)
        y = lgc.jit(lax.erf_inv)(x64)
        assert y.dtype == np.float64
        # Newton steps on the device's float64 erf: within ~4500 ulps near |x| = 1
        np.testing.assert_allclose(np.asarray(y), scipy.special.erfinv(x64), rtol=1e-12)
    finally:
        lgc.trace.enable_x64(False)


def test_clamp_select_n_and_rev():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, np.nan], np.float32)
    lo = np.array([0, 0, 5], np.int32)
    cases = [np.full(4, k, np.float32) for k in range(3)]
    which = np.array([2, 0, 1, 2], np.int32)

    @lgc.jit
    def f(x, lo, cases, which):
        # JAX's clamp gradients: x strictly inside, min where min > x, max where max < x
        g = lgc.grad(lambda lo, v, hi: lax.clamp(lo, v, hi).sum(), argnums=(0, 1, 2))(
            np.float32(-1), x[:5], np.float32(1))
        gs = lgc.grad(lambda a, b: lax.select_n(which > 0, a, b * b).sum(), argnums=(0, 1))(
            cases[1], cases[2])
        return (lax.clamp(np.float32(-1), x, np.float32(1)), g,
                lax.clamp(lo, np.array([-1, 3, 4], np.int32), 4), lax.select_n(which, *cases),
                lax.select_n(np.array([True, False, True, False]), cases[0], cases[1]), gs)

    clamped, g, clamped_int, sel, sel_bool, gs = f(x, lo, cases, which)
    np.testing.assert_array_equal(np.asarray(clamped), np.clip(x, -1, 1))
    np.testing.assert_array_equal(np.asarray(g[1]), [0, 0, 1, 0, 0])
    assert float(g[0]) == 1.0 and float(g[2]) == 1.0
    np.testing.assert_array_equal(np.asarray(clamped_int), [0, 3, 4])
    np.testing.assert_array_equal(np.asarray(sel), [2, 0, 1, 2])
    np.testing.assert_array_equal(np.asarray(sel_bool), [1, 0, 1, 0])
    np.testing.assert_array_equal(np.asarray(gs[0]), [0, 1, 0, 0])
    np.testing.assert_array_equal(np.asarray(gs[1]), [4, 0, 4, 4])
    a = np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(np.asarray(lax.rev(a, (0, 2))), a[::-1, :, ::-1])
    np.testing.assert_array_equal(np.asarray(lax.rev(a, ())), a)


def test_dynamic_indexing_negative_and_traced():
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    f = lgc.jit(lambda x, i: (lax.dynamic_index_in_dim(x, i, 1, keepdims=False),
                              lax.dynamic_index_in_dim(x, i),
                              lax.dynamic_slice(x, (i, i), (2, 3)),
                              lax.dynamic_update_slice(x, -np.ones((2, 2), np.float32), (i, 0))))
    for i in (-7, -2, -1, 0, 2, 9):
        eager = i in (-2, 9)   # concrete starts: static slices
        for j, got in enumerate([f(x, np.int32(i))] + eager * [(
                lax.dynamic_index_in_dim(x, i, 1, keepdims=False), lax.dynamic_index_in_dim(x, i),
                lax.dynamic_slice(x, (i, i), (2, 3)),
                lax.dynamic_update_slice(x, -np.ones((2, 2), np.float32), (i, 0)))]):
            def start(n, k):   # JAX: negative from the end once, then clamped
                return int(np.clip(i + n if i < 0 else i, 0, n - k))
            np.testing.assert_array_equal(np.asarray(got[0]), x[:, start(5, 1)])
            np.testing.assert_array_equal(np.asarray(got[1]), x[start(4, 1)][None])
            np.testing.assert_array_equal(np.asarray(got[2]),
                                          x[start(4, 2):start(4, 2) + 2, start(5, 3):start(5, 3) + 3])
            want = x.copy()
            want[start(4, 2):start(4, 2) + 2, 0:2] = -1
            np.testing.assert_array_equal(np.asarray(got[3]), want, err_msg=f"{i} {j}")
    np.testing.assert_array_equal(np.asarray(lax.index_in_dim(x, -1, 0)), x[-1:])


# ---- bits ---------------------------------------------------------------------------------------

def test_bitcast_shifts_and_population_count():
    f32 = np.array([1.0, -2.5, np.inf, 3e-40], np.float32)
    u8 = np.arange(16, dtype=np.uint8).reshape(2, 2, 4) * 17
    i16 = np.array([[-1, 2], [300, -32768]], np.int16)

    def f(f32, u8, i16):
        return (lax.bitcast_convert_type(f32, np.int32), lax.bitcast_convert_type(f32, np.uint8),
                lax.bitcast_convert_type(u8, np.float32), lax.bitcast_convert_type(i16, np.int32),
                lax.bitcast_convert_type(lax.bitcast_convert_type(f32, np.uint16), np.float32))

    want = (f32.view(np.int32), f32.view(np.uint8).reshape(4, 4), u8.view(np.float32)[..., 0],
            i16.view(np.int32)[..., 0], f32)
    for g, w in zip(lgc.jit(f)(f32, u8, i16), want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(np.asarray(g).view(np.uint8), w.view(np.uint8))
    with pytest.raises(TypeError, match="last axis of size 4"):
        lax.bitcast_convert_type(np.zeros(3, np.uint8), np.float32)

    def shifts_ref(x, y, kind):
        bits = x.dtype.itemsize * 8
        ok = (y >= 0) & (y < bits)
        ys = np.where(ok, y, 0).astype(np.uint8)
        if kind == "left":
            u = x.view(f"u{x.dtype.itemsize}")
            return np.where(ok, (u << ys).view(x.dtype), 0)
        if kind == "logical":
            u = x.view(f"u{x.dtype.itemsize}")
            return np.where(ok, u >> ys, 0).astype(u.dtype).view(x.dtype)
        s = x.view(f"i{x.dtype.itemsize}")
        return np.where(ok, s >> ys, np.where(s < 0, -1, 0)).astype(s.dtype).view(x.dtype)

    rng = np.random.default_rng(6)
    dts = (np.int32, np.uint32, np.int8, np.uint16)
    xs, ys = [], []
    for dt in dts:
        info, bits = np.iinfo(dt), np.dtype(dt).itemsize * 8
        xs.append(rng.integers(info.min, info.max, 12, dtype=np.int64).astype(dt))
        ys.append(np.array([0, 1, 3, bits - 1, bits, bits + 5] * 2, dt))
        if info.min < 0:
            ys[-1][-1] = -1
    outs = lgc.jit(lambda xs, ys: [(lax.shift_left(x, y), lax.shift_right_logical(x, y),
                                    lax.shift_right_arithmetic(x, y), lax.population_count(x))
                                   for x, y in zip(xs, ys)])(xs, ys)
    for dt, x, y, got in zip(dts, xs, ys, outs):
        bits = np.dtype(dt).itemsize * 8
        want = [shifts_ref(x, y, k) for k in ("left", "logical", "arith")]
        want.append(np.array([bin(int(v) & ((1 << bits) - 1)).count("1") for v in x], dt))
        for g, w, kind in zip(got, want, ("left", "logical", "arith", "popcount")):
            assert g.dtype == dt
            np.testing.assert_array_equal(np.asarray(g), w, err_msg=f"{dt} {kind}")
    with pytest.raises(TypeError, match="same dtype"):
        lax.shift_left(np.int32(1), np.uint32(1))


# ---- lnp reductions with where= -------------------------------------------------------------------

def test_reductions_with_where_mask():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    m = rng.random((3, 4)) > 0.4
    m[1] = False                      # an empty row
    row = np.array([True, False, True, True])   # broadcast against x

    def f(x):
        return (lnp.sum(x, 1, where=m), lnp.mean(x, where=row), lnp.mean(x, 0, where=m[0] | True),
                lnp.max(x, 1, initial=-1.0, where=m), lnp.min(x, 0, initial=0.5, where=row),
                lnp.prod(x, 1, where=m), lnp.var(x, 1, where=row), lnp.std(x, 1, ddof=1, where=row),
                lnp.sum(x, 1, initial=2.0, where=m, keepdims=True))

    def ref(x):
        return (np.sum(x, 1, where=m), np.mean(x, where=np.broadcast_to(row, x.shape)),
                np.mean(x, 0), np.max(x, 1, initial=-1.0, where=m),
                np.min(x, 0, initial=0.5, where=row), np.prod(x, 1, where=m),
                np.var(x, 1, where=row), np.std(x, 1, ddof=1, where=row),
                np.sum(x, 1, initial=2.0, where=m, keepdims=True))

    for k, (g, w) in enumerate(zip(lgc.jit(f)(x), ref(x))):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, atol=1e-6, err_msg=str(k))
    check_grads(lambda x: f(x)[:3] + f(x)[5:8], lambda x: ref(x)[:3] + ref(x)[5:8], [x], rng)
    b = rng.random((3, 4)) > 0.5
    np.testing.assert_array_equal(np.asarray(lnp.any(b, 1, where=m)), np.any(b, 1, where=m))
    np.testing.assert_array_equal(np.asarray(lnp.all(b, 0, where=row)), np.all(b, 0, where=row))
    xi = rng.integers(-50, 50, (3, 4)).astype(np.int32)
    np.testing.assert_array_equal(np.asarray(lnp.max(xi, 1, initial=-100, where=m)),
                                  np.max(xi, 1, initial=-100, where=m))
    with pytest.raises(ValueError, match="'max' does not have an identity"):
        lnp.max(x, where=m)
    got = lgc.vmap(lambda r, k: lnp.sum(r, where=k))(x, m)
    np.testing.assert_allclose(np.asarray(got), np.sum(x, 1, where=m), rtol=1e-6)
