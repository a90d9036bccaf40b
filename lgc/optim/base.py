"""optax's core: a GradientTransformation is a pair of pure functions, init(params) -> state
and update(updates, state, params=None) -> (updates, state), with states pytrees of lgc
arrays, so one training step (grad, update, apply_updates) is one lgc.jit graph."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from .. import numpy as lnp
from ..tree_util import tree_leaves, tree_map


class GradientTransformation(NamedTuple):
    init: Callable[[Any], Any]
    update: Callable[..., tuple]


class EmptyState(NamedTuple):
    """The state of a stateless transformation (no leaves)."""


def identity() -> GradientTransformation:
    """Leaves the updates as they are."""
    return GradientTransformation(lambda params: EmptyState(),
                                  lambda updates, state, params=None: (updates, state))


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """The transformations applied in order; the state is the tuple of their states."""
    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None):
        new_state = []
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)
    return GradientTransformation(init, update)


def apply_updates(params, updates):
    """params + updates, each leaf kept in its parameter's dtype."""
    return tree_map(lambda p, u: lnp.astype(lnp.add(p, u), lnp.result_type(p)), params, updates)


def global_norm(updates):
    """sqrt of the sum of squares of every leaf."""
    return lnp.sqrt(sum(lnp.sum(lnp.square(u)) for u in tree_leaves(updates)))


def zeros_like_tree(params, dtype=None):
    return tree_map(lambda p: lnp.zeros_like(p, dtype=dtype), params)


def safe_increment(count):
    """count + 1, saturating at the int32 maximum (optax's safe_int32_increment)."""
    top = np.iinfo(np.int32).max
    return lnp.where(lnp.less(count, top), lnp.add(count, 1), top)
