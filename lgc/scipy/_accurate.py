"""Building blocks the special functions need to full float32 accuracy, written with lnp.

exp(-x*x) loses x*x's rounding error times x*x: exp_neg_square avoids it.
"""
from __future__ import annotations

from .. import numpy as lnp


def polyval(coeffs, x):
    """coeffs[0] * x**(n-1) + ... + coeffs[-1] by Horner's rule (Python floats: weak)."""
    p = lnp.full_like(x, coeffs[0])
    for c in coeffs[1:]:
        p = lnp.add(lnp.multiply(p, x), c)
    return p


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
