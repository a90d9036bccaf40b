"""lgc.search.compression and `lgc compile --search evolutionary`, at reduced size: a small
CNN, a few seconds of budget, the gfx803 cost model where results must repeat exactly."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from lgc.compress.graphtools import max_relative_error, reference_run
from lgc.errors import InputError
from lgc.frontend.onnx.importer import default_input_types, import_graph
from lgc.passes import optimize
from lgc.search import non_dominated_sort
from lgc.search.compression import PRECISIONS, PRUNE, RANKS, CompressionSearch, choose
from lgc.search.latency import CostModelLatency
from lgc.tools.cli import main


def small_cnn(path, seed=0):
    """x [2, 3, 8, 8] -> conv 3->16 -> relu -> conv 16->16 -> relu -> flatten -> fc 1024->32 -> relu -> fc 32->10."""
    rng = np.random.default_rng(seed)

    def he(*shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 2 else shape[0]
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    w = {"w1": he(16, 3, 3, 3), "b1": rng.standard_normal(16).astype(np.float32) * 0.1,
         "w2": he(16, 16, 3, 3), "b2": rng.standard_normal(16).astype(np.float32) * 0.1,
         "f1": he(1024, 32), "c1": np.zeros(32, np.float32), "f2": he(32, 10), "c2": np.zeros(10, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["h2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"], axis=1),
             helper.make_node("MatMul", ["f", "f1"], ["m1"], name="fc1"),
             helper.make_node("Add", ["m1", "c1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r3"]),
             helper.make_node("MatMul", ["r3", "f2"], ["m2"], name="fc2"),
             helper.make_node("Add", ["m2", "c2"], ["y"])]
    g = helper.make_graph(nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])],
                          [numpy_helper.from_array(v, k) for k, v in w.items()])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    d = tmp_path_factory.mktemp("search")
    model = small_cnn(str(d / "cnn.onnx"))
    x = np.random.default_rng(1).standard_normal((8, 3, 8, 8)).astype(np.float32)
    np.savez(d / "calib.npz", x=x)
    return d, model, x


def search_for(model, x, latency=None):
    m = onnx.load(model)
    types = default_input_types(m)
    graph = optimize(import_graph(m, types), 2)
    feeds = [{"x": x[i:i + 2]} for i in range(0, len(x), 2)]
    return CompressionSearch(graph, feeds, latency or CostModelLatency("gfx803")), graph


def test_seeded_search_repeats_exactly_with_the_cost_model(cnn):
    _, model, x = cnn
    runs = []
    for seed in (3, 3, 4):
        s, _ = search_for(model, x)
        res = s.run(generations=2, population=6, seed=seed, progress=False)
        n_seeds = s.seed_count(res)
        runs.append([(p.genome, p.objectives) for p in res.evaluated])
        assert len(runs[-1]) > n_seeds                            # it bred beyond the seeds
    assert runs[0] == runs[1]
    assert runs[0][:n_seeds] == runs[2][:n_seeds] and runs[0] != runs[2]


def test_objectives_are_what_the_policy_does(cnn):
    """A policy's drift is the applied graph's against float (recomputed here), its bytes
    shrink as int8/pruning/decomposition promise, and a policy round-trips through its JSON."""
    _, model, x = cnn
    s, graph = search_for(model, x)
    ref = reference_run(graph, {"x": x[:2]})
    genomes = {"float": s.uniform(), "int8": s.uniform(precision=PRECISIONS.index("int8")),
               "prune": s.uniform(prune=PRUNE.index(0.5)), "rank": s.uniform(rank=RANKS.index(0.5))}
    obj = {k: s.evaluate(g)[0] for k, g in genomes.items()}
    assert obj["float"][1:] == (float(sum(c.nbytes for c in graph.constants().values())), 0.0)
    for k in ("int8", "prune", "rank"):
        lat, size, drift = obj[k]
        assert size < obj["float"][1]
        got = reference_run(s.apply(genomes[k]), {"x": x[:2]})
        assert drift == pytest.approx(max_relative_error(ref, got), rel=1e-9)
        assert 0 < drift < 1.0
    assert obj["prune"][0] < obj["float"][0]          # fewer channels: less work in the model
    assert obj["int8"][1] < 0.3 * obj["float"][1]      # int8 weights: about a quarter
    mixed = s.canonical(((1, 2, 2), (0, 0, 1), (2, 1, 0), (0, 0, 2)))
    assert s.genome_of(s.policy(mixed)) == mixed
    assert "int8 x2" in s.summary(mixed)


def test_cli_search_end_to_end(cnn, capsys):
    d, model, x = cnn
    out, report = d / "evo.lgc", d / "r.json"
    rc = main(["compile", model, "-o", str(out), "--search", "evolutionary", "--budget", "3",
               "--max-drift", "0.05", "--calibrate", str(d / "calib.npz"), "--report", str(report),
               "--target", "gfx803", "--seed", "1", "--population", "8"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Pareto front of" in text and "chosen:" in text and "latency ms" in text
    doc = json.loads(report.read_text())["search"]
    rows = doc["evaluated"]
    assert doc["seed"] == 1 and doc["max_drift"] == 0.05 and "gfx803" in doc["latency"]
    assert len(rows) >= 8 and rows[0]["policy"] == {}           # the trivial policy comes first
    assert all({"latency_s", "bytes", "drift", "policy", "on_front"} <= set(r) for r in rows)
    # the front flags are the non-dominated rows; the chosen one is the fastest within budget
    objs = np.array([[r["latency_s"], r["bytes"], r["drift"]] for r in rows], float)
    first = set(non_dominated_sort(objs)[0])
    assert {i for i, r in enumerate(rows) if r["on_front"]} == first
    chosen = rows[doc["chosen"]]
    feasible = [r for r in rows if r["drift"] <= 0.05]
    assert chosen["drift"] <= 0.05
    assert chosen["latency_s"] == min(r["latency_s"] for r in feasible)
    # the artifact computes the chosen policy: its drift against onnxruntime's float output
    import lgc
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    xs = x[:2]
    want = sess.run(None, {"x": xs})[0]
    got = lgc.load(str(out)).run({"x": xs})
    got = np.asarray(next(iter(got.values())) if isinstance(got, dict) else got[0])
    assert max_relative_error([want], [got]) <= 0.05 + 1e-4
    assert max_relative_error([want], [got]) == pytest.approx(chosen["drift"], abs=1e-4)


def test_cli_search_measured_on_the_device(cnn, capsys):
    d, model, _ = cnn
    rc = main(["compile", model, "-o", str(d / "m.lgc"), "--search", "evolutionary", "--budget", "2",
               "--max-drift", "0.02", "--calibrate", str(d / "calib.npz")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "measured on" in text and "* " in text


def test_same_seed_same_cli_sequence(cnn, capsys):
    """Budget-bound runs with one seed evaluate the same policies in the same order: the
    shorter run's list is a prefix of the longer one's (cost model: equal objectives too)."""
    d, model, _ = cnn
    seqs = []
    for budget in ("1.5", "3"):
        r = d / f"seq{budget}.json"
        assert main(["compile", model, "-o", str(d / "s.lgc"), "--search", "evolutionary", "--budget", budget,
                     "--max-drift", "0.05", "--calibrate", str(d / "calib.npz"), "--report", str(r),
                     "--target", "gfx803", "--seed", "7"]) == 0
        seqs.append([(json.dumps(e["policy"], sort_keys=True), e["latency_s"], e["drift"])
                     for e in json.loads(r.read_text())["search"]["evaluated"]])
    capsys.readouterr()
    short, long = sorted(seqs, key=len)
    assert len(short) >= 1 and long[:len(short)] == short


@pytest.mark.parametrize("flags, msg", [
    (["--search", "genetic", "--max-drift", "0.1", "--calibrate", "C"], "unknown search"),
    (["--search", "evolutionary", "--budget", "0", "--max-drift", "0.1", "--calibrate", "C"], "--budget 0"),
    (["--search", "evolutionary", "--max-drift", "0.1"], "calibration data"),
    (["--search", "evolutionary", "--calibrate", "C"], "--max-drift"),
    (["--search", "evolutionary", "--max-drift", "0.1", "--calibrate", "C", "--prune", "0.5"], "--prune"),
    (["--search", "evolutionary", "--max-drift", "0.1", "--calibrate", "C", "--population", "1"], "--population"),
])
def test_search_errors_are_one_line(cnn, capsys, flags, msg):
    d, model, _ = cnn
    flags = [str(d / "calib.npz") if f == "C" else f for f in flags]
    assert main(["compile", model, "-o", str(d / "e.lgc"), *flags]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lgc: error:") and "\n" not in err and msg in err


def test_choose_refuses_an_impossible_budget(cnn):
    _, model, x = cnn
    s, _ = search_for(model, x)
    res = s.run(max_evaluations=3, progress=False)
    assert choose(res, 0.0).genome == s.uniform()
    res.evaluated[:] = [p for p in res.evaluated if p.objectives[2] > 0]
    with pytest.raises(Exception, match="no evaluated policy"):
        choose(res, 0.0)


def test_help_names_the_search_flags(capsys):
    with pytest.raises(SystemExit):
        main(["compile", "--help"])
    out = capsys.readouterr().out
    assert "--search KIND" in out and "--population" in out and "--seed" in out


def test_fp16_layers_and_decompose_memo(cnn):
    """The two hooks the search adds to lgc.compress: to_fp16(layers=) halves only the named
    layers' weights; decompose(memo=) reuses factors and gives the same graph."""
    from lgc.compress.decompose import decompose
    from lgc.compress.fp16 import to_fp16
    from lgc.errors import InputError
    _, model, x = cnn
    _, graph = search_for(model, x)
    half = to_fp16(graph, weights=True, activations=False, layers=["fc1"])
    f16 = [n.output.shape for n in half.nodes if n.op == "const" and n.output.dtype.name == "f16"]
    assert f16 == [(32, 1024)]                # fc1's weight (stored transposed), nothing else
    with pytest.raises(InputError, match="weights only"):
        to_fp16(graph, layers=["fc1"])
    memo = {}
    a = decompose(graph, compression=0.5, layers=["conv2", "fc1"], memo=memo)
    assert len(memo) == 2
    b = decompose(graph, compression=0.5, layers=["conv2", "fc1"], memo=memo)
    plain = decompose(graph, compression=0.5, layers=["conv2", "fc1"])
    assert len(memo) == 2
    for g in (b, plain):
        np.testing.assert_array_equal(reference_run(a, {"x": x[:2]})[0], reference_run(g, {"x": x[:2]})[0])



def test_greedy_combination_seed_follows_the_probes(cnn):
    """The seed built from the single-layer probes prunes each layer at its largest level
    whose probe alone kept the drift budget (then steps back until the whole fits)."""
    _, model, x = cnn
    s, _ = search_for(model, x)
    s.max_drift = 0.5
    res = s.run(generations=0, population=2, seed=0, progress=False)
    trivial = s.uniform()
    best = {}
    for i, la in enumerate(s.layers):
        ok = [p for p in range(1, len(PRUNE))
              if s.drifts.get(s.canonical(trivial[:i] + ((p, 0, 0),) + trivial[i + 1:]), 1.0) <= 0.5]
        best[i] = max(ok, default=0)
    first = s.canonical(tuple((best[i], 0, 0) for i in range(len(s.layers))))
    assert first in s.seeded and first in {p.genome for p in res.evaluated}
    assert sum(1 for v in best.values() if v) >= 2                # it combines several layers


class CountingLatency:
    """A stand-in for MeasuredLatency (not deterministic): the graph's node count in us,
    recording which graphs it was asked to time."""
    deterministic = False

    def __init__(self):
        self.timed = 0

    def set_baseline(self, graph, feed, name):
        pass

    def __call__(self, graph, feed):
        self.timed += 1
        return 1e-6 * len(graph.nodes)

    def again(self, graphs, feed):
        return [1e-6 * len(g.nodes) for g in graphs]


def test_measured_search_does_not_time_the_probes(cnn):
    """With measured latency the greedy search's single-layer probes are scored for drift
    only; the policies after them (their greedy combination first) are timed."""
    _, model, x = cnn
    lat = CountingLatency()
    s, _ = search_for(model, x, lat)
    s.max_drift = 0.5
    res = s.run(generations=0, population=2, seed=0, progress=False)
    probes = [p for p in res.evaluated if p.genome in s.probes]
    assert probes and all(p.objectives[0] == np.inf and "not measured" in p.info["latency"] for p in probes)
    assert any("probe" in p.info["latency"] for p in probes)    # within the budget, yet not timed
    timed = [p for p in res.evaluated if np.isfinite(p.objectives[0])]
    assert lat.timed == len(timed) and len(timed) > 2
    chosen = s.choose(res, 0.5)
    assert np.isfinite(chosen.objectives[0]) and chosen.genome not in s.probes


def test_int8_ranges_are_reused_exactly(cnn, monkeypatch):
    """Policies with the same pruning and ranks quantize the same graph: the second one reuses
    the first one's observed ranges (no calibration run) and is the same graph as without."""
    import importlib
    q = importlib.import_module("lgc.compress.quantize")     # the module (the package exports the function)
    _, model, x = cnn
    s, _ = search_for(model, x)
    first = s.canonical(((1, 0, 2), (0, 0, 2), (0, 0, 2), (0, 0, 0)))
    second = s.canonical(((1, 0, 0), (0, 0, 2), (0, 0, 1), (0, 0, 2)))
    fresh, _ = search_for(model, x)
    want = reference_run(fresh.apply(second), {"x": x[:2]})
    s.apply(first)

    def no_calibration(*args, **kwargs):
        raise AssertionError("calibrated again")
    monkeypatch.setattr(q, "_observe", no_calibration)
    got = reference_run(s.apply(second), {"x": x[:2]})
    assert all(np.array_equal(a, b) for a, b in zip(want, got))
    graph = s.apply(s.uniform())
    with pytest.raises(InputError, match="no observed range for layer"):
        q.quantize(graph, s.feeds, "int8", ranges={})
