"""Named pass pipelines. Each pass is a function Graph -> Graph; `optimize` runs a pipeline
and records what each pass changed (nodes, parameter bytes, FLOPs) so reports can show it.

  -O0  nothing
  -O1  dce, constant folding, cse
  -O2  -O1, then algebraic identities and affine folding (batch norm into conv/matmul),
       then folding and cse again to clean up what those exposed
  -O3  as -O2 (fusion and tuning passes join here)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Graph
from ..ir.stats import graph_stats
from .affine_fold import fold_affine
from .algebraic import simplify_algebra
from .cse import cse
from .dce import dce
from .fold import fold_constants

_O1 = [("dce", dce), ("fold", fold_constants), ("cse", cse)]
_O2 = _O1 + [("algebraic", simplify_algebra), ("affine-fold", fold_affine),
             ("fold", fold_constants), ("cse", cse), ("dce", dce)]

PIPELINES = {
    0: [],
    1: _O1,
    2: _O2,
    3: list(_O2),
}


@dataclass
class PassRecord:
    name: str
    nodes_before: int
    nodes_after: int
    param_bytes_before: int = 0
    param_bytes_after: int = 0
    flops_before: int = 0
    flops_after: int = 0


def optimize(graph: Graph, level: int = 2, records: list | None = None, check=None) -> Graph:
    """Run pipeline `level`. With `records`, append a PassRecord per pass; `check` (e.g.
    lgc.ir.verify.verify) runs on every pass's output."""
    stats = graph_stats(graph) if records is not None else None
    for name, fn in PIPELINES[level]:
        out = fn(graph)
        if check is not None:
            check(out)
        if records is not None:
            after = graph_stats(out) if out is not graph else stats
            records.append(PassRecord(name, stats.nodes, after.nodes, stats.param_bytes,
                                      after.param_bytes, stats.flops, after.flops))
            stats = after
        graph = out
    return graph


def report_table(records: list[PassRecord]) -> str:
    """The per-pass table `lgc compile --report` prints."""
    head = f"{'pass':<12} {'nodes':>13} {'param bytes':>25} {'MFLOPs':>21}"
    lines = [head, "-" * len(head)]
    for r in records:
        lines.append(f"{r.name:<12} {r.nodes_before:>6}->{r.nodes_after:<6} "
                     f"{r.param_bytes_before:>12,}->{r.param_bytes_after:<12,} "
                     f"{r.flops_before / 1e6:>10.1f}->{r.flops_after / 1e6:<10.1f}")
    return "\n".join(lines)
