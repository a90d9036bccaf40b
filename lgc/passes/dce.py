"""Dead code elimination: drop nodes whose outputs nothing uses."""
from __future__ import annotations

from ..ir.graph import Graph


def dce(graph: Graph) -> Graph:
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(o in live for o in node.outputs):
            kept.append(node)
            live.update(node.inputs)
    kept.reverse()
    return graph if len(kept) == len(graph.nodes) else graph.replace(nodes=kept)
