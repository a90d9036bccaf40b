"""lgc.optim: optax's optimizers on lgc arrays (`import lgc.optim as optim`).

    opt = optim.adam(optim.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1000))
    state = opt.init(params)

    @lgc.jit
    def step(params, state, x, y):
        loss, g = lgc.value_and_grad(loss_fn)(params, x, y)
        updates, state = opt.update(g, state, params)
        return optim.apply_updates(params, updates), state, loss
"""
from .aliases import adam, adamw, momentum, rmsprop, sgd  # noqa: F401
from .base import (EmptyState, GradientTransformation, apply_updates, chain,  # noqa: F401
                   global_norm, identity)
from .schedules import (constant_schedule, cosine_decay_schedule, exponential_decay,  # noqa: F401
                        join_schedules, linear_schedule, piecewise_constant_schedule,
                        polynomial_schedule, warmup_cosine_decay_schedule)
from .transforms import (ScaleByAdamState, ScaleByRmsState, ScaleByRStdDevState,  # noqa: F401
                         ScaleByScheduleState, TraceState, add_decayed_weights,
                         clip_by_global_norm, scale, scale_by_adam, scale_by_learning_rate,
                         scale_by_rms, scale_by_schedule, scale_by_stddev, trace)
