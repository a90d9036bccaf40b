"""optax's ready-made optimizers, each a chain of lgc.optim.transforms."""
from __future__ import annotations

from .base import GradientTransformation, chain, identity
from .transforms import (add_decayed_weights, scale_by_adam, scale_by_learning_rate, scale_by_rms,
                         scale_by_stddev, trace)


def sgd(learning_rate, momentum=None, nesterov: bool = False,
        accumulator_dtype=None) -> GradientTransformation:
    """Stochastic gradient descent, with (Nesterov) momentum if `momentum` is given."""
    return chain(trace(momentum, nesterov, accumulator_dtype) if momentum is not None else identity(),
                 scale_by_learning_rate(learning_rate))


def momentum(learning_rate, momentum=0.9, nesterov: bool = False) -> GradientTransformation:
    """SGD with momentum (jax.example_libraries.optimizers.momentum): sgd(lr, momentum)."""
    return sgd(learning_rate, momentum, nesterov)


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None, *,
         nesterov: bool = False) -> GradientTransformation:
    return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
                 scale_by_learning_rate(learning_rate))


def adamw(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None,
          weight_decay=1e-4, mask=None, *, nesterov: bool = False) -> GradientTransformation:
    """Adam with decoupled weight decay (the decay is scaled by the learning rate too)."""
    return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
                 add_decayed_weights(weight_decay, mask),
                 scale_by_learning_rate(learning_rate))


def rmsprop(learning_rate, decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt: bool = True,
            centered: bool = False, momentum=None, nesterov: bool = False,
            bias_correction: bool = False) -> GradientTransformation:
    scaling = scale_by_stddev if centered else scale_by_rms
    return chain(scaling(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
                 scale_by_learning_rate(learning_rate),
                 trace(momentum, nesterov) if momentum is not None else identity())
