"""A decoder's step (or prefill) graph cut into layer ranges, placed on workers by memory,
with the per-token latency and throughput of the resulting pipeline (docs/DISTRIBUTED.md,
"Decoding across workers").

The graphs are those lgc.generation.fixed_cache makes: inputs the token ids, small per-token
"side" inputs (position_ids, attention_mask, write_index), one fixed-capacity KV cache per
past input; outputs the logits and the caches (written in place). Cutting them is not the
general shard split (lgc.distributed.shard): there every model input would pass through
every stage, KV caches included. Here

- values computed only from side inputs and constants (rotary tables, the mask) are
  recomputed by every stage that reads them, from side inputs each stage makes itself from
  the position, so they never cross a cut;
- each cache is an input only of the stage holding its layer, and its present output an
  output of that stage (the buffer stays there);
- a cut is allowed only where one value, the hidden state, crosses and no cache is read on
  both sides of it. A *unit* is one layer: it starts at the last allowed cut before its
  caches' first use (unit 0 also holds the embedding, the last unit the final norm and
  the output projection).

A pipeline of S stages is S contiguous unit ranges; stage k receives the token ids (k = 0)
or `hidden` and sends `hidden` (or the logits, last stage) plus its caches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, ModelError
from ..ir.graph import Graph, Value
from .cost import CostModel, Link, Worker
from .planner import PlanError, StageCost, _gib, best_split, fill_in_order
from .shard import static_values, upstream

HIDDEN = "hidden"          # the name of the value that crosses a cut between layer ranges


@dataclass
class Layers:
    """A step or prefill graph's layer units: `bounds[u]:bounds[u + 1]` are unit u's
    positions among `main` (graph.nodes indices of the nodes that depend on the token ids
    or a cache, in graph order); `caches[u]` the cache inputs unit u holds."""
    graph: Graph
    token: str
    main: list[int]
    bounds: list[int]
    caches: list[list[str]]
    crossing: dict[int, Value]      # position -> the one value crossing a cut there

    @property
    def count(self) -> int:
        return len(self.bounds) - 1


def find_layers(graph: Graph, caches: list[str], token: str = "input_ids") -> Layers:
    """The layer units of a decoder graph (see the module docstring); layers that no
    single-value cut separates form one unit. A ModelError names a missing or unread input."""
    by_name = dict(zip(graph.input_names, graph.inputs))
    missing = [n for n in [token, *caches] if n not in by_name]
    if missing:
        raise ModelError(f"decoder graph has no input {missing[0]!r}")
    cache_of = {by_name[c]: c for c in caches}
    roots = {by_name[token], *cache_of}
    dependent = set(roots)
    main = []
    for i, node in enumerate(graph.nodes):
        if any(v in dependent for v in node.inputs):
            dependent.update(node.outputs)
            main.append(i)
    main = _as_early_as_possible(graph, main)
    n = len(main)
    pos = {i: p for p, i in enumerate(main)}
    # uses of each main value by main nodes; the logits (final outputs) cross every later cut
    presents = _present_outputs(graph, cache_of)
    defined, last = {}, {}
    for p, i in enumerate(main):
        node = graph.nodes[i]
        for v in node.inputs:
            if v in dependent and v not in cache_of:
                last[v] = max(last.get(v, -1), p)
        for o in node.outputs:
            defined[o] = p
    for v in graph.outputs:
        if v in defined and v not in presents:
            last[v] = n
    cross = np.zeros(n + 2, np.int64)
    for v, u in last.items():
        d = defined.get(v, -1)
        if u > d >= 0:
            cross[d + 1] += 1
            cross[u + 1] -= 1
    cross = np.cumsum(cross)[: n + 1]               # cross[p]: values crossing a cut before main[p]
    first_use, last_use = {}, {}
    for v, c in cache_of.items():
        ps = [pos[i] for i, node in enumerate(graph.nodes) if i in pos and v in node.inputs]
        if not ps:
            raise ModelError(f"decoder cache input {c!r} is not read")
        first_use[c], last_use[c] = min(ps), max(ps)
    split_cache = np.zeros(n + 2, np.int64)
    for c in caches:
        split_cache[first_use[c] + 1] += 1
        split_cache[last_use[c] + 1] -= 1
    split_cache = np.cumsum(split_cache)[: n + 1]
    allowed = [p for p in range(1, n) if cross[p] == 1 and split_cache[p] == 0]
    seg_starts = [0, *allowed]
    seg_of = {c: int(np.searchsorted(seg_starts, first_use[c], side="right")) - 1 for c in caches}
    layer_segs = sorted(set(seg_of.values()))
    bounds = [0] + [seg_starts[s] for s in layer_segs[1:]] + [n]
    groups = [[c for c in caches if seg_of[c] == s] for s in layer_segs]
    crossing = {}
    for p in bounds[1:-1]:
        vs = [v for v, u in last.items() if defined.get(v, -1) < p <= u]
        crossing[p] = vs[0]
    return Layers(graph, token, main, bounds, groups, crossing)


def _as_early_as_possible(graph: Graph, idx: list[int]) -> list[int]:
    """`idx` (graph.nodes indices, in graph order) reordered so that each node comes right
    after the last producer of its inputs (ties in graph order): still topological. The
    prefill's cache writes are appended at the graph's end (fixed_cache); this brings each
    next to its layer."""
    made = {o: i for i, node in enumerate(graph.nodes) for o in node.outputs}
    return sorted(idx, key=lambda i: (max((made.get(v, -1) for v in graph.nodes[i].inputs), default=-1), i))


def _present_outputs(graph: Graph, cache_of) -> set[Value]:
    """Graph outputs computed from a cache that stay with it (the written caches), as
    opposed to the logits, which go back to the caller."""
    producers = graph.producers()
    out = set()
    for v in graph.outputs:
        if v in producers and any(x in cache_of for x in producers[v].inputs):
            out.add(v)
    return out


def stage_graph(layers: Layers, first: int, end: int) -> Graph:
    """Units [first, end) as a graph of their own: inputs the token ids (first = 0) or
    `hidden`, then the side and cache inputs it reads in the graph's input order; outputs
    `hidden` (or the graph's final outputs for the last units), then its caches."""
    if not 0 <= first < end <= layers.count:
        raise InputError(f"layer range {first}-{end - 1} is not within 0-{layers.count - 1}")
    g = layers.graph
    a, b = layers.bounds[first], layers.bounds[end]
    nodes = [g.nodes[i] for i in layers.main[a:b]]
    chosen = {id(node) for node in nodes}
    made = {o for node in nodes for o in node.outputs}
    entry = g.inputs[g.input_names.index(layers.token)] if first == 0 else layers.crossing[a]
    by_input = dict(zip(g.inputs, g.input_names))
    outside = [v for node in nodes for v in node.inputs if v not in made and v is not entry]
    producer = g.producers()
    need = upstream(outside, producer)               # side and static values it recomputes
    keep = {id(producer[v]) for v in need if v in producer}
    body = [node for node in g.nodes if id(node) in keep or id(node) in chosen]
    ins = [entry] + [v for v in g.inputs if v in need and v is not entry]
    in_names = [by_input[entry] if first == 0 else HIDDEN] + [by_input[v] for v in ins[1:]]
    outs, out_names = [], []
    if end < layers.count:
        outs.append(layers.crossing[b])
        out_names.append(HIDDEN)
    for v, name in zip(g.outputs, g.output_names):
        if v in made and (end == layers.count or v is not layers.crossing.get(b)):
            outs.append(v)
            out_names.append(name)
    return Graph(f"{g.name}_layers{first}-{end - 1}", ins, outs, body, in_names, out_names)


# -- placement and prediction ------------------------------------------------------------------

@dataclass
class DecodeStage(StageCost):
    """A layer range of a decoder (units are layers; in_s receives the token or the hidden
    state, out_s sends the logits back from the last stage)."""
    kv_bytes: int                    # caches of its layers for all sequences

    @property
    def memory_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes + self.activation_bytes


@dataclass
class DecodePlan:
    """Layer ranges on workers and what the cost model predicts for one token."""
    stages: list[DecodeStage]
    sequences: int
    capacity: int
    link: Link
    layers: int
    candidates: list[dict] = field(default_factory=list)

    @property
    def cuts(self) -> list[int]:
        return [s.first for s in self.stages[1:]]

    @property
    def latency_s(self) -> float:
        """One token of one sequence through every stage and back (nothing queued)."""
        return sum(s.time_s for s in self.stages)

    @property
    def tokens_per_s(self) -> float:
        """All sequences together: each stage serves one token at a time, so the slowest
        bounds it; with fewer sequences than stages, stages idle and latency bounds it."""
        return min(self.sequences / self.latency_s, 1.0 / max(s.time_s for s in self.stages))

    def as_json(self) -> dict:
        return {"layers": self.layers, "sequences": self.sequences, "capacity": self.capacity,
                "link": {"bandwidth_bytes_per_s": self.link.bandwidth, "latency_s": self.link.latency_s},
                "stages": [{"index": s.index, "layers": [s.first, s.end], "worker": s.worker.name,
                            "kind": s.worker.kind, "memory_limit_bytes": s.worker.memory_bytes,
                            "weight_bytes": s.weight_bytes, "kv_bytes": s.kv_bytes,
                            "activation_bytes": s.activation_bytes, "in_s": s.in_s,
                            "compute_s": s.compute_s, "out_s": s.out_s} for s in self.stages],
                "predicted": {"latency_s": self.latency_s, "tokens_per_s": self.tokens_per_s},
                "candidates": self.candidates}


class LayerCosts:
    """Per-unit weights, KV cache, activations and time of a step graph; the tables
    planner.best_split minimizes over (n = units; cost(w)[a, b] = time of units [a, b) on w,
    inf where they do not fit its memory)."""

    def __init__(self, layers: Layers, link: Link = Link(), sequences: int = 1):
        if sequences < 1:
            raise InputError(f"sequences must be at least 1, got {sequences}")
        self.layers, self.link, self.sequences = layers, link, sequences
        g = layers.graph
        self.cm = CostModel(g)
        self.n = layers.count
        static = static_values(g)
        producer = g.producers()
        by_name = dict(zip(g.input_names, g.inputs))
        caches = {by_name[c] for group in layers.caches for c in group}
        main_set = set(layers.main)
        sched_pos = {i: p for p, i in enumerate(self.cm.sched)}
        side = [sched_pos[i] for i in self.cm.sched if i not in main_set]
        self._weights, self.kv, self.acts, self.time_pos = [], [], [], []
        for u in range(self.n):
            idx = layers.main[layers.bounds[u]:layers.bounds[u + 1]]
            nodes = [g.nodes[i] for i in idx]
            self._weights.append({v for v in upstream([x for nd in nodes for x in nd.inputs if x in static],
                                                      producer) if v in static})
            self.kv.append(sequences * sum(by_name[c].type.nbytes for c in layers.caches[u]))
            self.acts.append(max((sum(x.type.nbytes for x in nd.inputs if x not in static and x not in caches)
                                  + sum(o.type.nbytes for o in nd.outputs if o not in g.outputs or
                                        not any(x in caches for x in nd.inputs))
                                  for nd in nodes), default=0))
            self.time_pos.append([sched_pos[i] for i in idx])
        self.side_pos = side
        self.in_bytes = [by_name[layers.token].type.nbytes] + \
            [layers.crossing[layers.bounds[u]].type.nbytes for u in range(1, self.n)]
        finals = [v for v in g.outputs if v not in _present_outputs(g, caches)]
        self.out_bytes = sum(v.type.nbytes for v in finals)
        self._tables: dict = {}

    def weight_bytes(self, a: int, b: int) -> int:
        return int(sum(v.type.nbytes for v in set().union(*self._weights[a:b])))

    def memory(self, a: int, b: int) -> int:
        return self.weight_bytes(a, b) + int(sum(self.kv[a:b])) + int(max(self.acts[a:b]))

    def compute_s(self, w: Worker, a: int, b: int) -> float:
        t = self.cm.node_times(w)
        return float(sum(t[p] for u in range(a, b) for p in self.time_pos[u]) + t[self.side_pos].sum())

    def in_s(self, a: int) -> float:
        return self.link.time(self.in_bytes[a])

    def out_s(self, b: int) -> float:
        return self.link.time(self.out_bytes) if b == self.n else 0.0

    def cost(self, w: Worker) -> np.ndarray:
        key = (w.target, w.memory_bytes, w.efficiency, w.launch_overhead_s, id(w.kernel_times))
        if key not in self._tables:
            n = self.n
            t = np.full((n + 1, n + 1), math.inf)
            for a in range(n):
                for b in range(a + 1, n + 1):
                    if self.memory(a, b) <= w.memory_bytes:
                        t[a, b] = self.in_s(a) + self.compute_s(w, a, b) + self.out_s(b)
            self._tables[key] = t
        return self._tables[key]

    def stage(self, k: int, w: Worker, a: int, b: int) -> DecodeStage:
        return DecodeStage(k, a, b, w, self.weight_bytes(a, b), int(max(self.acts[a:b])),
                           self.in_s(a), self.compute_s(w, a, b), self.out_s(b),
                           kv_bytes=int(sum(self.kv[a:b])))


def place_layers(layers: Layers, workers: list[Worker], link: Link = Link(), sequences: int = 1,
                 stages: int | None = None, capacity: int = 0) -> DecodePlan:
    """Contiguous layer ranges on the first S workers (in the order given), each range's
    weights + KV cache (for `sequences` sequences) + activations within its worker's
    memory. S is `stages`, else the fewest workers that hold the model (a model that fits
    one worker runs on one: more stages add a hop per token); among the splits into S, the
    one with the least slowest stage, then the least latency (planner.best_split). A
    PlanError says which layers do not fit where."""
    if not workers:
        raise InputError("no workers given")
    lc = LayerCosts(layers, link, sequences)
    if stages is not None and not 1 <= stages <= min(len(workers), lc.n):
        raise InputError(f"stages must be between 1 and {min(len(workers), lc.n)} "
                         f"({len(workers)} workers, {lc.n} layers), got {stages}")
    counts = [stages] if stages else range(1, min(len(workers), lc.n) + 1)
    candidates = []
    for S in counts:
        found = best_split(lc, workers[:S])
        candidates.append({"stages": S, "feasible": found is not None})
        if found is None:
            continue
        bounds = [0, *found[2], lc.n]
        plan = DecodePlan([lc.stage(k, workers[k], bounds[k], bounds[k + 1]) for k in range(S)],
                          sequences, capacity, link, lc.n, candidates)
        candidates[-1].update(tokens_per_s=plan.tokens_per_s, latency_s=plan.latency_s,
                              layers=[[s.first, s.end] for s in plan.stages])
        return plan
    raise _no_fit(lc, workers[:counts[-1]])


def _no_fit(lc: LayerCosts, workers: list[Worker]) -> PlanError:
    """Why no placement fits: where filling the workers in order stops (fill_in_order)."""
    spans, stuck, a = fill_in_order(lc.n, lc.memory, workers)
    if stuck is not None:
        return PlanError(
            f"worker {stuck.name} ({stuck.kind}, memory limit {_gib(stuck.memory_bytes)}) cannot "
            f"hold layer {a}: it needs {_gib(lc.memory(a, a + 1))} (weights "
            f"{_gib(lc.weight_bytes(a, a + 1))}, KV cache {_gib(lc.kv[a])} for {lc.sequences} "
            f"sequence(s), activations {_gib(lc.acts[a])})"
            + (f"; workers before it hold layers 0-{a - 1}" if a else ""))
    held = "; ".join(f"{w.name} layers {first}-{end - 1}" for w, first, end in spans)
    return PlanError(f"the decoder does not fit the {len(workers)} worker(s): filled in order, "
                     f"{held}, and layers {a}-{lc.n - 1} ({_gib(lc.memory(a, lc.n))}) "
                     f"are left over")


def decode_table(plan: DecodePlan) -> str:
    """The placement as text, with the predicted per-token latency and throughput."""
    lines = [f"{'stage':<5} {'layers':>7} {'worker':<12} {'limit':>10} {'weights':>10} "
             f"{'KV cache':>10} {'activ.':>10} {'in ms':>8} {'compute ms':>10}"]
    for s in plan.stages:
        lines.append(f"{s.index:<5} {f'{s.first}-{s.end - 1}':>7} {s.worker.name[:12]:<12} "
                     f"{_gib(s.worker.memory_bytes):>10} {_gib(s.weight_bytes):>10} "
                     f"{_gib(s.kv_bytes):>10} {_gib(s.activation_bytes):>10} "
                     f"{s.in_s * 1e3:>8.3f} {s.compute_s * 1e3:>10.3f}")
    lines.append(f"predicted: {plan.latency_s * 1e3:.3f} ms per token (one sequence), "
                 f"{plan.tokens_per_s:.1f} tokens/s with {plan.sequences} sequence(s) in flight")
    return "\n".join(lines)
