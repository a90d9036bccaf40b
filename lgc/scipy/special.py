"""lgc.scipy.special: jax.scipy.special's functions on lgc arrays.

Arguments promote as in JAX (integers to the default float, Python scalars weak). Where
lgc has no core op, a function is lnp code accurate to float32 (lgc/scipy/_erf.py,
_gamma.py cite the approximations), with its exact derivative as a custom_jvp rule, so
grad, jvp, vmap and jit see one differentiable function.
"""
from __future__ import annotations

import math

from .. import numpy as lnp
from ..ops import prim
from ..ops.core import bind
from ..trace.autodiff import custom_jvp, stop_gradient
from . import _erf, _gamma
from ._accurate import exp_neg_square

_SQRT_PI = math.sqrt(math.pi)
_SQRT_2PI = math.sqrt(2 * math.pi)


def _float_args(*args):
    """The arguments promoted together to a float dtype, as lgc arrays, and the weak flag."""
    args, dt, weak = lnp._promote(*args, to_float=True)
    return [lnp.asarray(a) for a in args], weak


def _with_derivative(name, kernel, derivative, doc):
    """The public function: JAX's promotion around kernel, whose derivative is
    derivative(x, kernel(x)) (a custom_jvp rule, so higher orders differentiate it)."""
    f = custom_jvp(kernel)

    @f.defjvp
    def _rule(primals, tangents):
        (x,), (t,) = primals, tangents
        y = f(x)
        return y, lnp.multiply(t, derivative(x, y))

    def fn(x):
        (x,), weak = _float_args(x)
        return lnp._weak(f(x), weak)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def erf(x):
    """The error function (lgc's core erf op: a rational function, |error| < 5e-7)."""
    (x,), weak = _float_args(x)
    return bind("erf", x, weak=weak)


erfc = _with_derivative(
    "erfc", _erf.erfc, lambda x, y: lnp.multiply(-2 / _SQRT_PI, exp_neg_square(x)),
    "1 - erf(x), to float32 relative accuracy in the tails (Cephes' erfcf).")
erfinv = _with_derivative(
    "erfinv", _erf.erfinv, lambda x, y: lnp.multiply(_SQRT_PI / 2, lnp.exp(lnp.multiply(y, y))),
    "The inverse of erf on [-1, 1] (Giles' single-precision polynomials).")
ndtr = _with_derivative(
    "ndtr", _erf.ndtr, lambda x, y: lnp.multiply(1 / _SQRT_2PI, exp_neg_square(x, 0.5)),
    "The standard normal CDF.")
ndtri = _with_derivative(
    "ndtri", _erf.ndtri,
    lambda p, y: lnp.multiply(_SQRT_2PI, lnp.exp(lnp.multiply(0.5, lnp.multiply(y, y)))),
    "The inverse of ndtr (Wichura's AS 241).")
digamma = _with_derivative(
    "digamma", _gamma.digamma, lambda x, y: _gamma.trigamma(x),
    "d/dx log Gamma(x); NaN at 0 and the negative integers (as JAX).")
gammaln = _with_derivative(
    "gammaln", _gamma.gammaln, lambda x, y: digamma(x),
    "log|Gamma(x)|; inf at 0, the negative integers and +-inf.")


def expit(x):
    """The logistic function 1 / (1 + exp(-x)) (the core sigmoid op)."""
    (x,), weak = _float_args(x)
    return bind("sigmoid", x, weak=weak)


def _logit(x):
    """log(x / (1 - x)); near 1/2 as log1p((2x - 1) / (1 - x)), whose argument is exact."""
    near_half = lnp.less(lnp.abs(lnp.subtract(x, 0.5)), 0.25)
    xc = lnp.where(near_half, x, 0.5)
    centred = lnp.log1p(lnp.divide(lnp.subtract(lnp.multiply(2.0, xc), 1.0), lnp.subtract(1.0, xc)))
    ratio = lnp.log(lnp.divide(x, lnp.subtract(1.0, x)))
    return lnp.where(near_half, centred, ratio)


logit = _with_derivative(
    "logit", _logit, lambda x, y: lnp.reciprocal(lnp.multiply(x, lnp.subtract(1.0, x))),
    "The inverse of expit, log(x / (1 - x)).")


def _x_times_log(log_fn, log_derivative, lowest):
    """xlogy-like f(x, y) = x * log_fn(y), 0 where x == 0 (for any y), with JAX's rule
    df = log_fn(y) dx + x * log_derivative(y) dy. Where x == 0 and y is outside
    (lowest, inf), y is replaced by a harmless 0 first (no 0 * inf), so the plain
    composition, which transformations that bypass the rule differentiate, agrees with it
    wherever log_fn(y) is finite."""
    @custom_jvp
    def f(x, y):
        usable = lnp.logical_and(lnp.greater(y, lowest), lnp.isfinite(y))
        y = lnp.where(lnp.logical_and(lnp.equal(x, 0.0), lnp.logical_not(usable)), lowest + 1.0, y)
        return lnp.multiply(x, log_fn(y))

    @f.defjvp
    def _rule(primals, tangents):
        (x, y), (tx, ty) = primals, tangents
        dy = lnp.where(lnp.equal(x, 0.0), 0.0, lnp.multiply(x, log_derivative(y)))
        return f(x, y), lnp.add(lnp.multiply(tx, log_fn(y)), lnp.multiply(ty, dy))

    def fn(x, y):
        (x, y), weak = _float_args(x, y)
        x, y = lnp.broadcast_arrays(x, y)
        return lnp._weak(f(x, y), weak)
    return fn


xlogy = _x_times_log(lnp.log, lnp.reciprocal, 0.0)
xlogy.__name__ = xlogy.__qualname__ = "xlogy"
xlogy.__doc__ = "x * log(y), 0 where x == 0 (as JAX: also for y <= 0, inf or NaN)."
xlog1py = _x_times_log(lnp.log1p, lambda y: lnp.reciprocal(lnp.add(y, 1.0)), -1.0)
xlog1py.__name__ = xlog1py.__qualname__ = "xlog1py"
xlog1py.__doc__ = "x * log1p(y), 0 where x == 0."


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, where=None):
    """log(sum(b * exp(a))) over `axis`, stable (the max, held out of the gradient, is
    subtracted first). With b, a negative sum gives NaN unless return_sign, which returns
    (log|sum|, sign). `where` masks entries out; rows with nothing left give -inf."""
    if b is not None:
        (a, b), weak = _float_args(a, b)
        a = lnp.where(lnp.not_equal(b, 0.0), a, float("-inf"))
    else:
        (a,), weak = _float_args(a)
    if where is not None:
        a = lnp.where(where, a, float("-inf"))
    dims = prim.normalize_axes(axis, a.ndim)
    amax = lnp.max(a, axis=dims, keepdims=True)
    amax = stop_gradient(lnp.where(lnp.isfinite(amax), amax, 0.0))
    e = lnp.exp(lnp.subtract(a, amax))
    if b is not None:
        e = lnp.multiply(e, b)
    total = lnp.sum(e, axis=dims, keepdims=keepdims)
    sign = lnp.sign(total)
    out = lnp.add(lnp.log(lnp.abs(total)), amax if keepdims else lnp.squeeze(amax, dims))
    out = lnp._weak(out, weak)
    if return_sign:
        return out, lnp._weak(sign, weak)
    if b is not None:
        out = lnp.where(lnp.less(sign, 0.0), float("nan"), out)
    return out
