"""lgc.search.nsga2: sorting and crowding against brute-force references, and evolve()'s
determinism, duplicate handling and stopping rules."""
import itertools

import numpy as np
import pytest

from lgc.errors import InputError
from lgc.search import crowding_distance, evolve, non_dominated_sort, pareto_front
from lgc.search.nsga2 import select_survivors


def brute_force_fronts(f: np.ndarray) -> list[list[int]]:
    """Peel off the rows no remaining row dominates, by the definition, pair by pair."""
    def dom(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))
    left, fronts = list(range(len(f))), []
    while left:
        front = [i for i in left if not any(dom(f[j], f[i]) for j in left if j != i)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    return fronts


def brute_force_crowding(f: np.ndarray, front: list[int]) -> list[float]:
    """Deb's definition written out: per objective, sort, ends infinite, gap of neighbours."""
    d = {i: 0.0 for i in front}
    for k in range(f.shape[1]):
        s = sorted(front, key=lambda i: f[i, k])
        d[s[0]] = d[s[-1]] = float("inf")
        span = f[s[-1], k] - f[s[0], k]
        for a, b, c in zip(s, s[1:], s[2:]):
            if span > 0:
                d[b] += (f[c, k] - f[a, k]) / span
    return [d[i] for i in front]


def test_sort_hand_made_points():
    pts = np.array([[1, 5], [2, 3], [3, 1], [2, 4], [4, 4], [3, 3], [5, 5], [2, 3]], float)
    fronts = non_dominated_sort(pts)
    assert fronts == [[0, 1, 2, 7], [3, 5], [4], [6]]
    assert fronts == brute_force_fronts(pts)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 2, 3])
def test_sort_matches_brute_force(seed, k):
    rng = np.random.default_rng(seed)
    pts = rng.integers(0, 6, size=(40, k)).astype(float)   # small ints: many ties and repeats
    assert non_dominated_sort(pts) == brute_force_fronts(pts)


def test_sort_counts_nan_as_worst():
    pts = np.array([[1.0, np.nan], [2.0, 2.0], [1.0, 3.0]])
    assert non_dominated_sort(pts) == [[1, 2], [0]]


def test_crowding_hand_made_front():
    pts = np.array([[0, 10], [1, 6], [3, 4], [6, 1], [10, 0]], float)
    d = crowding_distance(pts, [0, 1, 2, 3, 4])
    assert np.isinf(d[0]) and np.isinf(d[4])
    np.testing.assert_allclose(d[1:4], [3 / 10 + 6 / 10, 5 / 10 + 5 / 10, 7 / 10 + 4 / 10])


@pytest.mark.parametrize("seed", range(4))
def test_crowding_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    pts = rng.standard_normal((30, 3))
    for front in non_dominated_sort(pts):
        np.testing.assert_allclose(crowding_distance(pts, front), brute_force_crowding(pts, front))


def test_survivors_take_whole_fronts_then_the_least_crowded():
    pts = np.array([[0, 4], [1, 3], [1.1, 2.9], [4, 0], [5, 5]], float)
    # front 0 is rows 0..3; the crowded middle point 2 (or 1) loses when only 3 fit
    assert sorted(select_survivors(pts, 3)) in ([0, 1, 3], [0, 2, 3])
    assert sorted(select_survivors(pts, 5)) == [0, 1, 2, 3, 4]


# ---- evolve on a known problem: genome = a tuple of 6 bits, objectives (ones, zeros-weighted)

N_BITS = 6


def init(rng):
    return tuple(int(b) for b in rng.integers(0, 2, N_BITS))


def mutate(g, rng):
    i = int(rng.integers(N_BITS))
    return g[:i] + (1 - g[i],) + g[i + 1:]


def crossover(a, b, rng):
    cut = int(rng.integers(1, N_BITS))
    return a[:cut] + b[cut:]


def make_evaluate(log):
    def evaluate(g):
        log.append(g)
        ones = sum(g)
        weighted = sum((1 - b) * (i + 1) for i, b in enumerate(g))   # cost of every 0 bit
        return (ones, weighted), {"ones": ones}
    return evaluate


def test_same_seed_same_evaluations():
    runs = []
    for _ in range(2):
        log = []
        res = evolve(init, mutate, crossover, make_evaluate(log), population=6, generations=4,
                     seed=3, progress=False)
        runs.append((log, [(p.genome, p.objectives) for p in res.evaluated]))
    assert runs[0] == runs[1]
    log = []
    evolve(init, mutate, crossover, make_evaluate(log), population=6, generations=4, seed=4,
           progress=False)
    assert log != runs[0][0]


def test_no_genome_evaluated_twice_and_front_is_exact():
    log = []
    res = evolve(init, mutate, crossover, make_evaluate(log), population=8, generations=30,
                 seed=0, progress=False)
    assert len(log) == len(set(log)) == len(res.evaluated)
    # the true front of this problem: for each count of ones, the cheapest placement of zeros
    everything = [make_evaluate([])(g)[0] for g in itertools.product((0, 1), repeat=N_BITS)]
    true_front = {tuple(everything[i]) for i in non_dominated_sort(np.array(everything))[0]}
    found = {p.objectives for p in res.front}
    assert found <= true_front                            # nothing dominated is called the front
    assert len(found) >= len(true_front) - 1              # and the search found (almost) all of it
    assert [p.objectives for p in pareto_front(res.evaluated)] == [p.objectives for p in res.front]


def test_seeds_are_evaluated_first():
    log = []
    evolve(init, mutate, crossover, make_evaluate(log), population=4, generations=1,
           seed=0, progress=False, seeds=[(1,) * N_BITS, (0,) * N_BITS])
    assert log[:2] == [(1,) * N_BITS, (0,) * N_BITS]


def test_stops_on_max_evaluations_as_a_prefix_of_the_full_run():
    full, short = [], []
    evolve(init, mutate, crossover, make_evaluate(full), population=6, generations=5, seed=1,
           progress=False)
    evolve(init, mutate, crossover, make_evaluate(short), population=6, generations=5, seed=1,
           progress=False, max_evaluations=9)
    assert len(short) == 9 and short == full[:9]


def test_stops_on_budget():
    import time
    log = []

    def slow(g):
        time.sleep(0.01)
        return make_evaluate(log)(g)
    t = time.monotonic()
    evolve(init, mutate, crossover, slow, population=4, budget_s=0.1, seed=0, progress=False)
    assert time.monotonic() - t < 1.0 and 1 <= len(log) < 30


def test_progress_line_on_stderr(capsys):
    evolve(init, mutate, crossover, make_evaluate([]), population=4, generations=2, seed=0)
    err = capsys.readouterr().err
    assert "search: generation 2/2" in err and "evaluated" in err


@pytest.mark.parametrize("kwargs, msg", [
    (dict(population=1, generations=1), "population"),
    (dict(), "stopping rule"),
    (dict(budget_s=0), "budget"),
])
def test_bad_arguments(kwargs, msg):
    with pytest.raises(InputError, match=msg):
        evolve(init, mutate, crossover, make_evaluate([]), progress=False, **kwargs)


def test_an_exhausted_space_ends_the_search():
    """Two bits: four genomes in all. A budget-only search stops once nothing new turns up
    instead of breeding repeats until the clock runs out."""
    import time
    log = []

    def evaluate(g):
        log.append(g)
        return (sum(g), -sum(g)), {}
    t = time.monotonic()
    evolve(lambda rng: tuple(int(b) for b in rng.integers(0, 2, 2)),
           lambda g, rng: (1 - g[0], g[1]), lambda a, b, rng: (a[0], b[1]), evaluate,
           population=2, budget_s=30, seed=0, progress=False)
    assert time.monotonic() - t < 5 and len(log) == len(set(log)) <= 4


def test_constraint_domination_ranks_feasible_first():
    """A row over its constraint ranks behind every feasible one, however good its
    objectives; among infeasible rows the smaller violation ranks first."""
    from lgc.search.nsga2 import constrained_order, select_survivors
    objs = [(1.0, 1.0), (5.0, 5.0), (0.1, 0.1), (6.0, 4.0), (0.2, 0.2)]
    viol = [0.0, 0.0, 0.3, 0.0, 0.1]
    rank, _ = constrained_order(objs, viol)
    assert list(rank) == [0, 1, 3, 1, 2]
    assert select_survivors(objs, 3, viol) == [0, 1, 3]
    assert select_survivors(objs, 3) == [2, 4, 0]                  # unconstrained: the best objectives
