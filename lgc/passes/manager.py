"""Named pass pipelines. Each pass is a function Graph -> Graph; `optimize` runs a pipeline
and records what each pass changed so reports can show it."""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Graph
from .dce import dce

PIPELINES = {
    0: [],
    1: [("dce", dce)],
    2: [("dce", dce)],
    3: [("dce", dce)],
}


@dataclass
class PassRecord:
    name: str
    nodes_before: int
    nodes_after: int


def optimize(graph: Graph, level: int = 2, records: list | None = None) -> Graph:
    for name, fn in PIPELINES[level]:
        before = len(graph.nodes)
        graph = fn(graph)
        if records is not None:
            records.append(PassRecord(name, before, len(graph.nodes)))
    return graph
