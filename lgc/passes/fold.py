"""Constant folding: a node whose inputs are all constants becomes a constant, computed by
the op's NumPy reference (the same semantics tests hold the kernels to).

A fold that would grow the parameters a lot is skipped: `broadcast_to` of a scalar to a
weight's shape (how ConstantOfShape imports) stays a cheap kernel instead of megabytes of
copies of one number in the artifact.
"""
from __future__ import annotations

import numpy as np

from ..ir import registry
from ..ir.graph import Graph
from .dce import dce
from .rewrite import Rewriter

MAX_GROWTH_BYTES = 64 * 1024   # a fold may always produce this much ...
MAX_GROWTH_FACTOR = 1          # ... or up to this many times its inputs' bytes


def fold_constants(graph: Graph) -> Graph:
    rw = Rewriter(graph)
    values: dict = {}
    for node in graph.nodes:
        if node.op == "const":
            values[node.output] = node.attrs["value"]
            rw.keep(node)
            continue
        ins = [values.get(rw.get(v)) for v in node.inputs]
        out_bytes = sum(o.type.nbytes for o in node.outputs)
        in_bytes = sum(a.nbytes for a in ins if a is not None)
        if (not node.inputs or any(a is None for a in ins)
                or out_bytes > max(MAX_GROWTH_BYTES, MAX_GROWTH_FACTOR * in_bytes)):
            rw.keep(node)
            continue
        results = _evaluate(node, ins)
        if results is None:
            rw.keep(node)
            continue
        for o, a in zip(node.outputs, results):
            c = rw.const(a, node.name)
            values[c] = a
            rw.replace(o, c)
    return dce(rw.finish())


def _evaluate(node, ins):
    """The node's outputs as arrays of exactly its output types, or None if the reference fails."""
    try:
        with np.errstate(all="ignore"):
            outs = registry.get(node.op).reference(list(ins), node.attrs)
    except Exception:  # a reference that cannot run here: leave the node to the kernel
        return None
    if len(outs) != len(node.outputs):
        return None
    arrays = []
    for o, a in zip(node.outputs, outs):
        a = np.asarray(a)
        if a.shape != o.type.shape:
            return None
        arrays.append(a.astype(o.type.dtype.np, copy=False))
    return arrays
