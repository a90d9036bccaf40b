"""Kernels of gammaln, digamma and trigamma on float arrays (lnp code, float32 accuracy).

gammaln: a power series around 1 and 2 (where log|Gamma| crosses zero, so relative accuracy
needs it), the recurrence down to that window up to 8.5, Stirling's series above, and the
reflection formula below -0.5. digamma/trigamma: the recurrence up to 6, then the asymptotic
series; digamma near its positive root is a Taylor series around the root, and up to 2.5 the
derivative of gammaln's series. Negative arguments use the reflection formulas.
"""
from __future__ import annotations

import math

from .. import numpy as lnp
from ._accurate import polyval

# log Gamma(1 + z) = -log1p(z) + S(z), S(z) = (1 - euler_gamma) z + sum_{k>=2} (-1)^k
# (zeta(k) - 1) / k z^k (Abramowitz & Stegun 6.1.33), converging for |z| < 2; used for
# |z| <= 1/2, where 14 terms reach float32 precision. Coefficients: scipy.special.zetac.
_S = (1 - 0.5772156649015329, 0.3224670334241132, -0.0673523010531981, 0.020580808427784546,
      -0.007385551028673986, 0.0028905103307415234, -0.001192753911703261,
      0.0005096695247430425, -0.00022315475845357936, 9.945751278180853e-05,
      -4.492623673813314e-05, 2.0507212775670694e-05, -9.439488275268395e-06,
      4.374866789907487e-06, -2.039215753801366e-06)
_S_DERIVATIVE = tuple(k * c for k, c in enumerate(_S, 1))[::-1]
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_STIRLING = (-1 / 1680, 1 / 1260, -1 / 360, 1 / 12)     # in 1/x^2, times 1/x


def _series_s(z):
    """S(z) above: z * (c1 + c2 z + ...)."""
    return lnp.multiply(z, polyval(_S[::-1], z))


def _gammaln_positive(x):
    """log Gamma(x) for x >= 1/2 (other x are clamped into range; callers select)."""
    x = lnp.maximum(x, 0.5)
    z = lnp.subtract(lnp.minimum(x, 1.5), 1.0)
    near_one = lnp.subtract(_series_s(z), lnp.log1p(z))
    # 1.5 <= x < 8.5: Gamma(x) = (x - 1) ... (x - n) Gamma(x - n) with x - n in [1.5, 2.5)
    xm = lnp.clip(x, 1.5, 8.5)
    n = lnp.floor(lnp.subtract(xm, 1.5))
    prod = lnp.ones_like(x)
    for k in range(1, 7):
        prod = lnp.multiply(prod, lnp.where(lnp.less_equal(k, n), lnp.subtract(xm, k), 1.0))
    middle = lnp.add(lnp.log(prod), _series_s(lnp.subtract(lnp.subtract(xm, n), 2.0)))
    # x >= 8.5: Stirling's series, the next term below 2e-10
    xs = lnp.maximum(x, 8.5)
    inv = lnp.reciprocal(xs)
    correction = lnp.multiply(inv, polyval(_STIRLING, lnp.multiply(inv, inv)))
    stirling = lnp.add(lnp.subtract(lnp.multiply(lnp.subtract(xs, 0.5), lnp.log(xs)), xs),
                       lnp.add(_HALF_LOG_2PI, correction))
    return lnp.where(lnp.less(x, 1.5), near_one,
                     lnp.where(lnp.less(x, 8.5), middle, stirling))


# sin(pi r) = r * sum_k (-1)^k pi^(2k+1) / (2k+1)! r^2k, |r| <= 1/2 (the next term < 1e-11):
# no rounding of pi * r, which tan and sin near their poles and zeros would magnify
_SINPI = tuple((-1) ** k * math.pi ** (2 * k + 1) / math.factorial(2 * k + 1) for k in range(9))[::-1]


def _reduce(x):
    """x minus the nearest integer, in [-1/2, 1/2] (exact)."""
    return lnp.subtract(x, lnp.rint(x))


def _sinpi(r):
    return lnp.multiply(r, polyval(_SINPI, lnp.multiply(r, r)))


def _cospi(r):
    return _sinpi(lnp.subtract(0.5, lnp.abs(r)))


def gammaln(x):
    """log|Gamma(x)|: inf at 0, the negative integers and +-inf (as XLA's lgamma)."""
    small = lnp.less(lnp.abs(x), 0.5)
    xs = lnp.where(small, x, 0.25)
    near_zero = lnp.subtract(lnp.subtract(_series_s(xs), lnp.log1p(xs)), lnp.log(lnp.abs(xs)))
    xr = lnp.minimum(x, -0.5)
    reflected = lnp.subtract(
        lnp.subtract(math.log(math.pi), lnp.log(lnp.abs(_sinpi(_reduce(xr))))),
        _gammaln_positive(lnp.subtract(1.0, xr)))
    out = lnp.where(small, near_zero, lnp.where(lnp.less(x, 0.0), reflected, _gammaln_positive(x)))
    out = lnp.where(lnp.logical_or(lnp.equal(x, 0.0), lnp.isinf(x)), float("inf"), out)
    return lnp.where(lnp.isnan(x), x, out)


# digamma's positive root and the Taylor coefficients there: psi(x0 + d) = sum_k
# (-1)^(k+1) zeta(k + 1, x0) d^k (scipy.special.zeta, Hurwitz), for |d| < 0.3.
_ROOT_HI, _ROOT_LO = 1.4616321325302124, 1.2438149843418955e-08
_ROOT_SERIES = (0.9676722454476214, -0.44276316898359214, 0.2584997609556512,
                -0.16394270544240658, 0.10782405069126239, -0.07219956125645476,
                0.048804288164143145, -0.033161126474847376, 0.022597648232218125,
                -0.015424765904948968, 0.010538791616612182, -0.007204534386356875,
                0.004926781395729858)
# psi(y) ~ log y - 1/(2y) - sum B_2k / (2k y^2k) for y >= 6, in 1/y^2 (A&S 6.3.18)
_PSI_ASYMPTOTIC = (-1 / 132, 1 / 240, -1 / 252, 1 / 120, -1 / 12, 0.0)
# psi'(y) ~ 1/y + 1/(2y^2) + sum B_2k / y^(2k+1) for y >= 6 (A&S 6.4.12), in 1/y^2
_TRIGAMMA_ASYMPTOTIC = (-1 / 30, 1 / 42, -1 / 30, 1 / 6, 1.0)
_SHIFT = 6


def _recurrence(x, asymptotic, term):
    """f(x) for x > 0 from f(x) = f(x + 6) +- sum term(x + k) below 6."""
    shifted = lnp.where(lnp.less(x, _SHIFT), lnp.add(x, float(_SHIFT)), x)
    total = asymptotic(shifted)
    for k in range(_SHIFT):
        total = lnp.where(lnp.less(x, _SHIFT), lnp.add(total, term(lnp.add(x, float(k)))), total)
    return total


def _psi_asymptotic(y):
    inv2 = lnp.reciprocal(lnp.multiply(y, y))
    return lnp.add(lnp.subtract(lnp.log(y), lnp.divide(0.5, y)), polyval(_PSI_ASYMPTOTIC, inv2))


def _trigamma_asymptotic(y):
    inv = lnp.reciprocal(y)
    inv2 = lnp.multiply(inv, inv)
    return lnp.add(lnp.multiply(inv, polyval(_TRIGAMMA_ASYMPTOTIC, inv2)), lnp.multiply(0.5, inv2))


def _nonpositive_integer(x):
    return lnp.logical_and(lnp.less_equal(x, 0.0), lnp.equal(x, lnp.floor(x)))


def _reflection_offset(x):
    """x's offset from the nearest integer where the reflection formula is used (negative
    non-integers), 1/2 elsewhere (no pole in the branch that is not selected)."""
    used = lnp.logical_and(lnp.less(x, 0.0), lnp.logical_not(_nonpositive_integer(x)))
    return lnp.where(used, _reduce(x), 0.5)


def digamma(x):
    """psi(x) = d/dx log Gamma(x); NaN at 0 and the negative integers (as JAX)."""
    pos = lnp.where(lnp.greater(x, 0.0), x, lnp.subtract(1.0, x))   # reflection: psi(1 - x)
    psi = _recurrence(pos, _psi_asymptotic, lambda v: lnp.negative(lnp.reciprocal(v)))
    # psi(2 + w) = S'(w) (S above) above the root's window up to 2.5, where the recurrence
    # would cancel 7-fold
    w = lnp.clip(lnp.subtract(pos, 2.0), -0.5, 0.5)
    psi = lnp.where(lnp.logical_and(lnp.greater_equal(pos, _ROOT_HI + 0.3), lnp.less(pos, 2.5)),
                    polyval(_S_DERIVATIVE, w), psi)
    d = lnp.subtract(lnp.subtract(pos, _ROOT_HI), _ROOT_LO)
    near_root = lnp.less(lnp.abs(d), 0.3)
    d = lnp.where(near_root, d, 0.0)
    psi = lnp.where(near_root, lnp.multiply(d, polyval(_ROOT_SERIES[::-1], d)), psi)
    r = _reflection_offset(x)
    pi_cot = lnp.divide(lnp.multiply(math.pi, _cospi(r)), _sinpi(r))
    out = lnp.where(lnp.greater(x, 0.0), psi, lnp.subtract(psi, pi_cot))
    return lnp.where(_nonpositive_integer(x), float("nan"), out)


def trigamma(x):
    """psi'(x); inf at 0 and the negative integers."""
    pos = lnp.where(lnp.greater(x, 0.0), x, lnp.subtract(1.0, x))
    psi1 = _recurrence(pos, _trigamma_asymptotic, lambda v: lnp.reciprocal(lnp.multiply(v, v)))
    s = _sinpi(_reflection_offset(x))
    reflected = lnp.subtract(lnp.divide(math.pi ** 2, lnp.multiply(s, s)), psi1)
    out = lnp.where(lnp.greater(x, 0.0), psi1, reflected)
    return lnp.where(_nonpositive_integer(x), float("inf"), out)
