"""Shard planner: split a graph into S contiguous pipeline stages for S workers, minimizing
the slowest stage, then give spare workers to the bottleneck as replicas.

Model (lgc.distributed.cost): a stage [a, b) on worker w takes
    time = transfer(tensors crossing the cut at a) + compute(w, a, b)
           (+ transfer(the results) for the last stage: they go back to the client)
where the first stage's incoming transfer is the request itself. A worker receives, then
computes (no overlap), so a replica serves 1 / time requests/s; a stage with replicas r
serves sum(1 / time_r); the pipeline serves the minimum over its stages, and no more than
the front's link carries (one HTTP front receives every request and sends every answer:
bandwidth / max(request bytes, response bytes)) unless `front_link=False` (clients talk to
workers directly). Latency is the sum of the stage times along the path of the primary
workers, with nothing queued: a lower bound on any percentile under load.

Algorithm: for a sequence of S workers, a dynamic program over the schedule positions finds
the cuts minimizing the slowest stage, subject to each worker's memory (weights plus peak
activations); a second pass finds, among the splits with that bottleneck, the one of least
latency. Stages go to workers in sequence order. With order="auto" (the default) every
distinct sequence of worker kinds (kind, memory, efficiency, kernel times) is tried when
there are at most MAX_ORDERINGS of them and their DPs fit a work budget (ORDERING_WORK table
cells per stage count; a homogeneous cluster has one sequence), else the given order is used; order="given" always keeps it. With `stages=None` every S from 1 to the
number of workers is tried, and the plan with the highest throughput (then the lowest
latency) wins: pipelining pays only when transfers are cheap next to compute. Workers not
holding a stage are handed out one at a time to the stage with the least capacity that
they fit in (memory); the split is chosen before replication, so with replicas it is a
heuristic, not an optimum over (split, replication) jointly.

Plan file (PLAN_FORMAT "lgc-plan", version 1): see docs/DISTRIBUTED.md.
"""
from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .cost import CostModel, Link, Worker
from .shard import check_format, fingerprint, read_json, write_json

PLAN_FORMAT = "lgc-plan"
PLAN_VERSION = 1
MAX_ORDERINGS = 1000
ORDERING_WORK = 3e8        # at most this many table cells per stage count for ordering search
INF = float("inf")
_TOL = 1e-9


class PlanError(InputError):
    """No split fits the workers' memory (names the worker and the bytes)."""


# -- per-worker stage tables -----------------------------------------------------------------

@dataclass
class _Tables:
    time: np.ndarray        # [a, b] seconds of stage [a, b) on this worker (inf where a >= b)
    fits: np.ndarray        # [a, b] stage fits this worker's memory


class Problem:
    """A cost model, a link and the stage tables of each distinct worker signature."""

    def __init__(self, cm: CostModel, link: Link = Link()):
        self.cm, self.link = cm, link
        n = cm.n
        self.n = n
        self.weights = np.zeros((n + 1, n + 1))
        self.acts = np.zeros((n + 1, n + 1))
        for a in range(n):
            self.weights[a] = cm.weight_bytes_from(a)
            self.acts[a, a + 1:] = np.maximum.accumulate(cm.step_bytes[a:])
        self.memory = self.weights + self.acts
        self.in_time = np.array([link.time(cm.cut_bytes(p)) for p in range(n + 1)])
        self.out_time = link.time(cm.cut_bytes(n))
        self._tables: dict = {}

    def tables(self, w: Worker) -> _Tables:
        key = _signature(w)
        if key not in self._tables:
            n = self.n
            pre = self.cm.prefix_times(w)
            t = pre[None, :] - pre[:, None] + self.in_time[:, None]
            t[:, n] += self.out_time
            t[np.tril_indices(n + 1)] = INF
            fits = self.memory <= w.memory_bytes
            self._tables[key] = _Tables(t, fits)
        return self._tables[key]

    def cost(self, w: Worker) -> np.ndarray:
        tb = self.tables(w)
        return np.where(tb.fits, tb.time, INF)


def _signature(w: Worker):
    return (w.target, w.memory_bytes, w.efficiency, w.launch_overhead_s,
            id(w.kernel_times) if w.kernel_times else None)


# -- the dynamic program ----------------------------------------------------------------------

def best_split(prob: Problem, workers: list[Worker]) -> tuple[float, float, list[int]] | None:
    """(bottleneck seconds, latency seconds, cuts) of the best split of the schedule into
    len(workers) stages, stage k on workers[k]; None when no split fits in memory."""
    n, S = prob.n, len(workers)
    if S > n:
        return None
    costs = [prob.cost(w) for w in workers]
    # pass 1: minimize the slowest stage
    best = np.full(n + 1, INF)
    best[0] = 0.0
    for k in range(S):
        best = np.min(np.maximum(best[:, None], costs[k]), axis=0)
    bottleneck = best[n]
    if not math.isfinite(bottleneck):
        return None
    # pass 2: least latency among the splits whose stages are all within the bottleneck
    limit = bottleneck * (1 + _TOL)
    lat = np.full(n + 1, INF)
    lat[0] = 0.0
    back = []
    for k in range(S):
        c = np.where(costs[k] <= limit, costs[k], INF)
        total = lat[:, None] + c
        back.append(np.argmin(total, axis=0))
        lat = np.min(total, axis=0)
    cuts, b = [], n
    for k in range(S - 1, 0, -1):
        b = int(back[k][b])
        cuts.append(b)
    return float(bottleneck), float(lat[n]), cuts[::-1]


def stage_costs(prob: Problem, workers: list[Worker], cuts: list[int]) -> list[float]:
    bounds = [0, *cuts, prob.n]
    return [float(prob.cost(w)[a, b]) for w, a, b in zip(workers, bounds, bounds[1:])]


def brute_force(prob: Problem, workers: list[Worker]) -> tuple[float, float, list[int]] | None:
    """The same answer as best_split by trying every contiguous split (for tests; C(n-1, S-1))."""
    n, S = prob.n, len(workers)
    costs = [prob.cost(w) for w in workers]
    found = None
    for cuts in itertools.combinations(range(1, n), S - 1):
        bounds = (0, *cuts, n)
        ts = [costs[k][bounds[k], bounds[k + 1]] for k in range(S)]
        key = (max(ts), sum(ts))
        if not math.isfinite(key[0]):
            continue
        if found is None or key[0] < found[0] * (1 - _TOL) or (
                key[0] <= found[0] * (1 + _TOL) and key[1] < found[1]):
            found = (float(key[0]), float(key[1]), list(cuts))
    return found


def fill_in_order(n: int, memory, workers: list[Worker]):
    """Each worker in order takes as many units from where the last one stopped as its memory
    holds (memory(a, b): the bytes of units [a, b)). No contiguous split reaches further, so
    where this stops is why none fits. -> (spans [(worker, first, end)] of the workers that
    took units, the worker that could take none or None, the unit reached)."""
    a, spans = 0, []
    for w in workers:
        b = a
        while b < n and memory(a, b + 1) <= w.memory_bytes:
            b += 1
        if b == a:
            return spans, w, a
        spans.append((w, a, b))
        a = b
        if a == n:
            break
    return spans, None, a


def _greedy_reach(prob: Problem, workers: list[Worker]) -> PlanError:
    """Why no split fits: where filling the workers in order stops (fill_in_order)."""
    cm = prob.cm
    spans, stuck, a = fill_in_order(prob.n, lambda a, b: prob.memory[a, b], workers)
    if stuck is not None:
        need = int(prob.memory[a, a + 1])
        return PlanError(
            f"worker {stuck.name} ({stuck.kind}, {_gib(stuck.memory_bytes)}) cannot hold node {a} "
            f"({cm.labels[a]!r}): it needs {need:,} bytes ({_gib(need)}: weights "
            f"{_gib(prob.weights[a, a + 1])}, activations {_gib(prob.acts[a, a + 1])})"
            + (f"; workers before it hold nodes 0-{a - 1}" if a else ""))
    held = "; ".join(f"{w.name} nodes {first}-{end - 1}" for w, first, end in spans)
    rest = int(prob.memory[a, prob.n])
    return PlanError(f"the model does not fit the {len(workers)} worker(s): filled in order, "
                     f"{held} (as much as each holds), and nodes {a}-{prob.n - 1} "
                     f"({rest:,} bytes, {_gib(rest)}) are left over")


def _gib(n) -> str:
    n = float(n)
    return (f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB" if n >= 2**20
            else f"{n / 2**10:.1f} KiB")


# -- plans ------------------------------------------------------------------------------------

@dataclass
class StageCost:
    """One pipeline stage as the cost model predicts it: units [first, end) on `worker`, the
    bytes it holds and the seconds one request (or token) spends in it. The common part of
    StagePlan and decode.DecodeStage."""
    index: int
    first: int                        # units [first, end)
    end: int
    worker: Worker                    # the primary worker
    weight_bytes: int
    activation_bytes: int
    in_s: float                       # incoming transfer on the link
    compute_s: float                  # on the primary worker
    out_s: float                      # results back to the client (last stage)

    @property
    def time_s(self) -> float:
        return self.in_s + self.compute_s + self.out_s


@dataclass
class StagePlan(StageCost):
    replicas: list[Worker]            # the primary first
    capacity: float                   # requests/s of all replicas together


@dataclass
class Plan:
    stages: list[StagePlan]
    workers: list[Worker]
    link: Link
    front_link: bool
    throughput: float
    latency_s: float
    limited_by: str
    unused: list[Worker] = field(default_factory=list)
    candidates: list[dict] = field(default_factory=list)
    cm: CostModel | None = None

    @property
    def cuts(self) -> list[int]:
        return [s.first for s in self.stages[1:]]

    @property
    def bottleneck_s(self) -> float:
        return max(s.time_s for s in self.stages)


def plan(source, workers: list[Worker], link: Link = Link(), stages: int | None = None,
         order: str = "auto", front_link: bool = True) -> Plan:
    """The best plan for these workers (see the module docstring). source: a Graph or a
    CostModel."""
    cm = source if isinstance(source, CostModel) else CostModel(source)
    if not workers:
        raise InputError("no workers given")
    if cm.n == 0:
        raise InputError("the graph has no dynamic nodes to place")
    if order not in ("auto", "given"):
        raise InputError(f"order must be 'auto' or 'given', got {order!r}")
    prob = Problem(cm, link)
    if stages is not None and not 1 <= stages <= min(len(workers), cm.n):
        raise InputError(f"--stages must be between 1 and {min(len(workers), cm.n)} "
                         f"({len(workers)} workers, {cm.n} nodes), got {stages}")
    counts = [stages] if stages else range(1, min(len(workers), cm.n) + 1)
    best: Plan | None = None
    candidates = []
    for S in counts:
        found = None
        for seq in _sequences(workers, S, order, int(ORDERING_WORK // (S * (cm.n + 1) ** 2))):
            r = best_split(prob, seq)
            if r is not None and (found is None or r[0] < found[0][0] * (1 - _TOL)
                                  or (r[0] <= found[0][0] * (1 + _TOL) and r[1] < found[0][1])):
                found = (r, seq)
        if found is None:
            candidates.append({"stages": S, "feasible": False})
            continue
        (_, _, cuts), seq = found
        p = _assemble(prob, seq, cuts, workers, front_link)
        candidates.append({"stages": S, "feasible": True, "throughput_per_s": p.throughput,
                           "latency_s": p.latency_s, "cuts": cuts})
        if best is None or p.throughput > best.throughput * (1 + _TOL) or (
                p.throughput >= best.throughput * (1 - _TOL) and p.latency_s < best.latency_s):
            best = p
    if best is None:
        err = _greedy_reach(prob, workers[:counts[-1]])
        raise PlanError(f"{err} (with --stages {stages})" if stages else str(err))
    best.candidates = candidates
    best.cm = cm
    return best


def _sequences(workers: list[Worker], S: int, order: str, budget: int = MAX_ORDERINGS):
    """Worker sequences of length S to try: distinct kinds' orderings when few (at most
    min(MAX_ORDERINGS, budget)), else the given order."""
    given = workers[:S]
    limit = min(MAX_ORDERINGS, budget)
    if order == "given" or limit < 2:
        return [given]
    groups: dict = {}
    for w in workers:
        groups.setdefault(_signature(w), []).append(w)
    keys = list(groups)
    out: list[list[Worker]] = []

    def rec(seq, left):
        if len(out) > limit:
            return
        if len(seq) == S:
            used: dict = {}
            ws = []
            for k in seq:
                ws.append(groups[keys[k]][used.get(k, 0)])
                used[k] = used.get(k, 0) + 1
            out.append(ws)
            return
        for k in range(len(keys)):
            if left[k]:
                left[k] -= 1
                rec(seq + [k], left)
                left[k] += 1

    rec([], [len(groups[k]) for k in keys])
    return out if len(out) <= limit else [given]


def _assemble(prob: Problem, seq: list[Worker], cuts: list[int], workers: list[Worker],
              front_link: bool) -> Plan:
    cm, n = prob.cm, prob.n
    bounds = [0, *cuts, n]
    used = {id(w) for w in seq}
    spare = [w for w in workers if id(w) not in used]
    reps = [[w] for w in seq]

    def time_on(w, k):
        return float(prob.tables(w).time[bounds[k], bounds[k + 1]])

    def fits(w, k):
        return bool(prob.tables(w).fits[bounds[k], bounds[k + 1]])

    cap = [1.0 / time_on(w, k) for k, w in enumerate(seq)]
    unused = []
    for w in sorted(spare, key=lambda w: min(time_on(w, k) for k in range(len(seq)))):
        for k in sorted(range(len(seq)), key=lambda k: cap[k]):
            if fits(w, k):
                reps[k].append(w)
                cap[k] += 1.0 / time_on(w, k)
                break
        else:
            unused.append(w)
    stages = []
    for k, w in enumerate(seq):
        a, b = bounds[k], bounds[k + 1]
        stages.append(StagePlan(k, a, b, w, int(prob.weights[a, b]), int(prob.acts[a, b]),
                                float(prob.in_time[a]), cm.compute_time(w, a, b),
                                prob.out_time if b == n else 0.0, replicas=reps[k], capacity=cap[k]))
    k_min = min(range(len(stages)), key=lambda k: cap[k])
    throughput, limited = cap[k_min], f"stage {k_min}"
    if front_link:
        front = prob.link.bandwidth / max(cm.cut_bytes(0), cm.cut_bytes(n), 1)
        if front < throughput:
            throughput, limited = front, "front link"
    latency = sum(s.time_s for s in stages)
    return Plan(stages, list(workers), prob.link, front_link, throughput, latency, limited, unused)


# -- plan files ----------------------------------------------------------------------------------

def plan_json(p: Plan, model: str = "", input_shapes: dict | None = None,
              simulated: dict | None = None) -> dict:
    cm = p.cm

    def worker_json(w: Worker) -> dict:
        return {"name": w.name, "kind": w.kind, "memory_bytes": w.memory_bytes,
                "peak_flops": w.target.peak_flops, "bandwidth_bytes_per_s": w.target.bandwidth,
                "efficiency": w.efficiency, "launch_overhead_s": w.launch_overhead_s,
                "measured": bool(w.kernel_times)}

    return {
        "format": PLAN_FORMAT, "version": PLAN_VERSION, "model": model,
        "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()},
        "graph": {"name": cm.graph.name, "dynamic_nodes": cm.n, "fingerprint": fingerprint(cm.graph),
                  "flops": int(cm.flops.sum()),
                  "weight_bytes": cm.total_weight_bytes},
        "link": {"bandwidth_bytes_per_s": p.link.bandwidth, "latency_s": p.link.latency_s},
        "front_link": p.front_link,
        "workers": [worker_json(w) for w in p.workers],
        "stages": [{"index": s.index, "nodes": [s.first, s.end], "worker": s.worker.name,
                    "target": s.worker.kind, "replicas": [w.name for w in s.replicas],
                    "in_transfer_s": s.in_s, "compute_s": s.compute_s, "out_transfer_s": s.out_s,
                    "time_s": s.time_s, "capacity_per_s": s.capacity,
                    "weight_bytes": s.weight_bytes, "activation_bytes": s.activation_bytes,
                    "receives": cm.cut_tensors(s.first), "sends": cm.cut_tensors(s.end)}
                   for s in p.stages],
        "unused_workers": [w.name for w in p.unused],
        "predicted": {"throughput_per_s": p.throughput, "latency_s": p.latency_s,
                      "bottleneck_s": p.bottleneck_s, "limited_by": p.limited_by,
                      **({"simulated": simulated} if simulated else {})},
        "candidates": p.candidates,
    }


def save_plan(p: Plan, path, model: str = "", input_shapes: dict | None = None,
              simulated: dict | None = None) -> None:
    write_json(path, plan_json(p, model, input_shapes, simulated))


def load_plan(path) -> dict:
    """A plan file, checked enough that compiling from it cannot go wrong silently."""
    where = os.path.basename(os.fspath(path))
    doc = check_format(read_json(path, "plan file", where), PLAN_FORMAT, PLAN_VERSION,
                       f"plan file {where}", "plan")
    try:
        bounds = [tuple(int(x) for x in s["nodes"]) for s in doc["stages"]]
        n = int(doc["graph"]["dynamic_nodes"])
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"plan file {where}: malformed ({type(e).__name__}: {e})") from None
    if not bounds or bounds[0][0] != 0 or bounds[-1][1] != n or any(
            a >= b for a, b in bounds) or any(x[1] != y[0] for x, y in zip(bounds, bounds[1:])):
        raise InputError(f"plan file {where}: stages do not cover nodes 0-{n - 1} contiguously")
    return doc


def table(p: Plan) -> str:
    """The plan as text: stages, what crosses each cut, predicted throughput and latency."""
    cm = p.cm
    lines = [f"{'stage':<5} {'nodes':>9} {'worker':<14} {'replicas':>8} {'in ms':>8} "
             f"{'compute ms':>10} {'time ms':>8} {'req/s':>8} {'weights':>10} {'activ.':>10}"]
    for s in p.stages:
        lines.append(f"{s.index:<5} {f'{s.first}-{s.end - 1}':>9} {s.worker.name[:14]:<14} "
                     f"{len(s.replicas):>8} {s.in_s * 1e3:>8.3f} {s.compute_s * 1e3:>10.3f} "
                     f"{s.time_s * 1e3:>8.3f} {s.capacity:>8.1f} {_gib(s.weight_bytes):>10} "
                     f"{_gib(s.activation_bytes):>10}")
    for s in p.stages:
        tensors = cm.cut_tensors(s.first)
        what = "request" if s.first == 0 else f"cut {s.index - 1}|{s.index}"
        total = sum(t["nbytes"] for t in tensors)
        shown = ", ".join(f"{t['name']} {t['dtype']}{t['shape']}" for t in tensors[:4])
        more = f" (+{len(tensors) - 4} more)" if len(tensors) > 4 else ""
        lines.append(f"{what} -> stage {s.index}: {total:,} bytes: {shown}{more}")
    for k, s in enumerate(p.stages):
        if len(s.replicas) > 1:
            lines.append(f"stage {k} replicas: {', '.join(w.name for w in s.replicas)}")
    if p.unused:
        lines.append(f"unused (fit no stage): {', '.join(w.name for w in p.unused)}")
    lines.append(f"predicted: {p.throughput:.1f} requests/s (limited by {p.limited_by}), "
                 f"latency {p.latency_s * 1e3:.3f} ms unloaded; link "
                 f"{p.link.bandwidth * 8 / 1e9:g} Gbit/s")
    return "\n".join(lines)
