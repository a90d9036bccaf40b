"""What the pruning, decomposition and FP16 passes share: rebuilding a graph whose shapes
change, evaluating a graph with the ops' NumPy references, accuracy drift, and timing.

Passes never edit their input: `Rebuild` walks the old graph and creates each node again
from the mapped inputs, re-running the op's type rule, so a pass that changes a weight's
shape (pruned channels, a factorised matmul) gets every consumer retyped for free.
"""
from __future__ import annotations

import numpy as np

import lgc

from ..errors import InputError
from ..ir.builder import GraphBuilder
from ..ir.graph import Graph, Node, Value
from ..ops.control import run_reference
from ..passes.dce import dce
from ..runtime.timing import run_seconds   # timing (lgc.search imports it from here)


class Rebuild(GraphBuilder):
    """A new graph built node by node from an old one (`env`: old Value -> new Value); new
    nodes come from GraphBuilder's `op` and `const`."""

    def __init__(self, graph: Graph):
        super().__init__(graph.name)
        self.graph = graph
        self.env: dict[Value, Value] = {v: v for v in graph.inputs}

    def __getitem__(self, old: Value) -> Value:
        return self.env[old]

    def copy(self, node: Node, inputs=None, attrs=None) -> list[Value]:
        """Re-create `node` on mapped (or given) inputs; shares it when nothing changed."""
        ins = [self.env[v] for v in node.inputs] if inputs is None else list(inputs)
        if node.op == "const" or (attrs is None and all(a is b for a, b in zip(ins, node.inputs))):
            self.nodes.append(node)
            outs = list(node.outputs)
        else:
            outs = list(self.op(node.op, ins, dict(node.attrs if attrs is None else attrs), node.name,
                                num_outputs=len(node.outputs)))
        for old, new in zip(node.outputs, outs):
            self.env[old] = new
        return outs

    def bind(self, old: Value, new: Value) -> None:
        self.env[old] = new

    def finish(self) -> Graph:
        outs = [self.env[v] for v in self.graph.outputs]
        return dce(self.graph.replace(nodes=self.nodes, outputs=outs))


# ---- evaluating and comparing ------------------------------------------------------------------

def as_feed_list(graph: Graph, feeds) -> list[np.ndarray]:
    """Feeds (a dict by input name, a list, or one array) as arrays in the graph's order."""
    if isinstance(feeds, dict):
        missing = [n for n in graph.input_names if n not in feeds]
        if missing:
            raise InputError(f"no data given for graph input {missing[0]!r}")
        feeds = [feeds[n] for n in graph.input_names]
    elif not isinstance(feeds, (list, tuple)):
        feeds = [feeds]
    if len(feeds) != len(graph.inputs):
        raise InputError(f"graph takes {len(graph.inputs)} inputs, got {len(feeds)} arrays")
    return [np.asarray(f, v.dtype.np) for f, v in zip(feeds, graph.inputs)]


def reference_run(graph: Graph, feeds) -> list[np.ndarray]:
    """The graph's outputs computed by each op's NumPy reference (no device involved)."""
    return run_reference(graph, as_feed_list(graph, feeds))


def relative_l1(ref: list, out: list) -> float:
    """The default drift the searches hold under a budget: sum |out - ref| / sum |ref| over
    every output (0 = identical)."""
    num = sum(float(np.abs(np.asarray(o, np.float64) - np.asarray(r, np.float64)).sum())
              for r, o in zip(ref, out))
    den = sum(float(np.abs(np.asarray(r, np.float64)).sum()) for r in ref)
    return num / max(den, 1e-30)


def max_relative_error(ref: list, out: list) -> float:
    """The drift every --max-drift budget holds: max |out - ref| / max |ref| over all outputs
    (lists of arrays, as reference_run gives)."""
    ref = [np.asarray(r, np.float64) for r in ref]
    err = max((float(np.max(np.abs(np.asarray(o, np.float64) - r))) for r, o in zip(ref, out) if r.size),
              default=0.0)
    scale = max((float(np.max(np.abs(r))) for r in ref if r.size), default=0.0)
    return err / scale if scale else err


def param_bytes(graph: Graph) -> int:
    return sum(n.output.type.nbytes for n in graph.nodes if n.op == "const")


def latencies(graphs: dict, feeds, runs: int = 10, device=None, warmup: int = 2) -> dict:
    """Median seconds per run of each graph, compiled as given (opt_level 0: the passes'
    output is kept as is) and timed interleaved (A B A B ...) so machine load hits all alike."""
    exes = {k: lgc.compile(g, device=device, opt_level=0) for k, g in graphs.items()}
    fl = {k: dict(zip(e.input_names, as_feed_list(graphs[k], feeds))) for k, e in exes.items()}
    return run_seconds(exes, fl, runs, warmup)


def weighted_layers(graph: Graph, layers=None, min_params: int = 4096) -> dict[int, np.ndarray]:
    """{id(node): weight} of the matmul/conv nodes with a constant weight that `layers` names
    (as layer_names does), or with at least min_params weights when `layers` is None."""
    consts, names = graph.constants(), layer_names(graph)
    out = {}
    for n in graph.nodes:
        if n.op in ("matmul", "conv") and len(n.inputs) > 1 and n.inputs[1] in consts:
            w = consts[n.inputs[1]]
            wanted = names[id(n)] in layers if layers is not None else w.size >= min_params
            if wanted:
                out[id(n)] = w
    return out


def layer_names(graph: Graph) -> dict[int, str]:
    """A name for each conv/matmul node (by id): its own name, else its weight's, else the op
    and its position among the graph's nodes of that op ("conv0", "matmul2")."""
    count: dict[str, int] = {}
    names: dict[int, str] = {}
    for n in graph.nodes:
        if n.op in ("conv", "matmul", "sparse_matmul"):
            k = count.get(n.op, 0)
            count[n.op] = k + 1
            w = n.inputs[1].name if len(n.inputs) > 1 else None
            names[id(n)] = n.name or w or f"{n.op}{k}"
    return names
