"""lgc.tree (jax.tree's short names) and the tree_util functions under it."""
from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np
import pytest

import lgc
import lgc.numpy as lnp


class Pair(NamedTuple):
    a: object
    b: object


TREE = {"z": [1, (2, 3)], "a": Pair(4, None), "m": {"k": 5}}


def test_leaves_flatten_unflatten_roundtrip():
    assert lgc.tree.leaves(TREE) == [4, 5, 1, 2, 3]          # dict keys sorted; None has none
    leaves, treedef = lgc.tree.flatten(TREE)
    assert leaves == [4, 5, 1, 2, 3] and treedef.num_leaves == 5
    back = lgc.tree.unflatten(treedef, [10 * v for v in leaves])
    assert back == {"z": [10, (20, 30)], "a": Pair(40, None), "m": {"k": 50}}
    assert isinstance(back["a"], Pair) and isinstance(back["z"][1], tuple)


def test_structure_compares_shapes_of_trees():
    assert lgc.tree.structure(TREE) == lgc.tree.structure(lgc.tree.map(str, TREE))
    assert lgc.tree.structure([1, 2]) != lgc.tree.structure((1, 2))
    assert lgc.tree.structure({"a": 1}) != lgc.tree.structure({"b": 1})


def test_map_over_several_trees_and_is_leaf():
    assert lgc.tree.map(operator.add, [1, (2, 3)], [10, (20, 30)]) == [11, (22, 33)]
    with pytest.raises(ValueError, match="structures differ"):
        lgc.tree.map(operator.add, [1, 2], [1, (2, 3)])
    is_pair = lambda v: isinstance(v, tuple) and len(v) == 2  # noqa: E731
    assert lgc.tree.map(lambda t: t[0] * t[1], [(2, 3), (4, 5)], is_leaf=is_pair) == [6, 20]
    assert lgc.tree.leaves([(1, 2), [3]], is_leaf=is_pair) == [(1, 2), 3]
    assert lgc.tree.structure([(1, 2)], is_leaf=is_pair).num_leaves == 1


def test_all_and_reduce():
    assert lgc.tree.all({"a": True, "b": [1, 2]})
    assert not lgc.tree.all({"a": True, "b": [1, 0]})
    assert lgc.tree.all([]) and lgc.tree.all(None)
    assert lgc.tree.reduce(operator.add, TREE) == 15
    assert lgc.tree.reduce(operator.add, TREE, 100) == 115
    assert lgc.tree.reduce(max, [3, (9, 4)]) == 9
    with pytest.raises(TypeError):
        lgc.tree.reduce(operator.add, [])                    # as functools.reduce


def test_arrays_inside_jit():
    params = {"w": np.ones((2, 3), np.float32), "b": np.arange(3, dtype=np.float32)}

    @lgc.jit
    def scaled_norm(p):
        q = lgc.tree.map(lambda v: 2 * v, p)
        return lgc.tree.reduce(lnp.add, lgc.tree.map(lambda v: lnp.sum(v * v), q))

    assert float(scaled_norm(params)) == pytest.approx(4 * (6 + 0 + 1 + 4))
    assert lgc.tree.all(lgc.tree.map(lambda v: bool(np.all(np.asarray(v) >= 0)), params))
