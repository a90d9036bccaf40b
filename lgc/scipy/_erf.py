"""Kernels of erfc, erfinv, ndtr and ndtri on float arrays (lnp code, float32 accuracy).

Each takes an already promoted float array; lgc.scipy.special wraps them with JAX's
promotion and their exact derivatives. Branches are computed on inputs clamped into their
own range, so an unselected branch never makes an inf or NaN that a gradient would see.
"""
from __future__ import annotations

import math

from .. import numpy as lnp
from ..ops.core import bind
from ._accurate import exp_neg_square, polyval

# Cephes erfcf (S. L. Moshier, Cephes Math Library, single/ndtrf.c): for t >= 1,
# erfc(t) = exp(-t^2) / t * P(1/t^2) below 2 and * R(1/t^2) above; below 1, 1 - erf(t) with
# erf(t) = t * T(t^2). Each has relative error ~3e-8 in exact arithmetic.
_ERFC_P = (2.326819970068386e-2, -1.387039388740657e-1, 3.687424674597105e-1,
           -5.824733027278666e-1, 6.210004621745983e-1, -4.944515323274145e-1,
           3.404879937665872e-1, -2.741127028184656e-1, 5.638259427386472e-1)
_ERFC_R = (-1.047766399936249e1, 1.297719955372516e1, -7.495518717768503e0,
           2.921019019210786e0, -1.015265279202700e0, 4.218463358204948e-1,
           -2.820767439740514e-1, 5.641895067754075e-1)
_ERF_T = (7.853861353153693e-5, -8.010193625184903e-4, 5.188327685732524e-3,
          -2.685381193529856e-2, 1.128358514861418e-1, -3.761262582423300e-1,
          1.128379165726710e0)


def _erfc_from(x, t, exp_neg_t2):
    """erfc(x) given t = |x| and exp(-x^2) (computed by the caller from its own input)."""
    ts = lnp.maximum(t, 1.0)
    q = lnp.reciprocal(ts)
    y = lnp.multiply(q, q)
    poly = lnp.where(lnp.less(ts, 2.0), polyval(_ERFC_P, y), polyval(_ERFC_R, y))
    tail = lnp.multiply(lnp.multiply(exp_neg_t2, q), poly)
    tail = lnp.where(lnp.less(x, 0.0), lnp.subtract(2.0, tail), tail)
    xs = lnp.clip(x, -1.0, 1.0)
    small = lnp.subtract(1.0, lnp.multiply(xs, polyval(_ERF_T, lnp.multiply(xs, xs))))
    return lnp.where(lnp.less(t, 1.0), small, tail)


def erfc(x):
    return _erfc_from(x, lnp.abs(x), exp_neg_square(x))


def ndtr(x):
    """The standard normal CDF, 0.5 * erfc(-x / sqrt(2)), with exp(-x^2 / 2) taken from x
    itself (so the rounding of x / sqrt(2) does not grow in the far tail)."""
    z = lnp.multiply(x, -1.0 / math.sqrt(2.0))
    return lnp.multiply(0.5, _erfc_from(z, lnp.abs(z), exp_neg_square(x, 0.5)))


# M. Giles, "Approximating the erfinv function", GPU Computing Gems Jade (2011): the single
# precision version, polynomials in w = -log((1 - x)(1 + x)) (XLA's erfinv uses them too).
_ERFINV_CENTRAL = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                   0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
_ERFINV_TAIL = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
                -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)


def erfinv_giles(x, w):
    """Giles' erfinv(x) given w = -log(1 - x^2) (callers choose how to compute w)."""
    central = lnp.less(w, 5.0)
    v = lnp.where(central, lnp.subtract(w, 2.5),
                  lnp.subtract(lnp.sqrt(lnp.maximum(w, 5.0)), 3.0))
    p = lnp.where(central, _ERFINV_CENTRAL[0], _ERFINV_TAIL[0])
    for a, b in zip(_ERFINV_CENTRAL[1:], _ERFINV_TAIL[1:]):
        p = lnp.add(lnp.where(central, a, b), lnp.multiply(p, v))
    return lnp.multiply(p, x)


def erfinv(x):
    """Giles' erfinv with w = -log((1 - x)(1 + x)) (exact factors near |x| = 1); +-inf at
    +-1 and NaN outside [-1, 1]."""
    edge = lnp.equal(lnp.abs(x), 1.0)
    inside = lnp.where(edge, 0.0, x)
    w = lnp.negative(lnp.log(lnp.multiply(lnp.subtract(1.0, inside), lnp.add(1.0, inside))))
    inf = lnp.where(lnp.greater(x, 0.0), float("inf"), float("-inf"))
    return lnp.where(edge, inf, erfinv_giles(inside, w))


_TINY = 1.1754944e-38      # the smallest normal float32: p below it counts as this in ndtri

# M. J. Wichura, "Algorithm AS 241: the percentage points of the normal distribution",
# Applied Statistics 37 (1988): PPND16, rational functions with positive coefficients (well
# conditioned in float32; relative error 1e-16 in exact arithmetic). Lowest order first.
_AS241_A = (3.387132872796366608, 133.14166789178437745, 1971.5909503065514427,
            13731.693765509461125, 45921.953931549871457, 67265.770927008700853,
            33430.575583588128105, 2509.0809287301226727)
_AS241_B = (1.0, 42.313330701600911252, 687.1870074920579083, 5394.1960214247511077,
            21213.794301586595867, 39307.89580009271061, 28729.085735721942674,
            5226.495278852545925)
_AS241_C = (1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055,
            3.64784832476320460504, 1.27045825245236838258, 0.24178072517745061177,
            0.0227238449892691845833, 7.7454501427834140764e-4)
_AS241_D = (1.0, 2.05319162663775882187, 1.6763848301838038494, 0.68976733498510000455,
            0.14810397642748007459, 0.0151986665636164571966, 5.475938084995344946e-4,
            1.05075007164441684324e-9)
_AS241_E = (6.6579046435011037772, 5.4637849111641143699, 1.7848265399172913358,
            0.29656057182850489123, 0.026532189526576123093, 0.0012426609473880784386,
            2.71155556874348757815e-5, 2.01033439929228813265e-7)
_AS241_F = (1.0, 0.59983220655588793769, 0.13692988092273580531, 0.0148753612908506148525,
            7.868691311456132591e-4, 1.8463183175100546818e-5, 1.4215117583164458887e-7,
            2.04426310338993978564e-15)


def _ratio(num, den, x):
    return lnp.divide(polyval(num[::-1], x), polyval(den[::-1], x))


def ndtri(p):
    """The inverse of ndtr (AS 241): a rational function of 0.180625 - (p - 1/2)^2 for
    |p - 1/2| <= 0.425, else of r = sqrt(-log(tail probability)) - 1.6 (r <= 5) or - 5;
    -inf at 0, inf at 1, NaN outside [0, 1]."""
    q = lnp.subtract(p, 0.5)
    central = lnp.less_equal(lnp.abs(q), 0.425)
    qc = lnp.where(central, q, 0.0)
    mid = lnp.multiply(qc, _ratio(_AS241_A, _AS241_B, lnp.subtract(0.180625, lnp.multiply(qc, qc))))
    tail_p = lnp.where(lnp.less(q, 0.0), p, lnp.subtract(1.0, p))      # exact for p > 1/2
    tail_p = lnp.clip(lnp.where(central, 0.075, tail_p), _TINY, 0.075)
    r = lnp.sqrt(lnp.negative(lnp.log(tail_p)))
    near = lnp.less_equal(r, 5.0)
    tail = lnp.where(near, _ratio(_AS241_C, _AS241_D, lnp.subtract(lnp.minimum(r, 5.0), 1.6)),
                     _ratio(_AS241_E, _AS241_F, lnp.subtract(lnp.maximum(r, 5.0), 5.0)))
    tail = lnp.where(lnp.less(q, 0.0), lnp.negative(tail), tail)
    out = lnp.where(central, mid, tail)
    out = lnp.where(lnp.equal(p, 0.0), float("-inf"), out)
    out = lnp.where(lnp.equal(p, 1.0), float("inf"), out)
    inside = lnp.logical_and(lnp.greater_equal(p, 0.0), lnp.less_equal(p, 1.0))   # False for NaN
    return lnp.where(inside, out, float("nan"))
