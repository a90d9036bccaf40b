"""Common subexpression elimination: two nodes with the same op, attributes and inputs
compute the same values, so the later one is dropped and its users read the first.

Constants are merged by content (dtype, shape and bytes), so equal weights or scalars that
import created separately become one buffer. No core op has side effects or randomness of
its own, so every op is a candidate.
"""
from __future__ import annotations

import hashlib

from ..ir.graph import Graph
from .rewrite import Rewriter


def _key(node, inputs):
    if node.op == "const":
        a = node.attrs["value"]
        return ("const", a.dtype.str, a.shape, hashlib.sha256(a.tobytes()).digest())
    attrs = repr(sorted(node.attrs.items()))  # repr keeps -0.0 apart from 0.0
    return (node.op, attrs, tuple(v.uid for v in inputs), tuple(o.type for o in node.outputs))


def cse(graph: Graph) -> Graph:
    rw = Rewriter(graph)
    seen: dict = {}
    for node in graph.nodes:
        key = _key(node, [rw.get(v) for v in node.inputs])
        first = seen.get(key)
        if first is None:
            seen[key] = rw.keep(node)
            continue
        for old, new in zip(node.outputs, first.outputs):
            rw.replace(old, new)
    return rw.finish()
