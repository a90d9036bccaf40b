"""Graph statistics for `lgc inspect` and reports: op histogram, parameters, FLOPs."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from . import registry
from .graph import Graph


@dataclass
class GraphStats:
    nodes: int
    ops: Counter
    params: int          # elements held in constants
    param_bytes: int
    flops: int

    def table(self) -> str:
        lines = [f"nodes: {self.nodes}", f"parameters: {self.params:,} ({_human(self.param_bytes)})",
                 f"FLOPs: {self.flops:,} ({self.flops / 1e9:.3f} GFLOP)", "ops:"]
        width = max((len(k) for k in self.ops), default=0)
        for op, n in sorted(self.ops.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {op:<{width}}  {n}")
        return "\n".join(lines)


def node_flops(node) -> int:
    if node.op == "const":
        return 0
    opdef = registry.get(node.op)
    ins = [v.type for v in node.inputs]
    outs = [v.type for v in node.outputs]
    if opdef.flops is not None:
        return int(opdef.flops(ins, outs, node.attrs))
    if opdef.fusion == "alias":
        return 0
    return sum(t.size for t in outs)


def graph_stats(graph: Graph) -> GraphStats:
    ops = Counter(n.op for n in graph.nodes if n.op != "const")
    consts = [n.output.type for n in graph.nodes if n.op == "const"]
    return GraphStats(len(graph.nodes), ops, sum(t.size for t in consts),
                      sum(t.nbytes for t in consts), sum(node_flops(n) for n in graph.nodes))


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
