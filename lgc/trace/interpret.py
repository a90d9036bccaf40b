"""Evaluate a Graph by binding its nodes under the current trace.

This is the interpreter transformations build on (a reverse pass walks a traced graph the
same way), and it makes any Graph callable from lnp code: an ONNX model imported with
lgc.onnx.load runs eagerly op by op, or is inlined into an enclosing lgc.jit.
"""
from __future__ import annotations

import numpy as np

from ..ir.graph import Graph
from ..ops.core import ArrayBase, bind_list, find_top_trace
from .eager import EvalTrace

_uploaded: dict[int, tuple] = {}   # id(weight) -> (weight, its device Array), for eager calls


def _const(trace, value: np.ndarray):
    if not isinstance(trace, EvalTrace):
        return trace.pure(value)
    hit = _uploaded.get(id(value))
    if hit is None or hit[0] is not value:
        hit = _uploaded[id(value)] = (value, trace.pure(value))
    return hit[1]


def eval_graph(graph: Graph, *args) -> list:
    """The graph's outputs (a list) for these inputs (arrays, tracers or host values of the
    graph's input types; host values are converted to them)."""
    if len(args) != len(graph.inputs):
        raise TypeError(f"graph @{graph.name} takes {len(graph.inputs)} inputs, got {len(args)}")
    env = {}
    for v, name, a in zip(graph.inputs, graph.input_names, args):
        want = (tuple(v.shape), v.dtype.np)
        if not isinstance(a, ArrayBase):
            a = np.asarray(a, dtype=v.dtype.np)
        if (tuple(a.shape), np.dtype(a.dtype)) != want:
            raise TypeError(f"input {name!r} of graph @{graph.name} is {v.type}, got "
                            f"{np.dtype(a.dtype).name}{list(a.shape)}")
        env[v] = a
    trace = find_top_trace(())
    for node in graph.nodes:
        if node.op == "const":
            env[node.output] = _const(trace, node.attrs["value"])
            continue
        outs = bind_list(node.op, [env[v] for v in node.inputs], node.attrs)
        env.update(zip(node.outputs, outs))
    return [env[v] for v in graph.outputs]
