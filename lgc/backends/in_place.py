"""Donated inputs: scatters that write into the caller's buffer instead of a copy of it.

A scatter (tensor_scatter, scatter_nd, scatter_elements without a reduction) is two steps
when lowered: copy the data operand into the output, then write the updates; a KV cache
updated one token at a time would copy the whole cache per token. When the data operand is
a *donated* graph input (`lgc.compiler.Options.donate`, `lgc.jit(donate_argnums=)`, as
JAX's donate_argnums: the caller hands the buffer over and gets the result in it), and
nothing else reads that input, the copy is pointless: the scatter becomes its `*_into` op
(lgc.ops.lowered), whose kernel writes only the updates, and lgc.backends.program gives its
output the input's buffer. The program's output is then the input buffer itself; the
runtime's device path (Executor.run_buffers) returns the caller's buffer as that output.

Reshapes between the input and the scatter (scatter_elements works on a flat view) are
seen through: they share the buffer. The rewrite runs after the backend's own rewrites, so
fusion sees the *_into op, which is opaque: nothing is fused into or out of it.
"""
from __future__ import annotations

from ..ir import registry
from ..ir.graph import Graph, Node, Value

WRITTEN_IN_PLACE = {"tensor_scatter": "tensor_scatter_into", "scatter_nd": "scatter_nd_into",
                    "scatter_elements": "scatter_elements_into"}


def is_written_in_place(op: str) -> bool:
    """The op's output is its data operand's buffer (lgc.backends.program)."""
    return op in WRITTEN_IN_PLACE.values()


def write_donated_in_place(graph: Graph, donated) -> Graph:
    """`graph` with each scatter whose data operand is a donated input (by input name),
    read by nothing else, replaced by its in-place op. Other uses of a donated input leave
    it alone: the result is the same, computed with a copy."""
    donated = {v for v, name in zip(graph.inputs, graph.input_names) if name in set(donated)}
    if not donated:
        return graph
    users, producers = graph.users(), graph.producers()
    outputs = set(graph.outputs)
    nodes, changed = [], False
    for node in graph.nodes:
        into = WRITTEN_IN_PLACE.get(node.op)
        if into and node.attrs.get("reduction", "none") == "none" and \
                _donated_root(node.inputs[0], node, donated, users, producers, outputs):
            node = Node(into, node.inputs, node.attrs, node.outputs, node.name)
            changed = True
        nodes.append(node)
    return graph.replace(nodes=nodes) if changed else graph


def _donated_root(v: Value, reader: Node, donated: set, users, producers, outputs) -> bool:
    """v is a donated input, or a reshape chain of one, that only `reader` reads."""
    while True:
        if v in outputs or users.get(v, []) != [reader]:
            return False
        if v in donated:
            return True
        node = producers.get(v)
        if node is None or registry.get(node.op).fusion != "alias" or \
                node.inputs[0].dtype != v.dtype:
            return False
        v, reader = node.inputs[0], node
