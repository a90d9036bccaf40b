"""Algebraic identities that remove a node: x*1, 1*x, x+0, 0+x, x-0, x/1, cast to the same
dtype, broadcast_to or reshape to the same shape, reshape of reshape, transpose of transpose
(composed into one, or none when the composition is the identity), where with a constant
condition.

A rewrite applies only when the surviving value has exactly the replaced value's type, so a
"x*1" that broadcasts x to a bigger shape, or changes nothing but hides a dtype change, is
left alone. (x+0 turns -0.0 into +0.0 in IEEE arithmetic; dropping it keeps -0.0, which every
consumer treats as equal.)
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from .dce import dce
from .rewrite import Rewriter


def _all(a, value) -> bool:
    return a is not None and a.size > 0 and bool(np.all(a == value))


def simplify_algebra(graph: Graph) -> Graph:
    rw = Rewriter(graph)
    consts: dict = {}
    producer: dict = {}
    for node in graph.nodes:
        if node.op == "const":
            consts[node.output] = node.attrs["value"]
        ins = [rw.get(v) for v in node.inputs]
        vals = [consts.get(v) for v in ins]
        out = node.outputs[0]
        survivor = _identity(node, ins, vals, producer)
        if survivor is not None and survivor.type == out.type:
            rw.replace(out, survivor)
            continue
        new = _compose(node, ins, producer, rw)
        if new is not None:
            if new is rw.nodes[-1].outputs[0]:   # a new node, not an existing value
                producer[new] = rw.nodes[-1]
            rw.replace(out, new)
            continue
        kept = rw.keep(node)
        for o in kept.outputs:
            producer[o] = kept
    return dce(rw.finish())


def _identity(node, ins, vals, producer):
    """The input value this node merely passes through, if any."""
    op = node.op
    if op in ("mul", "add", "sub", "div"):
        unit = 1 if op in ("mul", "div") else 0
        if _all(vals[1], unit):
            return ins[0]
        if op in ("mul", "add") and _all(vals[0], unit):
            return ins[1]
    elif op == "cast" and ins[0].dtype.name == node.attrs["to"]:
        return ins[0]
    elif op in ("broadcast_to", "reshape") and ins[0].shape == node.outputs[0].shape:
        return ins[0]
    elif op == "transpose" and tuple(node.attrs["perm"]) == tuple(range(len(ins[0].shape))):
        return ins[0]
    elif op == "where" and vals[0] is not None and vals[0].size > 0:
        if bool(np.all(vals[0])):
            return ins[1]
        if not bool(np.any(vals[0])):
            return ins[2]
    return None


def _compose(node, ins, producer, rw):
    """reshape(reshape(x)) -> reshape(x); transpose(transpose(x)) -> one transpose or x."""
    inner = producer.get(ins[0]) if ins else None
    if inner is None or inner.op != node.op:
        return None
    x = inner.inputs[0]
    if node.op == "reshape":
        if x.shape == node.outputs[0].shape:
            return x
        return rw.op("reshape", [x], {"shape": node.attrs["shape"]}, node.name)
    if node.op == "transpose":
        p1, p2 = inner.attrs["perm"], node.attrs["perm"]
        perm = tuple(p1[i] for i in p2)
        if perm == tuple(range(len(perm))):
            return x
        return rw.op("transpose", [x], {"perm": perm}, node.name)
    return None
