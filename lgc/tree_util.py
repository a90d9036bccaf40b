"""lgc.tree_util: jax.tree_util's names for lgc's pytrees (tuples, lists, dicts,
namedtuples, None, and registered types)."""
from .trace.pytree import (TreeDef as PyTreeDef, flatten as tree_flatten,  # noqa: F401
                           register_pytree_node, tree_leaves, tree_map, unflatten as tree_unflatten)


def tree_structure(tree) -> PyTreeDef:
    return tree_flatten(tree)[1]
