"""optax's learning-rate schedules: functions count -> value, written with lnp so that the
count may be the traced step counter of an optimizer state (inside lgc.jit)."""
from __future__ import annotations

import math

from .. import numpy as lnp


def constant_schedule(value):
    return lambda count: value


def polynomial_schedule(init_value, end_value, power, transition_steps, transition_begin=0):
    """From init_value to end_value over transition_steps counts after transition_begin,
    along (1 - t)^power."""
    if transition_steps <= 0:
        return constant_schedule(init_value)

    def schedule(count):
        t = lnp.clip(lnp.subtract(count, transition_begin), 0, transition_steps)
        frac = lnp.subtract(1.0, lnp.divide(t, transition_steps))
        return lnp.add(lnp.multiply(init_value - end_value, lnp.power(frac, power)), end_value)
    return schedule


def linear_schedule(init_value, end_value, transition_steps, transition_begin=0):
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def exponential_decay(init_value, transition_steps, decay_rate, transition_begin=0,
                      staircase: bool = False, end_value=None):
    """init_value * decay_rate ** ((count - transition_begin) / transition_steps), floored
    with staircase, held at init_value before transition_begin, bounded by end_value."""
    if transition_steps <= 0:
        return constant_schedule(init_value)

    def schedule(count):
        steps = lnp.subtract(count, transition_begin)
        p = lnp.divide(steps, transition_steps)
        if staircase:
            p = lnp.floor(p)
        value = lnp.where(lnp.less_equal(steps, 0), init_value,
                          lnp.multiply(init_value, lnp.power(decay_rate, p)))
        if end_value is not None:
            value = (lnp.maximum if decay_rate < 1 else lnp.minimum)(value, end_value)
        return value
    return schedule


def cosine_decay_schedule(init_value, decay_steps, alpha=0.0, exponent=1.0):
    """init_value * ((1 - alpha) * (1/2 (1 + cos(pi t / decay_steps)))^exponent + alpha),
    t = min(count, decay_steps)."""
    if decay_steps <= 0:
        raise ValueError(f"cosine_decay_schedule: decay_steps must be positive, not {decay_steps}")

    def schedule(count):
        t = lnp.minimum(count, decay_steps)
        cosine = lnp.multiply(0.5, lnp.add(1.0, lnp.cos(lnp.multiply(math.pi / decay_steps, t))))
        return lnp.multiply(init_value, lnp.add(lnp.multiply(1 - alpha, lnp.power(cosine, exponent)),
                                                alpha))
    return schedule


def join_schedules(schedules, boundaries):
    """schedules[i + 1](count - boundaries[i]) from boundaries[i] on."""
    def schedule(count):
        out = schedules[0](count)
        for boundary, s in zip(boundaries, schedules[1:]):
            out = lnp.where(lnp.less(count, boundary), out, s(lnp.subtract(count, boundary)))
        return out
    return schedule


def warmup_cosine_decay_schedule(init_value, peak_value, warmup_steps, decay_steps,
                                 end_value=0.0, exponent=1.0):
    """Linear from init_value to peak_value over warmup_steps, then cosine decay to
    end_value at decay_steps (counted from 0, warmup included)."""
    alpha = 0.0 if peak_value == 0 else end_value / peak_value
    return join_schedules([linear_schedule(init_value, peak_value, warmup_steps),
                           cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha,
                                                 exponent)], [warmup_steps])


def piecewise_constant_schedule(init_value, boundaries_and_scales=None):
    """init_value times every scale whose boundary count has been reached."""
    def schedule(count):
        value = lnp.asarray(float(init_value))
        for boundary, s in sorted((boundaries_and_scales or {}).items()):
            value = lnp.where(lnp.less(count, boundary), value, lnp.multiply(value, s))
        return value
    return schedule
