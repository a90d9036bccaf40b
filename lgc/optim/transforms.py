"""optax's building blocks (each a GradientTransformation): scaling by a constant, a
schedule or the learning rate, momentum (trace), Adam's and RMSProp's moment estimates,
decoupled weight decay, and clipping by the global norm. Formulas as in optax."""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import numpy as lnp
from ..tree_util import tree_map
from .base import (EmptyState, GradientTransformation, global_norm, safe_increment,
                   zeros_like_tree)


def _count0():
    return lnp.zeros((), np.int32)


def _moment(updates, moments, decay, square: bool):
    """(1 - decay) * g (or g^2) + decay * m, leaf by leaf."""
    return tree_map(lambda g, m: lnp.add(lnp.multiply(1 - decay, lnp.square(g) if square else g),
                                         lnp.multiply(decay, m)), updates, moments)


def _bias_corrected(moments, decay, count):
    correction = lnp.subtract(1.0, lnp.power(decay, count))
    return tree_map(lambda m: lnp.divide(m, lnp.astype(correction, lnp.result_type(m))), moments)


def _cast(tree, dtype):
    return tree if dtype is None else tree_map(lambda v: lnp.astype(v, dtype), tree)


def scale(step_size) -> GradientTransformation:
    """updates * step_size."""
    return GradientTransformation(
        lambda params: EmptyState(),
        lambda updates, state, params=None: (
            tree_map(lambda g: lnp.multiply(step_size, g), updates), state))


class ScaleByScheduleState(NamedTuple):
    count: Any


def scale_by_schedule(step_size_fn) -> GradientTransformation:
    """updates * step_size_fn(count), count the number of updates so far."""
    def update(updates, state, params=None):
        step = step_size_fn(state.count)
        updates = tree_map(lambda g: lnp.multiply(lnp.astype(step, lnp.result_type(g)), g), updates)
        return updates, ScaleByScheduleState(safe_increment(state.count))
    return GradientTransformation(lambda params: ScaleByScheduleState(_count0()), update)


def scale_by_learning_rate(learning_rate, *, flip_sign: bool = True) -> GradientTransformation:
    """-learning_rate * updates (a number or a schedule count -> rate)."""
    sign = -1 if flip_sign else 1
    if callable(learning_rate):
        return scale_by_schedule(lambda count: lnp.multiply(sign, learning_rate(count)))
    return scale(sign * learning_rate)


class TraceState(NamedTuple):
    trace: Any


def trace(decay, nesterov: bool = False, accumulator_dtype=None) -> GradientTransformation:
    """Momentum: t = g + decay * t; the update is t, or g + decay * t with nesterov."""
    def update(updates, state, params=None):
        step = lambda g, t: lnp.add(g, lnp.multiply(decay, t))  # noqa: E731
        new_trace = tree_map(step, updates, state.trace)
        updates = tree_map(step, updates, new_trace) if nesterov else new_trace
        return updates, TraceState(_cast(new_trace, accumulator_dtype))
    return GradientTransformation(
        lambda params: TraceState(zeros_like_tree(params, accumulator_dtype)), update)


class ScaleByAdamState(NamedTuple):
    count: Any
    mu: Any
    nu: Any


def scale_by_adam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None, *,
                  nesterov: bool = False) -> GradientTransformation:
    """Adam's direction (Kingma & Ba 2015): bias-corrected first moment over the square root
    of the bias-corrected second moment; nesterov gives NAdam (Dozat 2016)."""
    def init(params):
        return ScaleByAdamState(_count0(), zeros_like_tree(params, mu_dtype), zeros_like_tree(params))

    def update(updates, state, params=None):
        mu = _moment(updates, state.mu, b1, square=False)
        nu = _moment(updates, state.nu, b2, square=True)
        count = safe_increment(state.count)
        if nesterov:
            mu_hat = tree_map(lambda m, g: lnp.add(lnp.multiply(b1, m), lnp.multiply(1 - b1, g)),
                              _bias_corrected(mu, b1, safe_increment(count)),
                              _bias_corrected(updates, b1, count))
        else:
            mu_hat = _bias_corrected(mu, b1, count)
        nu_hat = _bias_corrected(nu, b2, count)
        updates = tree_map(lambda m, v: lnp.divide(m, lnp.add(lnp.sqrt(lnp.add(v, eps_root)), eps)),
                           mu_hat, nu_hat)
        return updates, ScaleByAdamState(count, _cast(mu, mu_dtype), nu)
    return GradientTransformation(init, update)


class ScaleByRmsState(NamedTuple):
    count: Any
    nu: Any


class ScaleByRStdDevState(NamedTuple):
    count: Any
    mu: Any
    nu: Any


def _rms_scaling(v, g, eps, eps_in_sqrt):
    if eps_in_sqrt:
        return lnp.multiply(g, lnp.rsqrt(lnp.add(v, eps)))
    return lnp.divide(g, lnp.add(lnp.sqrt(v), eps))


def scale_by_rms(decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt: bool = True,
                 bias_correction: bool = False) -> GradientTransformation:
    """RMSProp (Hinton's lecture 6e): updates over the root of a running mean of g^2."""
    def init(params):
        return ScaleByRmsState(_count0(), tree_map(lambda p: lnp.full_like(p, initial_scale), params))

    def update(updates, state, params=None):
        nu = _moment(updates, state.nu, decay, square=True)
        count = safe_increment(state.count)
        nu_hat = _bias_corrected(nu, decay, count) if bias_correction else nu
        updates = tree_map(lambda v, g: _rms_scaling(v, g, eps, eps_in_sqrt), nu_hat, updates)
        return updates, ScaleByRmsState(count, nu)
    return GradientTransformation(init, update)


def scale_by_stddev(decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt: bool = True,
                    bias_correction: bool = False) -> GradientTransformation:
    """Centred RMSProp (Graves 2013): g^2's running mean minus the square of g's."""
    def init(params):
        return ScaleByRStdDevState(_count0(), zeros_like_tree(params),
                                   tree_map(lambda p: lnp.full_like(p, initial_scale), params))

    def update(updates, state, params=None):
        mu = _moment(updates, state.mu, decay, square=False)
        nu = _moment(updates, state.nu, decay, square=True)
        count = safe_increment(state.count)
        mu_hat = _bias_corrected(mu, decay, count) if bias_correction else mu
        nu_hat = _bias_corrected(nu, decay, count) if bias_correction else nu
        updates = tree_map(lambda m, v, g: _rms_scaling(lnp.subtract(v, lnp.square(m)), g, eps,
                                                        eps_in_sqrt), mu_hat, nu_hat, updates)
        return updates, ScaleByRStdDevState(count, mu, nu)
    return GradientTransformation(init, update)


def add_decayed_weights(weight_decay=0.0, mask=None) -> GradientTransformation:
    """updates + weight_decay * params (decoupled weight decay, Loshchilov & Hutter 2019).
    `mask`: a pytree of bools like params (or a function params -> one); False leaves are
    not decayed."""
    def update(updates, state, params=None):
        if params is None:
            raise ValueError("add_decayed_weights needs params: call update(updates, state, params)")
        keep = mask(params) if callable(mask) else mask
        if keep is None:
            keep = tree_map(lambda p: True, params)
        updates = tree_map(lambda g, p, k: lnp.add(g, lnp.multiply(weight_decay, p)) if k else g,
                           updates, params, keep)
        return updates, state
    return GradientTransformation(lambda params: EmptyState(), update)


def clip_by_global_norm(max_norm) -> GradientTransformation:
    """Every update scaled by max_norm / global_norm when the global norm exceeds max_norm."""
    def update(updates, state, params=None):
        norm = global_norm(updates)
        inside = lnp.less(norm, max_norm)
        updates = tree_map(lambda g: lnp.where(inside, g, lnp.multiply(
            lnp.divide(g, lnp.astype(norm, lnp.result_type(g))), max_norm)), updates)
        return updates, state
    return GradientTransformation(lambda params: EmptyState(), update)
