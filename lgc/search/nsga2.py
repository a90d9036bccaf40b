"""A generic NSGA-II (Deb et al. 2002): a population evolved by crossover and mutation, ranked by
non-dominated sorting and crowding distance, every objective minimised.

The problem is four callables over genomes (any hashable value): init, mutate, crossover and
evaluate. Everything random draws from one np.random.Generator seeded by `seed`, so a search
with the same seed and a deterministic evaluate evaluates the same genomes in the same order;
a wall-clock budget only decides how long a prefix of that sequence is run. A genome seen before is never evaluated
again (its first result is reused).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

import numpy as np

from ..errors import InputError


@dataclass
class Individual:
    """One evaluated genome: its objectives (all minimised) and whatever evaluate reported."""
    genome: Hashable
    objectives: tuple[float, ...]
    info: dict = field(default_factory=dict)


@dataclass
class SearchResult:
    """front: the non-dominated individuals of everything evaluated (in evaluation order);
    evaluated: every individual, in the order it was evaluated."""
    front: list[Individual]
    evaluated: list[Individual]


def _as_matrix(objectives) -> np.ndarray:
    """float [n, k]; NaN (a failed evaluation) counts as the worst value, +inf."""
    f = np.asarray(objectives, dtype=np.float64)
    if f.ndim == 1:
        f = f[:, None]
    return np.where(np.isnan(f), np.inf, f)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is no worse than b in every objective and better in one (minimising)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated_sort(objectives) -> list[list[int]]:
    """Indices of the rows of objectives [n, k] grouped into fronts: front 0 is dominated by no
    row, front i by rows of earlier fronts only. Every column is minimised; equal rows share a
    front. Indices ascend within a front."""
    f = _as_matrix(objectives)
    n = len(f)
    if n == 0:
        return []
    le = np.all(f[:, None, :] <= f[None, :, :], axis=2)
    lt = np.any(f[:, None, :] < f[None, :, :], axis=2)
    dom = le & lt                              # dom[i, j]: i dominates j
    count = dom.sum(axis=0)                    # how many rows dominate j
    fronts, current = [], np.flatnonzero(count == 0)
    while current.size:
        fronts.append([int(i) for i in current])
        count = count - dom[current].sum(axis=0)
        count[current] = -1                    # placed: never picked again
        current = np.flatnonzero(count == 0)
    return fronts


def crowding_distance(objectives, front: Sequence[int]) -> np.ndarray:
    """The crowding distance of each member of `front` (in its order): per objective, the gap
    between its two neighbours over the front's range, summed; the extremes get +inf, so the
    ends of a front are always kept."""
    f = _as_matrix(objectives)[list(front)]
    m = len(front)
    dist = np.zeros(m)
    if m <= 2:
        return np.full(m, np.inf)
    for col in f.T:
        order = np.argsort(col, kind="stable")
        dist[order[0]] = dist[order[-1]] = np.inf
        finite = col[np.isfinite(col)]
        span = finite.max() - finite.min() if finite.size else 0.0
        if span <= 0:
            continue
        with np.errstate(invalid="ignore"):          # inf - inf: a gap next to an unknown value
            gaps = col[order[2:]] - col[order[:-2]]
        dist[order[1:-1]] += np.where(np.isnan(gaps), np.inf, gaps) / span
    return dist


def rank_and_crowding(objectives) -> tuple[np.ndarray, np.ndarray]:
    """Per row: its front index and its crowding distance within that front."""
    n = len(objectives)
    rank, crowd = np.zeros(n, int), np.zeros(n)
    for r, front in enumerate(non_dominated_sort(objectives)):
        rank[front] = r
        crowd[front] = crowding_distance(objectives, front)
    return rank, crowd


def constrained_order(objectives, violation) -> tuple[np.ndarray, np.ndarray]:
    """Deb's constraint domination as (rank, crowding) per row: rows violating nothing are
    ranked by fronts and crowding as usual; every violating row ranks behind all of them,
    the smaller violation first."""
    v = np.asarray(violation, np.float64)
    ok = np.flatnonzero(v <= 0)
    rank, crowd = np.zeros(len(v), int), np.zeros(len(v))
    if ok.size:
        r, c = rank_and_crowding([objectives[i] for i in ok])
        rank[ok], crowd[ok] = r, c
    bad = np.flatnonzero(v > 0)
    top = int(rank[ok].max()) + 1 if ok.size else 0
    for place, i in enumerate(sorted(bad, key=lambda i: (v[i], i))):
        rank[i] = top + place
    return rank, crowd


def select_survivors(objectives, size: int, violation=None) -> list[int]:
    """With `violation` (one number per row, > 0: infeasible): constraint domination
    (constrained_order); else plain NSGA-II below."""
    if violation is not None:
        rank, crowd = constrained_order(objectives, violation)
        return sorted(range(len(rank)), key=lambda i: (rank[i], -crowd[i], i))[:size]
    return _select_unconstrained(objectives, size)


def _select_unconstrained(objectives, size: int) -> list[int]:
    """The `size` best rows by NSGA-II's order: whole fronts first, the last one cut by largest
    crowding distance (ties: lower index)."""
    chosen: list[int] = []
    for front in non_dominated_sort(objectives):
        if len(chosen) + len(front) <= size:
            chosen.extend(front)
            continue
        crowd = crowding_distance(objectives, front)
        order = sorted(range(len(front)), key=lambda i: (-crowd[i], front[i]))
        chosen.extend(front[i] for i in order[: size - len(chosen)])
        break
    return chosen


class _Progress:
    """One line on stderr per generation (redrawn in place on a terminal)."""

    def __init__(self, enabled: bool, budget_s: float | None, generations: int | None):
        self.enabled, self.budget_s, self.generations = enabled, budget_s, generations
        self.tty = sys.stderr.isatty()

    def show(self, generation: int, evaluated: int, front: int, elapsed: float) -> None:
        if not self.enabled:
            return
        of = f"/{self.generations}" if self.generations is not None else ""
        clock = f"{elapsed:.1f}s" + (f"/{self.budget_s:g}s" if self.budget_s is not None else "")
        line = f"search: generation {generation}{of}, {evaluated} evaluated, front {front}, {clock}"
        sys.stderr.write(("\r" + line.ljust(79)) if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


STALE_GENERATIONS = 20


class _BudgetSpent(Exception):
    """Raised inside evolve when the wall clock or the evaluation cap runs out."""


def evolve(init: Callable[[np.random.Generator], Hashable],
           mutate: Callable[[Hashable, np.random.Generator], Hashable],
           crossover: Callable[[Hashable, Hashable, np.random.Generator], Hashable],
           evaluate: Callable[[Hashable], tuple[tuple[float, ...], dict]],
           *, population: int = 16, generations: int | None = None, budget_s: float | None = None,
           seed: int = 0, progress: bool = True, seeds: Sequence[Hashable] = (),
           max_evaluations: int | None = None,
           violation: Callable[[Individual], float] | None = None) -> SearchResult:
    """NSGA-II over genomes, minimising every objective evaluate returns.

    Stops after `generations` generations (0: the initial population only), when `budget_s`
    seconds of wall clock are spent, or after `max_evaluations` evaluations, whichever comes
    first (at least one must be given), or when STALE_GENERATIONS generations in a row bred
    nothing new (a small space exhausted). The initial population holds `seeds` (genomes that
    must be tried, e.g. a known-good policy; all are evaluated, the best `population` kept),
    then init(rng) genomes. Each generation breeds `population` children by binary tournament
    (rank, then crowding), crossover and mutation; parents and children compete for the next
    population. Genomes must be hashable; a repeat is not evaluated again.
    With `violation` (an individual's constraint violation, > 0 infeasible, e.g. drift over
    its budget) selection uses Deb's constraint domination: feasible individuals always
    rank ahead, so breeding concentrates where a point can be chosen.
    """
    if population < 2:
        raise InputError(f"search population must be at least 2, got {population}")
    if generations is None and budget_s is None and max_evaluations is None:
        raise InputError("search needs a stopping rule: generations, budget_s or max_evaluations")
    if budget_s is not None and budget_s <= 0:
        raise InputError(f"search budget must be positive, got {budget_s} s")
    rng = np.random.default_rng(seed)
    start = time.monotonic()
    seen: dict[Hashable, Individual] = {}
    evaluated: list[Individual] = []
    bar = _Progress(progress, budget_s, generations)

    def spent() -> bool:
        return ((budget_s is not None and time.monotonic() - start >= budget_s)
                or (max_evaluations is not None and len(evaluated) >= max_evaluations))

    def score(genome) -> Individual:
        if genome in seen:
            return seen[genome]
        if spent():
            raise _BudgetSpent
        objectives, info = evaluate(genome)
        ind = Individual(genome, tuple(float(v) for v in objectives), dict(info or {}))
        seen[genome] = ind
        evaluated.append(ind)
        return ind

    def novel(make: Callable[[], Hashable], tries: int = 8) -> Hashable:
        """A genome from make() not seen yet, if one turns up within a few tries."""
        genome = make()
        for _ in range(tries - 1):
            if genome not in seen:
                break
            genome = make()
        return genome

    pop: list[Individual] = []
    try:
        for genome in seeds:
            if genome not in seen:
                pop.append(score(genome))
        while len(pop) < population:
            genome = novel(lambda: init(rng))
            if genome in seen:
                break                                  # init cannot make anything new
            pop.append(score(genome))
        def survivors(inds: list[Individual]) -> list[int]:
            return select_survivors([p.objectives for p in inds], population,
                                    None if violation is None else [violation(p) for p in inds])

        if len(pop) > population:                       # more seeds than places: the best stay
            pop = [pop[i] for i in sorted(survivors(pop))]
        generation = 0
        bar.show(generation, len(evaluated), len(non_dominated_sort([p.objectives for p in pop])[0]),
                 time.monotonic() - start)
        stale = 0                                       # generations that found nothing new
        while (generations is None or generation < generations) and not spent() \
                and stale < STALE_GENERATIONS:
            before = len(evaluated)
            objs = [p.objectives for p in pop]
            rank, crowd = (rank_and_crowding(objs) if violation is None
                           else constrained_order(objs, [violation(p) for p in pop]))

            def tournament() -> Individual:
                i, j = rng.integers(len(pop), size=2)
                better = (rank[i], -crowd[i]) <= (rank[j], -crowd[j])
                return pop[i] if better else pop[j]

            children = [score(novel(lambda: mutate(crossover(tournament().genome,
                                                             tournament().genome, rng), rng)))
                        for _ in range(population)]
            pool = list({p.genome: p for p in pop + children}.values())   # parents first, no repeats
            keep = survivors(pool)
            pop = [pool[i] for i in sorted(keep)]
            generation += 1
            stale = stale + 1 if len(evaluated) == before else 0
            bar.show(generation, len(evaluated),
                     len(non_dominated_sort([p.objectives for p in evaluated])[0]),
                     time.monotonic() - start)
    except _BudgetSpent:
        pass
    finally:
        bar.close()
    return SearchResult(front=pareto_front(evaluated), evaluated=evaluated)


def pareto_front(individuals: Sequence[Individual]) -> list[Individual]:
    """The non-dominated individuals (in their given order)."""
    if not individuals:
        return []
    first = non_dominated_sort([p.objectives for p in individuals])[0]
    return [individuals[i] for i in first]


__all__ = ["Individual", "SearchResult", "constrained_order", "crowding_distance", "dominates", "evolve",
           "non_dominated_sort", "pareto_front", "rank_and_crowding", "select_survivors"]
