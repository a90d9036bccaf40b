"""Pytrees: nested tuples, lists, dicts (keys sorted, as in JAX), namedtuples and None.

`flatten` gives the leaves and a hashable TreeDef, so a jit cache key can include the
structure of the arguments; `register_pytree_node` adds container types.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

_NODES: dict[type, tuple[Callable, Callable]] = {}


def register_pytree_node(cls: type, flatten_fn: Callable, unflatten_fn: Callable) -> None:
    """flatten_fn(x) -> (children, aux) with hashable aux; unflatten_fn(aux, children) -> x."""
    _NODES[cls] = (flatten_fn, unflatten_fn)


register_pytree_node(tuple, lambda t: (t, None), lambda _, c: tuple(c))
register_pytree_node(list, lambda t: (t, None), lambda _, c: list(c))
register_pytree_node(dict, lambda d: ([d[k] for k in sorted(d)], tuple(sorted(d))),
                     lambda keys, c: dict(zip(keys, c)))
register_pytree_node(type(None), lambda _: ((), None), lambda _, c: None)


@dataclass(frozen=True)
class TreeDef:
    kind: type | None          # None: a leaf
    aux: Any = None
    children: tuple = ()

    @property
    def num_leaves(self) -> int:
        return 1 if self.kind is None else sum(c.num_leaves for c in self.children)

    def __repr__(self):
        if self.kind is None:
            return "*"
        return f"{self.kind.__name__}{self.aux if self.aux is not None else ''}" \
               f"({', '.join(map(repr, self.children))})"


LEAF = TreeDef(None)


def _node_of(x):
    t = type(x)
    if t in _NODES:
        return t, _NODES[t]
    if isinstance(x, tuple) and hasattr(x, "_fields"):   # namedtuple
        return t, (lambda n: (tuple(n), None), lambda _, c, t=t: t(*c))
    return None, None


def flatten(x, is_leaf: Callable | None = None) -> tuple[list, TreeDef]:
    leaves: list = []

    def rec(v):
        kind, fns = (None, None) if is_leaf is not None and is_leaf(v) else _node_of(v)
        if kind is None:
            leaves.append(v)
            return LEAF
        children, aux = fns[0](v)
        return TreeDef(kind, aux, tuple(rec(c) for c in children))

    return leaves, rec(x)


def unflatten(tree: TreeDef, leaves) -> Any:
    it = iter(leaves)

    def rec(t):
        if t.kind is None:
            return next(it)
        children = [rec(c) for c in t.children]
        if t.kind in _NODES:
            return _NODES[t.kind][1](t.aux, children)
        return t.kind(*children)  # namedtuple
    return rec(tree)


def tree_map(fn: Callable, x, *rest, is_leaf: Callable | None = None):
    leaves, tree = flatten(x, is_leaf)
    others = []
    for r in rest:
        rl, rt = flatten(r, is_leaf)
        if rt != tree:
            raise ValueError(f"tree_map: structures differ: {tree} and {rt}")
        others.append(rl)
    return unflatten(tree, [fn(*vs) for vs in zip(leaves, *others)])


def tree_leaves(x) -> list:
    return flatten(x)[0]
