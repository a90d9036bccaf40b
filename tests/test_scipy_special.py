"""lgc.scipy.special against scipy.special (float64 references) on random and awkward
inputs: values, special values, gradients against float64 finite differences (through the
custom_jvp rules, and through the plain composition that grad-of-vmap differentiates),
weak types, vmap, jit and eager agreement, and logsumexp's b=, return_sign=, where=."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp

import lgc
import lgc.nn as nn
import lgc.numpy as lnp
import lgc.scipy.special as ls

rng = np.random.default_rng(0)
UNARY = ["erf", "erfc", "erfinv", "ndtr", "ndtri", "gammaln", "digamma", "expit", "logit"]


def f32(*parts):
    return np.concatenate([np.ravel(np.asarray(p, np.float64)) for p in parts]).astype(np.float32)


def log_uniform(lo, hi, n=2000):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


# inputs: a random spread, log-spaced tiny and huge magnitudes, and each function's edges
INPUTS = {
    "erf": f32(rng.uniform(-6, 6, 3000), log_uniform(1e-30, 4), -log_uniform(1e-30, 4)),
    "erfc": f32(rng.uniform(-6, 9, 3000), log_uniform(1e-30, 9), -log_uniform(1e-30, 6),
                np.linspace(0.9, 1.1, 201)),
    "erfinv": f32(rng.uniform(-1, 1, 3000), log_uniform(1e-30, 1), -log_uniform(1e-30, 1),
                  1 - log_uniform(6e-8, 1e-2), -1 + log_uniform(6e-8, 1e-2)),
    "ndtr": f32(rng.uniform(-12.5, 8, 3000), log_uniform(1e-30, 8), -log_uniform(1e-30, 12.5)),
    "ndtri": f32(rng.uniform(0, 1, 3000), log_uniform(1e-37, 0.5), 1 - log_uniform(6e-8, 0.5),
                 0.5 + rng.uniform(-1e-3, 1e-3, 200), [0.075, 0.925, 0.02425]),
    "gammaln": f32(rng.uniform(0, 30, 3000), log_uniform(1e-30, 1e30), rng.uniform(0.5, 2.5, 2000),
                   [1, 2, 3, 0.5, 1.5, 2.5, 8.5]),
    "digamma": f32(rng.uniform(0, 30, 3000), log_uniform(1e-30, 1e30), rng.uniform(1, 2, 2000),
                   [1.4616321, 1, 2, 6, 0.5]),
    "expit": f32(rng.uniform(-80, 80, 3000), rng.uniform(-2, 2, 500)),
    "logit": f32(rng.uniform(0, 1, 3000), log_uniform(1e-37, 0.5), 1 - log_uniform(6e-8, 0.5),
                 0.5 + rng.uniform(-1e-4, 1e-4, 200)),
}
NEGATIVE = f32(rng.uniform(-30, 0, 3000), -log_uniform(1e-6, 0.5), [-0.5, -1.5, -2.5])
# max relative error allowed (measured maxima in docs/TRACING.md are about half of these)
RTOL = {"erf": 1e-6, "erfc": 2e-6, "erfinv": 1e-6, "ndtr": 2e-6, "ndtri": 1e-6,
        "gammaln": 1e-6, "digamma": 2e-6, "expit": 1e-6, "logit": 1e-6}


inf, nan = np.inf, np.nan
SPECIAL = {   # argument -> JAX's value (scipy's too, except digamma(0), which scipy makes -inf)
    "erfinv": ([1, -1, 1.5, -2, 0, nan], [inf, -inf, nan, nan, 0, nan]),
    "ndtri": ([0, 1, -0.1, 1.1, 0.5, nan], [-inf, inf, nan, nan, 0, nan]),
    "gammaln": ([0, -1, -3, inf, 1, 2, nan], [inf, inf, inf, inf, 0, 0, nan]),
    "digamma": ([0, -1, -2, inf, nan], [nan, nan, nan, inf, nan]),
    "erfc": ([inf, -inf, 0, 30, nan], [0, 2, 1, 0, nan]),
    "ndtr": ([inf, -inf, 0, -40, nan], [1, 0, 0.5, 0, nan]),
    "logit": ([0, 1, 0.5, -0.5, 2], [-inf, inf, 0, nan, nan]),
}


def _arguments(name):
    """One array per function (each function is then one kernel): the random inputs, the
    negative ones for gammaln/digamma, then the special values."""
    neg = [NEGATIVE] if name in ("gammaln", "digamma") else []
    special = [np.array(SPECIAL[name][0], np.float32)] if name in SPECIAL else []
    return np.concatenate([INPUTS[name], *neg, *special])


@lgc.jit
def all_values(inputs):
    out = {name: getattr(ls, name)(inputs[name]) for name in UNARY}
    out["xlogy"] = ls.xlogy(inputs["xy"][0], inputs["xy"][1])
    out["xlog1py"] = ls.xlog1py(inputs["xy1"][0], inputs["xy1"][1])
    return out


XY = np.stack([f32(rng.uniform(-3, 3, 1000), np.zeros(200), rng.uniform(-3, 3, 200), np.zeros(4)),
               f32(log_uniform(1e-30, 1e30, 1000), log_uniform(1e-10, 10, 200), np.ones(200),
                   [0, -1, np.inf, np.nan])])
XY1 = np.stack([XY[0, :1400], f32(rng.uniform(-1, 1e5, 1000), log_uniform(1e-30, 1, 200),
                                  -log_uniform(1e-30, 1, 200))])    # y near 0: log1p's accuracy


@pytest.fixture(scope="module")
def values():
    out = all_values({**{n: _arguments(n) for n in UNARY}, "xy": XY, "xy1": XY1})
    out = {k: np.asarray(v).astype(np.float64) for k, v in out.items()}
    for name in ("gammaln", "digamma"):          # split the concatenated results back
        n, m = len(INPUTS[name]), len(NEGATIVE)
        out[name + "_neg"] = out[name][n:n + m]
    for name in SPECIAL:
        out[name + "_special"] = out[name][-len(SPECIAL[name][0]):]
    for name in UNARY:
        out[name] = out[name][:len(INPUTS[name])]
    return out


@pytest.mark.parametrize("name", UNARY)
def test_values_match_scipy(values, name):
    x = INPUTS[name].astype(np.float64)
    ref = getattr(sp, name)(x)
    np.testing.assert_allclose(values[name], ref, rtol=RTOL[name], atol=0)


@pytest.mark.parametrize("name", ["gammaln", "digamma"])
def test_negative_arguments(values, name):
    """Below 0 the reflection formula cancels near the roots, so the error is relative to
    the size of its terms: within 2e-6 absolute, 2e-5 relative away from the roots."""
    ref = getattr(sp, name)(NEGATIVE.astype(np.float64))
    np.testing.assert_allclose(values[name + "_neg"], ref, rtol=2e-5, atol=2e-6)


def test_xlogy_xlog1py(values):
    x, y = XY[:, :1400].astype(np.float64)
    np.testing.assert_allclose(values["xlogy"][:1400], sp.xlogy(x, y), rtol=1e-6, atol=1e-30)
    x1, y1 = XY1.astype(np.float64)
    np.testing.assert_allclose(values["xlog1py"], sp.xlog1py(x1, y1), rtol=1e-6, atol=1e-30)
    assert np.all(values["xlogy"][:1400][x == 0] == 0)
    assert np.all(values["xlogy"][1400:] == 0)         # JAX: 0 wherever x == 0, even for y NaN


def test_special_values(values):
    for name, (_, want) in SPECIAL.items():
        np.testing.assert_array_equal(values[name + "_special"], want, err_msg=name)


def _fd(fn, x, h):
    """Central differences of a scipy function in float64."""
    return (fn(x + h) - fn(x - h)) / (2 * h)


# domains where float64 central differences are accurate to ~1e-9 (no poles, no underflow)
GRAD_DOMAINS = {"erf": (-4, 4), "erfc": (-4, 6), "erfinv": (-0.99, 0.99), "ndtr": (-8, 6),
                "ndtri": (1e-4, 1 - 1e-4), "gammaln": (0.05, 30), "digamma": (0.05, 30),
                "expit": (-15, 15), "logit": (0.01, 0.99)}
GRAD_X = {n: rng.uniform(lo, hi, 500).astype(np.float32) for n, (lo, hi) in GRAD_DOMAINS.items()}
GRAD_X["gammaln_neg"] = GRAD_X["digamma_neg"] = (rng.uniform(-6, 0, 500).round(1) + 0.05).astype(np.float32)


# grad(sum(vmap(f))) differentiates the composition itself (vmap is the top trace there,
# so custom_jvp rules are not used): checked for the cheaper kernels (gammaln's and
# digamma's composed gradients are within 2e-5 too, but their graphs take long to compile)
COMPOSED = ["erfc", "erfinv", "ndtr", "ndtri", "logit"]


@lgc.jit
def all_grads(xs):
    """Per-example derivatives: vmap(grad(f)) uses each custom_jvp rule."""
    out = {}
    for name, x in xs.items():
        f = getattr(ls, name.split("_")[0])
        out[name] = lgc.vmap(lgc.grad(f))(x)
        if name in COMPOSED:
            out[name + "_composed"] = lgc.grad(lambda v: lnp.sum(lgc.vmap(f)(v)))(x)
    out["second"] = lgc.vmap(lgc.grad(lgc.grad(ls.gammaln)))(xs["gammaln"])
    out["xlogy"] = lgc.vmap(lgc.grad(ls.xlogy, argnums=(0, 1)))(*XLOGY_AT)
    out["xlog1py"] = lgc.grad(ls.xlog1py)(0.0, 1e-7)
    return out


XLOGY_AT = (np.array([0.0, 0.0, 2.0, -1.5], np.float32), np.array([0.5, 3.0, 3.0, 0.25], np.float32))


@pytest.fixture(scope="module")
def grads():
    return lgc.tree.map(lambda v: np.asarray(v).astype(np.float64), all_grads(GRAD_X))


@pytest.mark.parametrize("name", UNARY + ["gammaln_neg", "digamma_neg"])
def test_gradients_match_finite_differences(grads, name):
    x = GRAD_X[name].astype(np.float64)
    fn = getattr(sp, name.split("_")[0])
    ref = _fd(fn, x, 1e-6 * np.maximum(1, np.abs(x)))
    rtol = 2e-5 if name.endswith("_neg") else 3e-6
    np.testing.assert_allclose(grads[name], ref, rtol=rtol, atol=1e-7)
    if name in COMPOSED:
        np.testing.assert_allclose(grads[name + "_composed"], ref, rtol=2e-5, atol=1e-7)


def test_second_derivative(grads):
    x = GRAD_X["gammaln"].astype(np.float64)
    np.testing.assert_allclose(grads["second"], _fd(sp.digamma, x, 1e-6 * np.maximum(1, x)),
                               rtol=3e-6)


def test_xlogy_gradients(grads):
    """JAX's rule: d/dx = log(y) also at x = 0; d/dy = x / y, 0 where x == 0."""
    x, y = XLOGY_AT
    gx, gy = grads["xlogy"]
    np.testing.assert_allclose(gx, np.log(y), rtol=1e-6)
    np.testing.assert_allclose(gy, np.where(x == 0, 0, x / y), rtol=1e-6)
    np.testing.assert_allclose(grads["xlog1py"], np.log1p(1e-7), rtol=1e-6)


def test_eager_agrees_with_jit(values):
    p = INPUTS["logit"][:5]
    np.testing.assert_array_equal(np.asarray(ls.logit(p)), values["logit"][:5])


def test_promotion_and_weak_types():
    """Checked while tracing (make_ir compiles nothing)."""
    def check(i32, f32):
        assert ls.erf(1).dtype == np.float32 and ls.erf(1).weak_type    # Python scalar: weak
        assert ls.gammaln(2.5).weak_type and ls.logsumexp(1.0).weak_type
        y = ls.digamma(i32)
        assert y.dtype == np.float32 and not y.weak_type
        assert ls.xlogy(f32, 3.0).dtype == np.float32 and not ls.xlogy(f32, 3.0).weak_type
        assert not ls.logsumexp(f32).weak_type
        return y
    lgc.make_ir(check)(np.arange(1, 4, dtype=np.int32), np.float32(2))


A = rng.standard_normal((3, 4, 5)).astype(np.float32) * 5
B = rng.uniform(-1, 2, (3, 4, 5)).astype(np.float32)
MASK = rng.uniform(size=(3, 4, 5)) > 0.3


INF_ROWS = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf], [1e30, 2.0, 1e30]],
                    np.float32)
B_VEC = np.array([1.0, 2.0, 0.5], np.float32)
X_VEC = np.array([0.3, -1.0, 2.0], np.float32)


@lgc.jit
def lse_cases(a, b, mask):
    return {
        "all": ls.logsumexp(a),
        "axis": ls.logsumexp(a, axis=1),
        "axes_keep": ls.logsumexp(a, axis=(0, 2), keepdims=True),
        "b": ls.logsumexp(a, axis=-1, b=lnp.abs(b)),
        "signed": ls.logsumexp(a, axis=-1, b=b, return_sign=True),
        "signed_nan": ls.logsumexp(a, axis=-1, b=b),
        "where": ls.logsumexp(a, axis=2, where=mask),
        "nn": nn.logsumexp(a, axis=0),
        "inf_rows": ls.logsumexp(INF_ROWS, axis=1),
        "inf_grad": lgc.grad(lambda v: lnp.sum(ls.logsumexp(v, axis=1)))(INF_ROWS[:1]),
        "b_grad": lgc.grad(lambda v: ls.logsumexp(v, b=B_VEC))(X_VEC),
        "vmap": lgc.vmap(lambda r, w: ls.logsumexp(r, b=w, return_sign=True))(a[0], b[0]),
    }


@pytest.fixture(scope="module")
def lse():
    return lse_cases(A, B, MASK)


def test_logsumexp_matches_scipy(lse):
    out = lse
    a, b = A.astype(np.float64), B.astype(np.float64)
    close = lambda got, want: np.testing.assert_allclose(np.asarray(got), want, rtol=2e-6, atol=1e-6)  # noqa: E731
    close(out["all"], sp.logsumexp(a))
    close(out["axis"], sp.logsumexp(a, axis=1))
    close(out["axes_keep"], sp.logsumexp(a, axis=(0, 2), keepdims=True))
    close(out["b"], sp.logsumexp(a, axis=-1, b=np.abs(b)))
    val, sign = sp.logsumexp(a, axis=-1, b=b, return_sign=True)
    close(out["signed"][0], val)
    close(out["signed"][1], sign)
    assert np.array_equal(np.isnan(np.asarray(out["signed_nan"])), sign < 0) and np.any(sign < 0)
    close(out["where"], sp.logsumexp(a, axis=2, b=MASK.astype(np.float64)))
    close(out["nn"], sp.logsumexp(a, axis=0))
    val, sign = sp.logsumexp(a[0], axis=-1, b=b[0], return_sign=True)     # per row, by vmap
    close(out["vmap"][0], val)
    close(out["vmap"][1], sign)


def test_logsumexp_infinities_and_gradient(lse):
    np.testing.assert_allclose(np.asarray(lse["inf_rows"]),
                               [np.log(1 + np.e), -np.inf, 1e30 + np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lse["inf_grad"]), [[1 / (1 + np.e), 0, np.e / (1 + np.e)]],
                               rtol=1e-6)
    w = B_VEC * np.exp(X_VEC.astype(np.float64))
    np.testing.assert_allclose(np.asarray(lse["b_grad"]), w / w.sum(), rtol=1e-6)
