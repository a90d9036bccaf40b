"""Plasticity outside backpropagation: homeostasis and STDP.

Homeostasis keeps each neuron near a target firing rate (spikes per step), measured over
a batch and applied between training steps:
  adapt_threshold   thr_j <- max(thr_j + eta (rate_j - target), floor): a neuron that fires
                    too often becomes harder to fire, a silent one easier
  synaptic_scaling  W[:, j] <- W[:, j] exp(+-eta (target - rate_j)): all of a neuron's
                    incoming weights scaled together (Turrigiano 2008), which keeps their
                    ratios, i.e. what the neuron has learnt. Excitatory (positive) weights
                    scale by exp(+d), inhibitory ones by exp(-d): with signed weights,
                    scaling both alike would not change whether a silent neuron can fire
                    (its weights grew without bound when we tried); exp keeps each sign

STDP (pair-based, with traces; Song, Miller and Abbott 2000; Morrison et al. 2008): each
synapse keeps a presynaptic trace x_pre <- x_pre exp(-dt / tau_plus) + pre and each neuron
a postsynaptic trace x_post <- x_post exp(-dt / tau_minus) + post; then
  dW = a_plus x_pre^T post - a_minus pre^T x_post
(a post spike after pre spikes potentiates, a pre spike after post spikes depresses),
summed over the batch, and W is clipped to [w_min, w_max].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import lax
from .. import numpy as lnp


def firing_rate(spikes):
    """Spikes per step of each neuron: the mean over every axis but the last."""
    s = lnp.asarray(spikes)
    return lnp.mean(lnp.reshape(s, (-1, s.shape[-1])), axis=0)


def adapt_threshold(threshold, rate, target: float, eta: float, floor: float = 0.05):
    return lnp.maximum(threshold + eta * (rate - target), floor)


def synaptic_scaling(w, rate, target: float, eta: float):
    d = eta * (target - rate)
    return w * lnp.exp(lnp.where(w > 0, d, -d))


class STDPState(NamedTuple):
    pre: Any       # [B, K] presynaptic traces
    post: Any      # [B, N] postsynaptic traces


@dataclass(frozen=True)
class STDP:
    a_plus: float = 0.01
    a_minus: float = 0.0105
    tau_plus: float = 20.0
    tau_minus: float = 20.0
    dt: float = 1.0
    w_min: float = 0.0
    w_max: float = 1.0

    def init(self, batch: int, n_pre: int, n_post: int, dtype=lnp.float32) -> STDPState:
        return STDPState(lnp.zeros((batch, n_pre), dtype), lnp.zeros((batch, n_post), dtype))

    def step(self, state: STDPState, pre, post):
        """(new traces, dW [K, N]) for one step's spikes pre [B, K] and post [B, N]."""
        x_pre = math.exp(-self.dt / self.tau_plus) * state.pre + pre
        x_post = math.exp(-self.dt / self.tau_minus) * state.post + post
        dw = self.a_plus * (lnp.transpose(x_pre) @ post) - self.a_minus * (lnp.transpose(pre) @ x_post)
        return STDPState(x_pre, x_post), dw

    def clip(self, w):
        return lnp.clip(w, self.w_min, self.w_max)


def stdp_train(rule: STDP, neuron, w, pre_spikes, threshold=None):
    """Unsupervised: run the layer W [K, N] of `neuron`s on pre_spikes [T, B, K], applying
    the rule's update at every step (online). Returns (W after, post spikes [T, B, N])."""
    pre_spikes = lnp.asarray(pre_spikes)
    _, B, K = pre_spikes.shape
    N = lnp.shape(w)[1]
    init = (lnp.asarray(w), neuron.init((B, N), pre_spikes.dtype), rule.init(B, K, N))

    def body(carry, pre):
        w, st, tr = carry
        st, post = neuron.step(st, pre @ w, threshold)
        tr, dw = rule.step(tr, pre, post)
        return (rule.clip(w + dw), st, tr), post

    (w, _, _), post = lax.scan(body, init, pre_spikes)
    return w, post
