"""Deployment on Ray (lgc.cluster): pipelines of stage actors against single-process runs and
a NumPy reference, faults under load (an actor killed mid-traffic), errors, the serving front.

One local Ray instance for the module (`ray.init(num_cpus=2, resources={"lgc_device": 4})`):
starting Ray costs ~5-10 s, every test shares it.
"""
import os
import signal
import threading
import time
import zipfile

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ray = pytest.importorskip("ray")

import lgc  # noqa: E402
from lgc.cluster.connect import ClusterError  # noqa: E402
from lgc.cluster.deployment import Deployment  # noqa: E402
from lgc.errors import ArtifactError, InputError  # noqa: E402

D_IN, D_H, D_OUT, BATCH = 16, 32, 8, 2


def mlp_weights(seed=0):
    rng = np.random.default_rng(seed)
    return {"w1": rng.standard_normal((D_IN, D_H)).astype(np.float32) * 0.3,
            "w2": rng.standard_normal((D_H, D_OUT)).astype(np.float32) * 0.3,
            "ws": rng.standard_normal((D_IN, D_OUT)).astype(np.float32) * 0.3}


def numpy_mlp(x, w):
    """The independent reference: y = relu(x w1) w2 + x ws (a skip from the input)."""
    return np.maximum(x @ w["w1"], 0) @ w["w2"] + x @ w["ws"]


def _onnx(nodes, ins, outs, inits):
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    g = helper.make_graph(nodes, "mlp", [vi(*i) for i in ins], [vi(*o) for o in outs],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def mlp_artifacts(folder, w):
    """full.lgc and a hand-cut pipeline: stage0 x -> h; stage1 (h, x) -> y, so stage 1 gets
    one tensor from stage 0 and one straight from the request."""
    n1 = [helper.make_node("MatMul", ["x", "w1"], ["h0"]), helper.make_node("Relu", ["h0"], ["h"])]
    n2 = [helper.make_node("MatMul", ["h", "w2"], ["a"]), helper.make_node("MatMul", ["x", "ws"], ["s"]),
          helper.make_node("Add", ["a", "s"], ["y"])]
    X, H, Y = ("x", [BATCH, D_IN]), ("h", [BATCH, D_H]), ("y", [BATCH, D_OUT])
    models = {"full": _onnx(n1 + n2, [X], [Y], w),
              "s0": _onnx(n1, [X], [H], {"w1": w["w1"]}),
              "s1": _onnx(n2, [H, X], [Y], {"w2": w["w2"], "ws": w["ws"]})}
    paths = {}
    for name, m in models.items():
        onnx.save(m, str(folder / f"{name}.onnx"))
        paths[name] = folder / f"{name}.lgc"
        lgc.compile(str(folder / f"{name}.onnx")).save(paths[name])
    return paths


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, resources={"lgc_device": 4}, include_dashboard=False, log_to_driver=False,
             object_store_memory=400 * 2**20, namespace="lgc")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    w = mlp_weights()
    return w, mlp_artifacts(tmp_path_factory.mktemp("mlp"), w)


def requests(n, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((BATCH, D_IN)).astype(np.float32) for _ in range(n)]


def test_two_stages_two_replicas_match_single_process_and_numpy(ray_local, mlp):
    w, paths = mlp
    full = lgc.load(paths["full"])
    dep = Deployment.create([paths["s0"], paths["s1"]], name="mlp22", replicas=2, detached=False)
    try:
        assert [len(rs) for rs in dep.replicas] == [2, 2]
        assert [s["name"] for s in dep.inputs] == ["x"] and dep.output_names == ["y"]
        for x in requests(12):
            y = dep.infer({"x": x})["y"]
            np.testing.assert_array_equal(y, full.run({"x": x})["y"])   # same kernels: same bits
            np.testing.assert_allclose(y, numpy_mlp(x, w), rtol=1e-5, atol=1e-5)
        health = dep.health()
        assert dep.ready() and all(a is not None for row in health for a in row)
        assert sum(a["served"] for row in health for a in row) == 24    # 12 requests x 2 stages
        assert all(a["served"] > 0 for row in health for a in row)      # both replicas used
        slots = sorted(a["slot"] for row in health for a in row)
        assert slots == [0, 1, 2, 3]                                    # one device unit each
    finally:
        dep.shutdown()


def test_stages_from_the_shard_splitter(ray_local, mlp, tmp_path):
    from lgc.distributed.graphs import load_graph
    from lgc.distributed.shard import compile_stages
    from lgc.cluster.deploy import stage_artifacts
    w, paths = mlp
    graph = load_graph(str(paths["full"].with_suffix(".onnx")))
    compile_stages(graph, [2], tmp_path / "st", model="full.onnx")
    stage_paths, _ = stage_artifacts(tmp_path / "st")
    dep = Deployment.create(stage_paths, name="shard2", replicas=1, detached=False)
    try:
        assert len(dep.stages) == 2
        for x in requests(4, seed=5):
            np.testing.assert_allclose(dep.infer({"x": x})["y"], numpy_mlp(x, w), rtol=1e-5, atol=1e-5)
    finally:
        dep.shutdown()


def _load(dep, xs, w, threads=4):
    """Send every request from `threads` threads; outcome per request: 'ok', 'wrong' or the
    error's class name. Nothing may be missing at the end."""
    outcome = [None] * len(xs)
    it = iter(range(len(xs)))
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            try:
                y = dep.infer({"x": xs[i]}, timeout=60)["y"]
                outcome[i] = "ok" if np.allclose(y, numpy_mlp(xs[i], w), rtol=1e-5, atol=1e-5) else "wrong"
            except Exception as e:  # noqa: BLE001 - every outcome is counted
                outcome[i] = type(e).__name__
    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    return ts, outcome


def _watch(dep, stop, samples, interval=0.05):
    while not stop.is_set():
        samples.append((dep.ready(max_age=0), [sum(a is not None for a in row) for row in dep.health()]))
        time.sleep(interval)


def _wait_back(handle, old_pid, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            p = ray.get(handle.ping.remote(), timeout=5)
            if p["pid"] != old_pid:
                return p
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError("the killed actor did not come back")


@pytest.mark.parametrize("replicas,kill,retries", [(2, "ray.kill", 3), (1, "SIGKILL", 3), (1, "SIGKILL", 0)])
def test_killing_a_stage_actor_under_load(ray_local, mlp, replicas, kill, retries):
    """Every request gets a correct answer or a clean error, none is lost or wrong; readiness
    shows the outage (1 replica) or a stage running on its survivor (2); the actor returns.
    With retries=0 the requests caught by the kill must fail, cleanly."""
    w, paths = mlp
    dep = Deployment.create([paths["s0"], paths["s1"]], name=f"fault{replicas}{kill[:3]}{retries}",
                            replicas=replicas, detached=False, retries=retries)
    dep.ping_timeout = 0.3          # a restart (new process, import, load) takes longer than this
    try:
        xs = requests(100, seed=replicas)
        victim = dep.replicas[1][0]
        old = ray.get(victim.handle.ping.remote())
        stop, samples = threading.Event(), []
        watcher = threading.Thread(target=_watch, args=(dep, stop, samples))
        watcher.start()
        ts, outcome = _load(dep, xs, w)
        while sum(o is not None for o in outcome) < 20:
            time.sleep(0.01)
        if kill == "ray.kill":
            ray.kill(victim.handle, no_restart=False)
        else:
            os.kill(old["pid"], signal.SIGKILL)
        for t in ts:
            t.join(timeout=300)
        back = _wait_back(victim.handle, old["pid"])
        time.sleep(0.3)
        stop.set()
        watcher.join()
        counts = {k: outcome.count(k) for k in set(outcome)}
        print(f"\n{replicas} replica(s), {kill}, {retries} retries: {counts}, deployment counts {dep.counts}, "
              f"ready samples {sum(s[0] for s in samples)}/{len(samples)}")
        assert None not in outcome                                    # none lost
        assert counts.get("wrong", 0) == 0
        assert set(counts) <= {"ok", "ClusterError"}                  # errors are clean
        assert counts.get("ok", 0) >= len(xs) * 0.5
        if retries == 0:
            assert counts.get("ClusterError", 0) >= 1                 # the in-flight ones
        assert back["restarted"] and back["pid"] != old["pid"]
        assert any(alive[1] < replicas for _, alive in samples)      # the outage was seen
        if replicas == 1:
            assert not all(r for r, _ in samples)                     # not ready while down
        else:
            assert all(r for r, _ in samples)                          # the survivor kept it ready
        assert dep.ready(max_age=0)
        x = xs[0]
        np.testing.assert_allclose(dep.infer({"x": x})["y"], numpy_mlp(x, w), rtol=1e-5, atol=1e-5)
        # retries start at the dead actor's stage: stage 0 ran once per request, no more
        assert sum(a["served"] for a in dep.health(timeout=5)[0]) == len(xs) + 1
    finally:
        dep.shutdown()


def test_errors_are_clean_and_leave_nothing_behind(ray_local, mlp, tmp_path):
    w, paths = mlp
    with pytest.raises(ClusterError, match="need 5 lgc_device units; the cluster has 4"):
        Deployment.create([paths["s0"]], name="toomany", replicas=5, detached=False)
    bad = tmp_path / "bad.lgc"
    with zipfile.ZipFile(paths["s0"]) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["weights.bin"] = members["weights.bin"][:-4] + b"\0\0\0\1"     # tampered weights
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(ArtifactError, match="checksum mismatch in weights.bin"):
        Deployment.create([bad], name="bad", detached=False)
    onnx.save(_onnx([helper.make_node("Relu", ["h"], ["y"])], [("h", [BATCH, D_IN])],
                    [("y", [BATCH, D_IN])], {}), str(tmp_path / "narrow.onnx"))
    lgc.compile(str(tmp_path / "narrow.onnx")).save(tmp_path / "narrow.lgc")
    with pytest.raises(ClusterError, match=r"stage 1 expects 'h' as f32\[2, 16\], but it arrives as f32\[2, 32\]"):
        Deployment.create([paths["s0"], tmp_path / "narrow.lgc"], name="miswired", detached=False)
    dep = Deployment.create([paths["s0"]], name="one", detached=False)
    try:
        with pytest.raises(ClusterError, match="already running"):
            Deployment.create([paths["s0"]], name="one", detached=False)
        with pytest.raises(InputError, match="shape"):
            dep.infer({"x": np.zeros((3, D_IN), np.float32)})
        with pytest.raises(InputError, match="missing input 'x'"):
            dep.infer({})
        with pytest.raises(InputError, match=r"unknown input 'h' \(inputs are: x\)"):
            dep.infer({"x": np.zeros((BATCH, D_IN), np.float32), "h": np.zeros(1, np.float32)})
        assert dep.ready()                                            # bad requests hurt nothing
    finally:
        dep.shutdown()
    deadline = time.monotonic() + 15             # units are reported free a little later
    while ray.available_resources().get("lgc_device") != 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("lgc_device") == 4


def test_detached_deployment_is_found_by_name(ray_local, mlp):
    """What `lgc deploy` leaves running, `lgc serve --address` and `lgc cluster status` find."""
    from lgc.tools.cluster_cli import status_text
    from lgc.cluster.deployment import list_deployments
    w, paths = mlp
    made = Deployment.create([paths["s0"], paths["s1"]], name="kept", replicas=[1, 2], detached=True)
    try:
        assert "kept" in list_deployments(ray)
        dep = Deployment.attach("kept")
        assert [len(rs) for rs in dep.replicas] == [1, 2]
        x = requests(1)[0]
        np.testing.assert_allclose(dep.infer({"x": x})["y"], numpy_mlp(x, w), rtol=1e-5, atol=1e-5)
        text = status_text(ray, [dep])
        assert "deployment 'kept': 2 stage(s), ready: yes" in text
        assert text.count(" ok ") == 3 and "lgc_device: 4 advertised, 1 free" in text
        with pytest.raises(ClusterError, match="no deployment named 'nope'"):
            Deployment.attach("nope")
    finally:
        made.shutdown()
    assert "kept" not in list_deployments(ray)


def test_cli_deploy_status_down(ray_local, mlp, capsys):
    """The commands on the cluster this process has joined (a real head is the same path)."""
    from lgc.tools.cli import main
    w, paths = mlp
    assert main(["deploy", str(paths["s0"]), "--replicas", "2", "--name", "clidep", "--max-restarts", "2"]) == 0
    out = capsys.readouterr().out
    assert "deployed 'clidep': 1 stage(s), replicas 2, 2 lgc_device unit(s); ready: True" in out
    assert main(["cluster", "status", "--name", "clidep"]) == 0
    out = capsys.readouterr().out
    assert "deployment 'clidep': 1 stage(s), ready: yes" in out and out.count(" ok ") == 2
    assert main(["cluster", "down", "clidep"]) == 0
    assert "removed 'clidep' (2 actor(s))" in capsys.readouterr().out
    assert main(["cluster", "down", "clidep"]) == 1
    assert "no deployment named 'clidep'" in capsys.readouterr().err


def test_served_through_the_http_front(ray_local, mlp):
    """RayBackend behind lgc.serve's app: tritonclient requests, batched into chunks that go
    through the pipeline concurrently, all correct."""
    pytest.importorskip("tritonclient.http")
    from lgc.cluster.backend import RayBackend
    from lgc.serve.app import make_app
    from lgc.serve.server import ThreadedServer
    from lgc.serve.testing import drive
    w, paths = mlp
    dep = Deployment.create([paths["s0"], paths["s1"]], name="served", replicas=1, detached=False)
    backend = RayBackend(dep, max_batch_size=6, owns_deployment=True)
    assert backend.max_batch_size == 6 and backend.inputs[0].shape == (-1, D_IN)
    xs = [np.random.default_rng(i).standard_normal((1 + i % 5, D_IN)).astype(np.float32) for i in range(24)]
    with ThreadedServer(make_app([backend])) as srv:
        counts = drive(srv.url, "served", [{"x": x} for x in xs], [{"y": numpy_mlp(x, w)} for x in xs],
                       concurrency=6)
    assert counts["correct"] == len(xs), counts
    deadline = time.monotonic() + 10          # the server's shutdown closed the backend,
    while time.monotonic() < deadline:        # which owned (and so removed) the deployment
        if "served.registry" not in [a["name"] for a in ray.util.list_named_actors(True)]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("closing the backend left its actors running")


@pytest.mark.slow
def test_resnet50_two_stages_two_replicas_match_a_single_process(ray_local, tmp_path):
    """ResNet-50 (onnx's light model with seeded random weights and its logits exposed: the
    shipped weights are all 0.02, which would hide a stage boundary that passes zeros) cut in
    two where the planner balances it, 2 replicas per stage: the same outputs as the whole
    model run in this process, within tolerance of onnxruntime's (output_tolerances), different
    per input."""
    from lgc.cluster.deploy import balanced_cuts
    from lgc.distributed.graphs import load_graph
    from lgc.distributed.shard import compile_stages
    from lgc.testing import (MODEL_TOLERANCE, onnxruntime_session, output_tolerances, random_light_model,
                             scaled_error)
    model = random_light_model("resnet50")
    graph = load_graph(model)
    stage_paths = compile_stages(graph, balanced_cuts(graph, 2), tmp_path / "st", model="resnet50.onnx")
    single = lgc.compile(graph)
    (name,) = single.input_names
    xs = [np.random.default_rng(i).standard_normal((1, 3, 224, 224)).astype(np.float32) for i in range(4)]
    sess = onnxruntime_session(model)
    outputs = [o.name for o in sess.get_outputs()]
    tolerance = output_tolerances(model)
    dep = Deployment.create(stage_paths, name="resnet50", replicas=2, detached=False)
    try:
        assert sorted(dep.output_names) == sorted(outputs)
        logits = []
        for x in xs:
            got = dep.infer({name: x}, timeout=300)
            want = single.run({name: x})
            ref = dict(zip(outputs, sess.run(None, {name: x})))
            for out in outputs:
                assert scaled_error(got[out], want[out]) <= 1e-6, out
                assert scaled_error(got[out], ref[out]) <= tolerance[out], out
            logits.append(got[outputs[-1]])
        assert min(scaled_error(a, logits[0]) for a in logits[1:]) > 10 * MODEL_TOLERANCE
        assert all(a["served"] > 0 for row in dep.health(timeout=10) for a in row)
    finally:
        dep.shutdown()
