"""The IR verifier: checks the invariants every pass may assume and must keep.

Run between passes in tests. A failure is a compiler bug, so the message names the node at
fault (index, op, name) and the value by its id in the text form, to be found in print(graph).
"""
from __future__ import annotations

import numpy as np

from ..errors import LgcError
from . import dtypes, registry
from .graph import Graph, Node, TensorType
from .text import same_value, value_ids


class VerifyError(LgcError, ValueError):
    """The graph breaks an IR invariant."""


def _where(i: int, n: Node) -> str:
    return f"node {i} ({n.op}" + (f", name {n.name!r})" if n.name is not None else ")")


def verify(graph: Graph) -> None:
    """Raise VerifyError at the first broken invariant: SSA order, ops, arity, attrs, types;
    graphs held in attributes (a while loop's cond and body) are verified too."""
    ids = value_ids(graph)
    producer = {}
    for i, n in enumerate(graph.nodes):
        for o in n.outputs:
            producer.setdefault(o, i)

    def vid(v):
        return ids.get(v, f"<undefined value {v!r}>")

    defined: dict = {}
    for k, v in enumerate(graph.inputs):
        if v in defined:
            raise VerifyError(f"graph input {k} ({vid(v)}) is also {defined[v]}")
        defined[v] = f"graph input {k}"
    for what, names, vals in (("input", graph.input_names, graph.inputs),
                              ("output", graph.output_names, graph.outputs)):
        if len(names) != len(vals):
            raise VerifyError(f"graph has {len(vals)} {what}s but {len(names)} {what} names")

    for i, n in enumerate(graph.nodes):
        at = _where(i, n)
        for k, v in enumerate(n.inputs):
            if v not in defined:
                later = producer.get(v)
                raise VerifyError(f"{at}: input {k} ({vid(v)}) is used before it is defined"
                                  + (f" (by node {later})" if later is not None and later >= i
                                     else ", and nothing defines it"))
        try:
            types = _const_types(n) if n.op == "const" else _op_types(n)
        except registry.OpError as e:
            raise VerifyError(f"{at}: {e}") from None
        if len(types) != len(n.outputs):
            raise VerifyError(f"{at}: has {len(n.outputs)} outputs, its op gives {len(types)}")
        for k, (o, t) in enumerate(zip(n.outputs, types)):
            if o.type != t:
                raise VerifyError(f"{at}: output {k} ({vid(o)}) is recorded as {o.type}, "
                                  f"its type rule gives {t}")
            if o in defined:
                raise VerifyError(f"{at}: output {k} ({vid(o)}) is already defined by {defined[o]}")
            defined[o] = f"node {i}"
        for k, a in n.attrs.items():   # a loop's cond and body: graphs of their own
            if isinstance(a, Graph):
                try:
                    verify(a)
                except VerifyError as e:
                    raise VerifyError(f"{at}: in its {k} graph: {e}") from None

    for k, v in enumerate(graph.outputs):
        if v not in defined:
            raise VerifyError(f"graph output {k} ({vid(v)}) is not defined by any node or input")


def _const_types(n: Node) -> list[TensorType]:
    if n.inputs:
        raise registry.OpError(f"const takes no inputs, got {len(n.inputs)}")
    if set(n.attrs) != {"value"} or not isinstance(n.attrs["value"], np.ndarray):
        raise registry.OpError(f"const needs exactly one attribute 'value' holding an array, "
                               f"got {sorted(n.attrs)}")
    a = n.attrs["value"]
    try:
        dt = dtypes.from_numpy(a.dtype)
    except TypeError as e:
        raise registry.OpError(str(e)) from None
    return [TensorType(dt, tuple(a.shape))]


def _op_types(n: Node) -> list[TensorType]:
    opdef = registry.get(n.op)
    opdef.check_arity(len(n.inputs))
    norm = opdef.normalize_attrs(n.attrs)
    if not same_value(norm, n.attrs):
        bad = sorted(k for k in norm if k not in n.attrs or not same_value(norm[k], n.attrs[k]))
        raise registry.OpError(f"attributes {bad} are not in normal form "
                               f"(missing defaults, or lists instead of tuples)")
    return list(opdef.infer([v.type for v in n.inputs], norm))
