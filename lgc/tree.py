"""lgc.tree: jax.tree's short names (lgc.tree.map, leaves, flatten, ...) for lgc.tree_util."""
from .tree_util import (tree_all as all, tree_flatten as flatten,  # noqa: F401,A004
                        tree_leaves as leaves, tree_map as map, tree_reduce as reduce,
                        tree_structure as structure, tree_unflatten as unflatten)
