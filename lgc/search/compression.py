"""Per-layer compression policies searched by NSGA-II (`lgc compile --search evolutionary`).

A genome gives every conv/matmul layer with a constant weight three choices:

  prune      fraction of its output channels removed, 0 to 0.75 in eighths (structured,
             lgc.compress.prune's prune_channels; only layers it finds prunable)   PRUNE
  rank       low-rank factors holding that fraction of its parameters (SVD / Tucker-2,
             lgc.compress.decompose; None: not decomposed)               RANKS
  precision  fp32, fp16 (weights stored as half, lgc.compress.fp16) or int8 (weights and
             calibrated activations, lgc.compress.quantize)               PRECISIONS

applied in the order prune -> decompose -> quantize -> fp16, each by the lgc.compress entry
point with a `layers=` / `keep_float=` selection. Three objectives, all minimised:

  latency    seconds per run (lgc.search.latency): measured on the device (compiled, timed
             interleaved with the float32 graph), or, for a named Target (`--target gfx803`)
             that is not the device, predicted by the planner's cost model (deterministic)
  bytes      the constant bytes of the graph as compiled (optimized: fp16 weights whose cast
             back to float32 the optimizer folds count as float32), what dominates the artifact
  drift      max |out - float| / max |float| on the first calibration sample, computed with
             the ops' NumPy references: the measure `--prune ... --max-drift` holds its greedy
             search to (lgc.compress.graphtools.max_relative_error)

The initial population holds the trivial policy (nothing compressed) and every uniform one
(each prune level, int8, fp16 for all layers; each rank on models with few layers), so the
front is never worse than any of them; on small models also each layer pruned alone at
each level. With measured latency and a drift budget, a policy over the budget is not
compiled (latency +inf): the device's time goes to policies that can be chosen.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..compress.decompose import candidates as decomposable, decompose
from ..compress.fp16 import to_fp16
from ..compress.graphtools import (Rebuild, layer_names, max_relative_error, param_bytes,
                                   reference_run)
from ..compress.prune import LEVELS, channel_groups, prune_channels
from ..compress.quantize import find_layers, quantize
from ..errors import InputError, LgcError
from ..ir.graph import Graph
from ..passes import optimize
from .nsga2 import Individual, SearchResult, evolve

PRUNE = (0.0,) + tuple(lv for lv in LEVELS if lv <= 0.75)     # the greedy search's levels
RANKS = (None, 0.75, 0.5, 0.25)
PRECISIONS = ("fp32", "fp16", "int8")

MAX_PROBE_SEEDS = 32     # single-layer prune seeds only while they are this few (small models)
MAX_DECOMPOSE_SEEDS = 16  # uniform decomposition seeds only with at most this many such layers

PROBES = ("single-layer prune probes",)           # seeds() entries run() replaces
COMBINED = ("greedy combination of the probes",)
CLIMB = ("hill-climbing from the best so far",)
Gene = tuple[int, int, int]            # (prune index, rank index, precision index)
Genome = tuple[Gene, ...]              # one gene per layer, in graph order


@dataclass(frozen=True)
class LayerChoices:
    """One layer and which of the three choices apply to it."""
    name: str
    base: str                          # the name lgc.compress.decompose gives its factors' prefix
    prunable: bool
    decomposable: bool
    quantizable: bool


def named_layers(graph: Graph) -> Graph:
    """The graph with every conv/matmul node named (graphtools.layer_names), so that each
    pass and the policy name a layer alike even after others rewrote the graph."""
    names = layer_names(graph)
    if all(n.name for n in graph.nodes if id(n) in names):
        return graph
    rb = Rebuild(graph)
    for node in graph.nodes:
        if id(node) in names and not node.name:
            outs = rb.op(node.op, [rb[v] for v in node.inputs], dict(node.attrs), names[id(node)],
                         num_outputs=len(node.outputs))
            for old, new in zip(node.outputs, outs if isinstance(outs, tuple) else (outs,)):
                rb.bind(old, new)
        else:
            rb.copy(node)
    return rb.finish()


# ---- the problem -----------------------------------------------------------------------------

class CompressionSearch:
    """Genomes, their variation operators and their evaluation for one float32 graph."""

    def __init__(self, graph: Graph, feeds: list, latency: Callable, opt_level: int = 2,
                 max_drift: float | None = None, min_params: int = 0):
        if not feeds:
            raise InputError("the compression search needs calibration data to measure drift on")
        self.graph = named_layers(graph)
        self.feed = feeds[0]
        self.feeds = feeds
        self.latency, self.opt_level, self.max_drift = latency, opt_level, max_drift
        names = layer_names(self.graph)
        prunable = {g.name for g in channel_groups(self.graph)}
        decomp = {id(n) for n in decomposable(self.graph, min_params=min_params)}
        quant = {la.name for la in find_layers(self.graph) if la.kind != "gather"}
        self.layers = [LayerChoices(names[id(n)], n.inputs[1].name or names[id(n)],
                                    names[id(n)] in prunable, id(n) in decomp, names[id(n)] in quant)
                       for n in self.graph.nodes if id(n) in names and n.op != "sparse_matmul"]
        if not self.layers:
            raise InputError("the model has no conv/matmul layer with constant weights to compress")
        self.ref = reference_run(self.graph, self.feed)
        self.memo: dict = {}           # decomposition factors, computed once per weight and rank
        self.ranges: dict = {}         # prune and rank genes -> int8 input ranges observed on
                                       # that graph: int8 policies differing in which layers
                                       # are int8 or fp16 skip the calibration run
        self.drifts: dict = {}         # genome -> drift, for the seeds built from the probes
        self.scores: dict = {}         # genome -> objectives, for the hill-climbing seeds
        self.seeded: set = set()       # the genomes the last run() drew from the seeds
        self.probes: set = set()       # the single-layer prune probes among them
        if hasattr(latency, "set_baseline"):
            latency.set_baseline(optimize(self.graph, opt_level), self.feed, "float32")

    # -- genomes -------------------------------------------------------------------------
    def canonical(self, genome) -> Genome:
        """Choices that do not apply to a layer reset to 0, so equal policies are equal genomes."""
        return tuple((p if la.prunable else 0, r if la.decomposable else 0,
                      q if la.quantizable else 0)
                     for la, (p, r, q) in zip(self.layers, genome))

    def random_gene(self, rng, change: float = 0.3) -> Gene:
        """Each choice left at its default with probability 1 - change, else drawn uniformly
        (random policies stay near the uncompressed model, where the drift budget is)."""
        return tuple(int(rng.integers(1, n)) if rng.random() < change else 0
                     for n in (len(PRUNE), len(RANKS), len(PRECISIONS)))

    def init(self, rng) -> Genome:
        """A random policy changing about two layers per kind of choice on large models
        (a policy decomposing dozens of layers takes minutes to apply), 30% on small ones."""
        change = min(0.3, 2.0 / len(self.layers))
        return self.canonical(tuple(self.random_gene(rng, change) for _ in self.layers))

    def mutate(self, genome: Genome, rng) -> Genome:
        """None, one or two layers (a third of the time each: a child of crossover often
        is the combination wanted) get one of their choices changed: half the time a step to
        the next level up or down (small moves near a good policy), else redrawn. Only
        choices that apply to the layer are drawn (a move that canonical() would undo is a
        wasted evaluation), and decomposition a quarter as often as the others on large
        models, where factorising a layer costs seconds of SVD per evaluation."""
        g = [list(x) for x in genome]
        for _ in range(int(rng.integers(3))):
            i = int(rng.integers(len(g)))
            la = self.layers[i]
            kinds = [k for k, on in enumerate((la.prunable, la.decomposable, la.quantizable)) if on]
            if not kinds:
                continue
            weight = np.array([0.25 if k == 1 and len(self.layers) > MAX_DECOMPOSE_SEEDS else 1.0
                               for k in kinds])
            k = kinds[int(rng.choice(len(kinds), p=weight / weight.sum()))]
            n = (len(PRUNE), len(RANKS), len(PRECISIONS))[k]
            step = int(rng.choice((-1, 1)))
            g[i][k] = min(n - 1, max(0, g[i][k] + step)) if rng.random() < 0.5 else int(rng.integers(n))
        return self.canonical(tuple(tuple(x) for x in g))

    def crossover(self, a: Genome, b: Genome, rng) -> Genome:
        """Each layer's gene from either parent (uniform crossover)."""
        pick = rng.random(len(a)) < 0.5
        return tuple(x if p else y for x, y, p in zip(a, b, pick))

    def uniform(self, prune: int = 0, rank: int = 0, precision: int = 0) -> Genome:
        return self.canonical(((prune, rank, precision),) * len(self.layers))

    def seeds(self) -> list[Genome]:
        """The initial population, in evaluation order (a short budget evaluates a prefix):
        the trivial policy; on small models the greedy search's probes, its combination and
        a hill-climb from there (PROBES, COMBINED, CLIMB: placeholders _seed_stream fills in); int8 and fp16 everywhere; int8
        everywhere with each uniform prune level; each uniform prune level; on small models
        each layer pruned alone in int8. Uniform decomposition comes last and only on models
        with few layers to factorise (on ResNet-50 each such policy takes minutes of SVDs)."""
        int8 = PRECISIONS.index("int8")
        prunable = [i for i, la in enumerate(self.layers) if la.prunable]
        probes = len(prunable) * (len(PRUNE) - 1) <= MAX_PROBE_SEEDS
        out = [self.uniform()] + ([PROBES, COMBINED, CLIMB] if probes else [])
        out += [self.uniform(precision=i) for i in range(len(PRECISIONS) - 1, 0, -1)]
        # mixed seeds: int8 everywhere with every layer also pruned at each level (int8 is the
        # cheapest uniform policy on most Targets; pruning where drift allows comes on top)
        out += [self.uniform(prune=i, precision=int8) for i in range(1, len(PRUNE))]
        out += [self.uniform(prune=i) for i in range(1, len(PRUNE))]
        if probes:
            base = self.uniform(precision=int8)
            out += [self.canonical(base[:i] + ((p, 0, int8),) + base[i + 1:])
                    for p in range(1, len(PRUNE)) for i in prunable]
        if sum(la.decomposable for la in self.layers) <= MAX_DECOMPOSE_SEEDS:
            out += [self.uniform(rank=i) for i in range(1, len(RANKS))]
        if not probes:
            out.append(CLIMB)                  # large models: climb from the best uniform policy
        return list(dict.fromkeys(out))

    def _seed_stream(self):
        """seeds(), with PROBES replaced by the greedy search's sensitivity probes and
        COMBINED, once they are evaluated, by the greedy search's own answer
        (`--prune --max-drift`'s rule: each layer at its largest probe level within the
        budget, then the layer most sensitive at its level stepped back until the whole
        fits) in float32 and with int8 everywhere: evolution starts where the greedy search
        ends."""
        self.seeded, self.probes = set(), set()
        for genome in self.seeds():
            stream = {PROBES: self._probes, COMBINED: self._greedy_combinations,
                      CLIMB: self._climb}.get(genome, lambda genome=genome: (genome,))()
            for g in stream:
                self.seeded.add(g)
                yield g

    def _climb(self, rounds: int = 4):
        """Hill-climbing from the fastest policy within --max-drift seen so far, one layer
        one step at a time (its prune level up one, or its precision to int8 or fp16), the
        first move that is faster and within the budget taken: the moves the greedy search
        never makes once it has stepped back."""
        budget = np.inf if self.max_drift is None else self.max_drift
        ok = {g: o for g, o in self.scores.items() if o[2] <= budget and np.isfinite(o[0])}
        if not ok:
            return
        best = min(ok, key=lambda g: ok[g])
        for _ in range(rounds):
            moved = False
            for i, (p, r, q) in enumerate(best):
                for gene in ((min(p + 1, len(PRUNE) - 1), r, q), (p, r, 2), (p, r, 1)):
                    cand = self.canonical(best[:i] + (gene,) + best[i + 1:])
                    if cand == best:
                        continue
                    yield cand
                    o = self.scores.get(cand)
                    if o is not None and o[2] <= budget and o[:2] < self.scores[best][:2]:
                        best, moved = cand, True
                        break
                if moved:
                    break
            if not moved:
                return

    def _probe(self, i: int, p: int) -> Genome:
        trivial = self.uniform()
        return self.canonical(trivial[:i] + ((p, 0, 0),) + trivial[i + 1:])

    def _probes(self):
        """Every prunable layer pruned alone at every level, as the greedy search probes
        (drift is not monotone in the level: a larger fraction can drift less)."""
        for i, la in enumerate(self.layers):
            if la.prunable:
                for p in range(1, len(PRUNE)):
                    self.probes.add(self._probe(i, p))
                    yield self._probe(i, p)

    def seed_count(self, result: SearchResult) -> int:
        """How many of result.evaluated (a prefix) came from the seeds."""
        return next((i for i, p in enumerate(result.evaluated) if p.genome not in self.seeded),
                    len(result.evaluated))

    def _greedy_combinations(self):
        budget = np.inf if self.max_drift is None else self.max_drift
        int8 = PRECISIONS.index("int8")
        sens = {}                              # (layer, level) -> drift of that probe alone
        for i, la in enumerate(self.layers):
            for p in range(1, len(PRUNE)):
                probe = self._probe(i, p)
                if probe in self.drifts:
                    sens[i, p] = self.drifts[probe]
        choice = {i: max([p for (j, p), d in sens.items() if j == i and d <= budget], default=0)
                  for i in range(len(self.layers))}
        for _ in range(len(PRUNE) * len(self.layers)):
            genome = self.canonical(tuple((choice[i], 0, 0) for i in range(len(self.layers))))
            yield genome
            yield self.canonical(tuple((p, r, int8) for p, r, _ in genome))
            if self.drifts.get(genome, np.inf) <= budget or not any(choice.values()):
                return
            worst = max((i for i in choice if choice[i]), key=lambda i: sens[i, choice[i]])
            choice[worst] -= 1

    # -- applying ------------------------------------------------------------------------
    def policy(self, genome: Genome) -> dict[str, dict]:
        """{layer: {prune, rank, precision}} for the layers the genome changes."""
        out = {}
        for la, (p, r, q) in zip(self.layers, genome):
            if p or r or q:
                out[la.name] = {"prune": PRUNE[p], "rank": RANKS[r], "precision": PRECISIONS[q]}
        return out

    def genome_of(self, policy: dict[str, dict]) -> Genome:
        """The genome of a policy as `policy` (or a --report file's "policy") writes it."""
        unknown = [n for n in policy if n not in {la.name for la in self.layers}]
        if unknown:
            raise InputError(f"policy names layer {unknown[0]!r}, which the model does not have")
        gene = {n: (PRUNE.index(c["prune"]), RANKS.index(c["rank"]), PRECISIONS.index(c["precision"]))
                for n, c in policy.items()}
        return self.canonical(tuple(gene.get(la.name, (0, 0, 0)) for la in self.layers))

    def summary(self, genome: Genome) -> str:
        """e.g. 'prune 0.5 x3, rank 0.5 x1, int8 x4' (counts of layers per choice)."""
        counts: dict[str, int] = {}
        for p, r, q in genome:
            for key, on in ((f"prune {PRUNE[p]:g}", p), (f"rank {RANKS[r]}", r), (PRECISIONS[q], q)):
                if on:
                    counts[key] = counts.get(key, 0) + 1
        return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())) or "float32 (unchanged)"

    def apply(self, genome: Genome) -> Graph:
        """The compressed graph: prune -> decompose -> quantize -> fp16 with this policy."""
        g = self.graph
        amounts = {la.name: PRUNE[p] for la, (p, _, _) in zip(self.layers, genome) if p}
        if amounts:
            g = prune_channels(g, amount=0.0, amounts=amounts, layers=sorted(amounts))
        by_rank: dict[float, list[str]] = {}
        for la, (_, r, _) in zip(self.layers, genome):
            if r:
                by_rank.setdefault(RANKS[r], []).append(la.name)
        for level, names in sorted(by_rank.items()):
            g = decompose(g, compression=level, layers=names, memo=self.memo)
        g = named_layers(_name_factors(g))
        owner = self._owners(g)
        prec = {la.name: PRECISIONS[q] for la, (_, _, q) in zip(self.layers, genome)}
        int8 = {n for n, o in owner.items() if prec.get(o) == "int8"}
        if int8:
            keep = [la.name for la in find_layers(g) if la.name not in int8]
            shape = tuple((p, r) for p, r, _ in genome)          # what the graph quantized depends on
            q = quantize(g, self.feeds, "int8", keep_float=keep, ranges=self.ranges.get(shape))
            self.ranges[shape] = q.ranges
            g = q.graph
        half = [n for n, o in owner.items() if prec.get(o) == "fp16"]
        if half:
            present = set(layer_names(g).values())
            g = to_fp16(g, weights=True, activations=False, layers=[n for n in half if n in present])
        return g

    def _owners(self, graph: Graph) -> dict[str, str]:
        """{conv/matmul name in graph: the original layer it came from} (a decomposed layer's
        factors are named '<base>_U', '_V', '_in', '_core', '_out')."""
        by_base = {la.base: la.name for la in self.layers}
        known = {la.name for la in self.layers}
        out = {}
        for name in layer_names(graph).values():
            base = name.rpartition("_")[0]
            out[name] = name if name in known else by_base.get(base, name)
        return out

    # -- scoring -------------------------------------------------------------------------
    def evaluate(self, genome: Genome) -> tuple[tuple[float, float, float], dict]:
        t = time.perf_counter()
        try:
            g = self.apply(genome)
            drift = max_relative_error(self.ref, reference_run(g, self.feed))
            self.drifts[genome] = drift
            compiled = optimize(g, self.opt_level)
            size = float(param_bytes(compiled))
            info = {"summary": self.summary(genome)}
            if self.skips(drift):
                lat = np.inf
                info["latency"] = "not measured: drift over the budget"
            elif self.probe_only(genome):
                lat = np.inf
                info["latency"] = "not measured: a sensitivity probe (its drift is what is used)"
            else:
                lat = self.latency(compiled, self.feed)
        except (LgcError, ValueError, np.linalg.LinAlgError) as e:   # a policy a pass refuses: worst
            return (np.inf, np.inf, np.inf), {"error": f"{type(e).__name__}: {e}",
                                               "summary": self.summary(genome)}
        self.scores[genome] = (lat, size, float(drift))
        return (lat, size, float(drift)), {**info, "seconds": time.perf_counter() - t}

    def skips(self, drift: float) -> bool:
        """Whether a policy's latency goes unmeasured: with measured latency (compiling and
        timing, the costly part) and a drift budget, one over the budget can never be chosen,
        so the device's time goes to those that can; its latency is +inf."""
        return self.max_drift is not None and drift > self.max_drift and \
            not getattr(self.latency, "deterministic", False)

    def probe_only(self, genome: Genome) -> bool:
        """Whether a policy is one of the greedy search's single-layer probes evaluated for its
        drift only: with measured latency, timing the dozens of probes before their
        combination (which prunes the same layers further) would spend most of a short
        budget; the cost model prices them as it goes (milliseconds)."""
        return genome in self.probes and not getattr(self.latency, "deterministic", False)

    def choose(self, result: SearchResult, max_drift: float, confirm: int = 4) -> Individual:
        """The fastest policy within the drift budget. With measured latency, the `confirm`
        fastest are first timed again together, interleaved, and the fastest of those wins
        (one lucky measurement among many would otherwise be chosen); their times go to
        info["confirmed_latency_s"]."""
        ok = feasible(result, max_drift)
        top = [p for p in ok if np.isfinite(p.objectives[0])][:confirm]    # probes: not timed
        if getattr(self.latency, "deterministic", True) or len(top) < 2 or confirm < 2:
            return ok[0]
        for p, t in zip(top, self.latency.again([optimize(self.apply(p.genome), self.opt_level)
                                                 for p in top], self.feed)):
            p.info["confirmed_latency_s"] = t
        return min(top, key=lambda p: p.info["confirmed_latency_s"])

    def run(self, budget_s: float | None = None, generations: int | None = None,
            population: int = 16, seed: int = 0, progress: bool = True,
            max_evaluations: int | None = None) -> SearchResult:
        return evolve(self.init, self.mutate, self.crossover, self.evaluate,
                      population=population, generations=generations, budget_s=budget_s,
                      seed=seed, progress=progress, seeds=self._seed_stream(),
                      max_evaluations=max_evaluations, violation=self.violation)

    def violation(self, ind: Individual) -> float:
        """How far a policy's drift is over --max-drift (0: within it; none without a budget):
        NSGA-II's constraint, so the population breeds within the budget."""
        if self.max_drift is None:
            return 0.0
        drift = ind.objectives[2]
        return float(drift - self.max_drift) if np.isfinite(drift) else np.inf


def _name_factors(graph: Graph) -> Graph:
    """Decomposition leaves its factor nodes unnamed; name each after its weight (e.g.
    'fc1_U') so that it stays tied to the layer it came from."""
    rb = Rebuild(graph)
    for node in graph.nodes:
        w = node.inputs[1].name if node.op in ("conv", "matmul") and len(node.inputs) > 1 else None
        if node.name or not w:
            rb.copy(node)
            continue
        out = rb.op(node.op, [rb[v] for v in node.inputs], dict(node.attrs), w)
        rb.bind(node.output, out)
    return rb.finish()


def feasible(result: SearchResult, max_drift: float) -> list[Individual]:
    """The evaluated policies within the drift budget, fastest first (then fewest bytes)."""
    ok = [p for p in result.evaluated if p.objectives[2] <= max_drift]
    if not ok:
        raise InputError(f"no evaluated policy keeps drift within {max_drift:g}")
    return sorted(ok, key=lambda p: p.objectives)


def choose(result: SearchResult, max_drift: float) -> Individual:
    """The lowest latency within the drift budget (then fewest bytes): on the front, since
    nothing dominates the fastest feasible point."""
    return feasible(result, max_drift)[0]


def front_table(search: CompressionSearch, result: SearchResult, chosen: Individual | None = None) -> str:
    """The Pareto front as text: latency, bytes, drift, policy summary; * marks the chosen,
    '-' a latency not measured (drift over the budget, or a probe timed not at all)."""
    rows = sorted(result.front, key=lambda p: p.objectives)
    lines = [f"  {'latency ms':>10}  {'bytes':>10}  {'drift':>9}  policy"]
    for p in rows:
        lat, size, drift = p.objectives
        mark = "*" if chosen is not None and p.genome == chosen.genome else " "
        shown = f"{lat * 1e3:10.4f}" if np.isfinite(lat) else f"{'-':>10}"
        lines.append(f"{mark} {shown}  {size:10.0f}  {drift:9.3g}  {search.summary(p.genome)}")
    return "\n".join(lines)


def report_json(search: CompressionSearch, result: SearchResult, chosen: Individual | None,
                **meta) -> dict:
    """Every evaluated policy (in evaluation order) with its objectives, the front and the choice."""
    front = {p.genome for p in result.front}

    def row(i, p):
        lat, size, drift = p.objectives
        return {"index": i, "latency_s": lat if np.isfinite(lat) else None,
                "bytes": size if np.isfinite(size) else None,
                "drift": drift if np.isfinite(drift) else None,
                "on_front": p.genome in front, "policy": search.policy(p.genome), **p.info}
    rows = [row(i, p) for i, p in enumerate(result.evaluated)]
    pick = next((i for i, p in enumerate(result.evaluated) if chosen is not None and p is chosen), None)
    return {"format": "lgc-compression-search", "version": 1, **meta,
            "layers": [la.name for la in search.layers], "chosen": pick, "evaluated": rows}
