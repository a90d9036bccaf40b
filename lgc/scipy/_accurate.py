"""Building blocks the special functions need to full float32 accuracy, written with lnp.

lnp.log1p is log(1 + x) (it loses every digit below 2**-24 near 0), and exp(-x*x) loses
x*x's rounding error times x*x: these two helpers avoid both.
"""
from __future__ import annotations

from .. import numpy as lnp


def polyval(coeffs, x):
    """coeffs[0] * x**(n-1) + ... + coeffs[-1] by Horner's rule (Python floats: weak)."""
    p = lnp.full_like(x, coeffs[0])
    for c in coeffs[1:]:
        p = lnp.add(lnp.multiply(p, x), c)
    return p


def log1p(x):
    """log(1 + x) to full precision near 0: log(u) * x / (u - 1) with u = 1 + x rounded
    corrects u's rounding (Goldberg, "What every computer scientist should know about
    floating-point arithmetic", 1991, Theorem 4)."""
    u = lnp.add(x, 1.0)
    d = lnp.subtract(u, 1.0)
    exact = lnp.logical_or(lnp.equal(d, 0.0), lnp.isinf(x))
    safe_d = lnp.where(exact, 1.0, d)
    corrected = lnp.multiply(lnp.log(u), lnp.divide(x, safe_d))
    return lnp.where(lnp.equal(d, 0.0), x, lnp.where(lnp.isinf(x), lnp.log(u), corrected))


def exp_neg_square(x, scale=1.0):
    """exp(-scale * x**2) for scale 1 or 1/2, without x*x's rounding error: x = hi + lo with
    hi on a 1/16 grid, so hi*hi is exact and x*x = hi*hi + lo*(x + hi) (as Cephes' expx2).
    |x| above 64 counts as 64 (the result is 0 either way; inf - inf would be NaN)."""
    x = lnp.where(lnp.greater(lnp.abs(x), 64.0), 64.0, x)
    hi = lnp.multiply(lnp.trunc(lnp.multiply(x, 16.0)), 1.0 / 16.0)
    lo = lnp.subtract(x, hi)
    big = lnp.multiply(lnp.multiply(hi, hi), -scale)
    small = lnp.multiply(lnp.multiply(lo, lnp.add(x, hi)), -scale)
    return lnp.multiply(lnp.exp(big), lnp.exp(small))
