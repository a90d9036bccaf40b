"""Spike functions with surrogate gradients.

A spike is heaviside(x) (x: membrane potential minus threshold; 1 where x > 0), whose
derivative is zero almost everywhere, so nothing could be learnt through it. A surrogate
keeps the heaviside forward and uses a smooth bump as its derivative (Neftci, Mostafa and
Zenke 2019). Three bumps, as snnTorch names them:

  fast_sigmoid(slope)  1 / (slope * |x| + 1)^2              (SuperSpike, Zenke & Ganguli 2018)
  arctan(alpha)        (alpha / 2) / (1 + (pi / 2 * alpha * x)^2)
  triangle(width)      max(0, 1 - |x| / width) / width      (Bellec et al. 2018, area 1)

`rule="vjp"` (default) makes the spike a custom_vjp: reverse mode (grad, BPTT) uses the
bump; forward mode differentiates the heaviside itself (zero). `rule="jvp"` makes it a
custom_jvp: both modes use the bump (grad through its transpose).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .. import numpy as lnp
from ..trace.autodiff import custom_jvp, custom_vjp

_DERIVATIVES = {
    "fast_sigmoid": lambda x, a: 1.0 / lnp.square(a * lnp.abs(x) + 1.0),
    "arctan": lambda x, a: (a / 2) / (1.0 + lnp.square((math.pi / 2 * a) * x)),
    "triangle": lambda x, a: lnp.maximum(1.0 - lnp.abs(x) / a, 0.0) / a,
}
_BUILT: dict = {}


def heaviside(x):
    """1 where x > 0, else 0, in x's float dtype."""
    x = lnp.asarray(x)
    return lnp.astype(lnp.greater(x, 0), x.dtype if lnp.issubdtype(x.dtype, lnp.floating)
                      else lnp.float32)


@dataclass(frozen=True)
class Surrogate:
    """A spike function: heaviside forward, `derivative` as its gradient."""
    kind: str
    param: float
    rule: str = "vjp"

    def __post_init__(self):
        if self.kind not in _DERIVATIVES:
            raise ValueError(f"surrogate: unknown kind {self.kind!r} (one of {', '.join(_DERIVATIVES)})")
        if self.rule not in ("vjp", "jvp"):
            raise ValueError(f"surrogate: rule must be 'vjp' or 'jvp', got {self.rule!r}")
        if not self.param > 0:
            raise ValueError(f"surrogate {self.kind}: its parameter must be > 0, got {self.param}")

    def derivative(self, x):
        """The surrogate derivative at x (lnp)."""
        return _DERIVATIVES[self.kind](lnp.asarray(x), self.param)

    def __call__(self, x):
        if self not in _BUILT:
            _BUILT[self] = self._build()
        return _BUILT[self](x)

    def _build(self):
        d = self.derivative
        if self.rule == "vjp":
            spike = custom_vjp(heaviside)
            spike.defvjp(lambda x: (heaviside(x), x), lambda x, g: (g * d(x),))
            return spike
        spike = custom_jvp(heaviside)
        spike.defjvp(lambda p, t: (heaviside(p[0]), d(p[0]) * t[0]))
        return spike


def fast_sigmoid(slope: float = 25.0, rule: str = "vjp") -> Surrogate:
    return Surrogate("fast_sigmoid", slope, rule)


def arctan(alpha: float = 2.0, rule: str = "vjp") -> Surrogate:
    return Surrogate("arctan", alpha, rule)


def triangle(width: float = 1.0, rule: str = "vjp") -> Surrogate:
    return Surrogate("triangle", width, rule)
