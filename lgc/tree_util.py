"""lgc.tree_util: jax.tree_util's names for lgc's pytrees (tuples, lists, dicts,
namedtuples, None, and registered types)."""
from __future__ import annotations

import functools

from .trace.pytree import (TreeDef as PyTreeDef, flatten as tree_flatten,  # noqa: F401
                           register_pytree_node, tree_map, unflatten as tree_unflatten)

_NO_INITIALIZER = object()


def tree_leaves(tree, is_leaf=None) -> list:
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree, is_leaf=None) -> PyTreeDef:
    return tree_flatten(tree, is_leaf)[1]


def tree_all(tree, is_leaf=None) -> bool:
    """True if every leaf is truthy (leaves that are arrays must be concrete)."""
    return all(tree_leaves(tree, is_leaf))


def tree_reduce(function, tree, initializer=_NO_INITIALIZER, is_leaf=None):
    """functools.reduce(function, leaves[, initializer])."""
    leaves = tree_leaves(tree, is_leaf)
    if initializer is _NO_INITIALIZER:
        return functools.reduce(function, leaves)
    return functools.reduce(function, leaves, initializer)
