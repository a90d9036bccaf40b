"""Spiking neurons as pure functions over their state, and `run`, which scans one over time.

A neuron is a frozen dataclass of constants (time constants, threshold, spike function);
`init(shape)` gives its state (a NamedTuple of arrays) and `step(state, current,
threshold=None) -> (state, spikes)` advances it by one time step of length dt. `threshold`
overrides the constant with an array (one per neuron: homeostasis adapts it). Each step
integrates first, then fires, then resets, so a spike at step t is caused by the current
of step t. Spikes come from a surrogate spike function (lgc.snn.surrogate), so
backpropagation through time (grad of a loss over `run`) learns through them.

  LIF         v <- beta v + I, beta = exp(-dt / tau); s = spike(v - thr); v <- v - s thr
              (reset="subtract") or v (1 - s) (reset="zero")
  ALIF        LIF whose threshold A = thr + beta_adapt a rises with each spike:
              a <- rho a + (1 - rho) s, rho = exp(-dt / tau_adapt) (Bellec et al. 2018)
  LI          v <- beta v + I, no spikes: the step's output is v (a readout layer)
  Izhikevich  v <- v + dt (0.04 v^2 + 5 v + 140 - u + I), u <- u + dt a (b v - u) (both from
              the old v, u: forward Euler); s = spike(v - v_peak); then v <- c, u <- u + d
              where s (Izhikevich 2003)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import lax
from .. import numpy as lnp
from ..trace.autodiff import stop_gradient
from .surrogate import Surrogate, fast_sigmoid


class LIFState(NamedTuple):
    v: Any


class ALIFState(NamedTuple):
    v: Any
    a: Any


class IzhikevichState(NamedTuple):
    v: Any
    u: Any


def _check(name, **positive):
    for k, v in positive.items():
        if not v > 0:
            raise ValueError(f"{name}: {k} must be > 0, got {v}")


def _reset(v, s, thr, how: str, detach: bool):
    r = stop_gradient(s) if detach else s
    return v - r * thr if how == "subtract" else v * (1.0 - r)


@dataclass(frozen=True)
class LI:
    """Leaky integrator without spikes: the readout of a network, whose output each step is
    its membrane potential. The base of the leaky spiking neurons."""
    tau: float = 10.0
    dt: float = 1.0

    def __post_init__(self):
        _check(type(self).__name__, tau=self.tau, dt=self.dt)

    @property
    def beta(self) -> float:
        return math.exp(-self.dt / self.tau)

    def init(self, shape, dtype=lnp.float32) -> LIFState:
        return LIFState(lnp.zeros(shape, dtype))

    def step(self, state: LIFState, current, threshold=None):
        v = self.beta * state.v + current
        return LIFState(v), v


@dataclass(frozen=True)
class LIF(LI):
    """Leaky integrate-and-fire (see the module docstring)."""
    threshold: float = 1.0
    reset: str = "subtract"
    detach_reset: bool = False       # the reset passes no gradient (often trains better)
    spike: Surrogate = fast_sigmoid()

    def __post_init__(self):
        super().__post_init__()
        if self.reset not in ("subtract", "zero"):
            raise ValueError(f"{type(self).__name__}: reset must be 'subtract' or 'zero', "
                             f"got {self.reset!r}")

    def step(self, state: LIFState, current, threshold=None):
        thr = self.threshold if threshold is None else threshold
        v = self.beta * state.v + current
        s = self.spike(v - thr)
        return LIFState(_reset(v, s, thr, self.reset, self.detach_reset)), s


@dataclass(frozen=True)
class ALIF(LIF):
    """Adaptive LIF: the threshold rises after each spike and decays back (see above)."""
    tau: float = 20.0
    tau_adapt: float = 200.0
    beta_adapt: float = 1.8

    def __post_init__(self):
        super().__post_init__()
        _check("ALIF", tau_adapt=self.tau_adapt)

    @property
    def rho(self) -> float:
        return math.exp(-self.dt / self.tau_adapt)

    def init(self, shape, dtype=lnp.float32) -> ALIFState:
        return ALIFState(lnp.zeros(shape, dtype), lnp.zeros(shape, dtype))

    def step(self, state: ALIFState, current, threshold=None):
        base = self.threshold if threshold is None else threshold
        v = self.beta * state.v + current
        thr = base + self.beta_adapt * state.a
        s = self.spike(v - thr)
        a = self.rho * state.a + (1.0 - self.rho) * s
        return ALIFState(_reset(v, s, thr, self.reset, self.detach_reset), a), s


@dataclass(frozen=True)
class Izhikevich:
    """Izhikevich's two-variable neuron in mV and ms; the defaults are regular spiking."""
    a: float = 0.02
    b: float = 0.2
    c: float = -65.0
    d: float = 8.0
    dt: float = 0.5
    v_peak: float = 30.0
    spike: Surrogate = fast_sigmoid()

    def __post_init__(self):
        _check("Izhikevich", dt=self.dt)

    def init(self, shape, dtype=lnp.float32) -> IzhikevichState:
        v = lnp.full(shape, self.c, dtype)
        return IzhikevichState(v, self.b * v)

    def step(self, state: IzhikevichState, current, threshold=None):
        peak = self.v_peak if threshold is None else threshold
        v, u = state
        v1 = v + self.dt * (0.04 * v * v + 5.0 * v + 140.0 - u + current)
        u1 = u + self.dt * (self.a * (self.b * v - u))
        s = self.spike(v1 - peak)
        return IzhikevichState(v1 + s * (self.c - v1), u1 + self.d * s), s


def run(neuron, currents, state=None, threshold=None, record: bool = False):
    """Step `neuron` over the leading (time) axis of currents [T, ...] with lax.scan
    (unrolled: T copies of the step in a traced graph). Returns (final state, spikes
    [T, ...]) (LI: its potentials), and with record=True also the states after each
    step, stacked."""
    currents = lnp.asarray(currents)
    if state is None:
        state = neuron.init(currents.shape[1:], currents.dtype)

    def body(st, i):
        st, s = neuron.step(st, i, threshold)
        return st, ((s, st) if record else s)

    final, ys = lax.scan(body, state, currents)
    return (final, *ys) if record else (final, ys)
