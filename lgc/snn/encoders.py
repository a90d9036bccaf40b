"""Input encoders: intensities x in [0, 1] as spike trains [T, *x.shape] (float 0/1).

  rate     each step an independent Bernoulli(gain * x) draw: the Poisson process of rate
           gain * x spikes per step, discretised (snnTorch's spikegen.rate)
  latency  one spike per input, brighter earlier; inputs at or below `threshold` never
           spike. linear: step round((1 - x) (T - 1)); log: the time an RC circuit driven
           by x takes to reach threshold, tau ln(x / (x - threshold)), rounded and clipped
           to T - 1 (snnTorch's spikegen.latency)
"""
from __future__ import annotations

from .. import numpy as lnp
from .. import random


def rate(key, x, num_steps: int, gain: float = 1.0):
    """Bernoulli spikes with probability clip(gain * x, 0, 1) at each of num_steps steps."""
    p = lnp.clip(gain * lnp.asarray(x, lnp.float32), 0.0, 1.0)
    return lnp.astype(random.bernoulli(key, p, (num_steps,) + p.shape), lnp.float32)


def latency_steps(x, num_steps: int, threshold: float = 0.01, method: str = "linear",
                  tau: float = 5.0):
    """The step each input spikes at (float; meaningless where x <= threshold)."""
    x = lnp.clip(lnp.asarray(x, lnp.float32), 0.0, 1.0)
    if method == "linear":
        return lnp.round((1.0 - x) * (num_steps - 1))
    if method == "log":
        above = lnp.maximum(x, threshold + 1e-6)
        return lnp.minimum(lnp.round(tau * lnp.log(above / (above - threshold))), num_steps - 1)
    raise ValueError(f"latency: method must be 'linear' or 'log', got {method!r}")


def latency(x, num_steps: int, threshold: float = 0.01, method: str = "linear",
            tau: float = 5.0):
    """One spike per input above threshold, at latency_steps(x, ...)."""
    x = lnp.asarray(x, lnp.float32)
    t = latency_steps(x, num_steps, threshold, method, tau)
    steps = lnp.reshape(lnp.arange(num_steps, dtype=lnp.float32), (num_steps,) + (1,) * x.ndim)
    return lnp.astype(lnp.logical_and(lnp.equal(steps, t), x > threshold), lnp.float32)
