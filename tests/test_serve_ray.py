"""The same HTTP app in front of Ray actors (lgc serve --address): a local Ray instance shared
by the module, the small model deployed as an artifact with 2 replicas, answers checked
against onnxruntime through tritonclient, readiness following the actors."""
import argparse
import os
import signal
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest

from lgc.serve.app import ServeConfig, make_app
from lgc.serve.server import ThreadedServer
from lgc.serve.testing import drive

from .conftest import make_small_model

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, resources={"lgc_device": 4}, namespace="lgc",
                 include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    import lgc
    d = tmp_path_factory.mktemp("serve_ray")
    make_small_model(d / "small.onnx")
    lgc.compile(d / "small.onnx").save(d / "small.lgc")      # batch dimension fixed at 1
    return d


def _workload(onnx_path, n=40, seed=0):
    sess = ort.InferenceSession(str(onnx_path))
    rng = np.random.default_rng(seed)
    feeds = [{"x": rng.standard_normal((int(rng.integers(1, 4)), 4)).astype(np.float32)} for _ in range(n)]
    return feeds, [dict(zip(["y", "z"], sess.run(None, f))) for f in feeds]


def test_served_from_ray_replicas_matches_onnxruntime(local_ray, artifact):
    from lgc.cluster.deploy import deploy
    from lgc.cluster.backend import RayBackend
    dep = deploy(artifact / "small.lgc", "auto", name="serve-rep", replicas=2, detached=False)
    backend = RayBackend(dep, max_batch_size=4, owns_deployment=True)
    assert backend.max_concurrency == 2 and backend.inputs[0].shape == (-1, 4)
    feeds, expected = _workload(artifact / "small.onnx")
    app = make_app(backend, ServeConfig(max_wait_ms=1))
    with ThreadedServer(app) as srv:
        counts = drive(srv.url, "serve-rep", feeds, expected, concurrency=8)
        assert counts == {"correct": 40, "wrong": 0, "errors": {}, "lost": 0, "error_messages": []}
        import httpx
        assert httpx.get(f"http://{srv.url}/v2/health/ready").status_code == 200
        dep.shutdown()                                  # every actor gone, no restart
        deadline = time.monotonic() + 30
        while httpx.get(f"http://{srv.url}/v2/health/ready").status_code != 503:
            assert time.monotonic() < deadline, "readiness did not follow the actors"
            time.sleep(0.2)
        r = httpx.post(f"http://{srv.url}/v2/models/serve-rep/infer",
                       json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
        assert r.status_code == 503 and "not ready" in r.json()["error"]
        text = httpx.get(f"http://{srv.url}/metrics").text
        assert 'lgc_serve_requests_total{model="serve-rep",outcome="success"} 40.0' in text


def test_cli_address_path_deploys_for_the_server(local_ray, artifact):
    """What `lgc serve small.lgc --address auto --name cli-dep` builds, minus the socket."""
    from lgc.tools.serve_cli import make_backend
    args = argparse.Namespace(address="auto", model=str(artifact / "small.lgc"), name="cli-dep",
                              max_batch_size=2, model_version="1", device=None, no_warmup=False,
                                  trusted_keys=None)
    backend = make_backend(args)
    try:
        assert backend.name == "cli-dep" and backend.ready()
        feeds, expected = _workload(artifact / "small.onnx", n=6, seed=1)
        for f, e in zip(feeds, expected):
            if f["x"].shape[0] > 2:
                f = {"x": f["x"][:2]}
                e = {k: v[:2] for k, v in e.items()}
            got = backend.infer(f)
            np.testing.assert_allclose(got["z"], e["z"], rtol=1e-5, atol=1e-6)
    finally:
        backend.close()                 # deployed for this server: its actors go with it


@pytest.mark.slow
def test_killing_actors_under_load(local_ray, artifact, tmp_path):
    """2 stages x 2 replicas behind the server. Killing one stage actor's process under load:
    every request answered correctly (retried on the live replica), the actor comes back.
    Killing both replicas of a stage: readiness says so, requests meanwhile get a clean
    answer or a clean error, never a wrong one, and readiness returns."""
    import httpx

    from lgc.cluster.backend import RayBackend
    from lgc.cluster.deploy import deploy
    dep = deploy(artifact / "small.onnx", "auto", stages=2, replicas=2, name="serve-fault",
                 detached=False, out_dir=str(tmp_path / "stages"))
    backend = RayBackend(dep, max_batch_size=4, owns_deployment=True)
    feeds, expected = _workload(artifact / "small.onnx", n=200, seed=2)
    with ThreadedServer(make_app(backend, ServeConfig(timeout_s=30))) as srv:
        pids = [[a["pid"] for a in row] for row in dep.health()]
        victim = pids[1][0]
        counts = {}
        load = threading.Thread(target=lambda: counts.update(
            drive(srv.url, "serve-fault", feeds, expected, concurrency=8)))
        t0 = time.monotonic()
        load.start()
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        load.join()
        print(f"one replica killed under load: {counts} in {time.monotonic() - t0:.1f} s")
        assert counts["wrong"] == 0 and counts["lost"] == 0
        assert counts["correct"] + sum(counts["errors"].values()) == len(feeds)
        assert set(counts["errors"]) <= {500, 503, 504}  # a failure is a clean server error
        assert counts["correct"] >= len(feeds) // 2      # (all 200 in our runs: retries on the live replica)
        deadline = time.monotonic() + 60
        while True:                                     # the killed actor comes back
            now = [[a and a["pid"] for a in row] for row in dep.health()]
            if all(all(row) for row in now):
                break
            assert time.monotonic() < deadline, f"actor did not come back: {now}"
            time.sleep(0.3)
        assert now[1][0] != victim

        seen, stop = [], threading.Event()

        def probe():                                    # readiness, every 50 ms
            while not stop.is_set():
                seen.append(httpx.get(f"http://{srv.url}/v2/health/ready").status_code)
                time.sleep(0.05)
        prober = threading.Thread(target=probe)
        prober.start()
        t0 = time.monotonic()
        for pid in now[0]:                              # a whole stage down
            os.kill(pid, signal.SIGKILL)
        during = drive(srv.url, "serve-fault", feeds[:24], expected[:24], concurrency=8)
        print(f"whole stage killed: {during} in {time.monotonic() - t0:.1f} s")
        assert during["wrong"] == 0 and during["lost"] == 0
        assert during["correct"] + sum(during["errors"].values()) == 24
        assert set(during["errors"]) <= {500, 503, 504}
        deadline = time.monotonic() + 60
        while not (503 in seen and seen[-1] == 200):
            assert time.monotonic() < deadline, f"readiness: {seen[-5:]}"
            time.sleep(0.1)
        stop.set()
        prober.join()
        print(f"readiness answers from the kill: {seen.count(200)} x 200, {seen.count(503)} x 503")
        after = drive(srv.url, "serve-fault", feeds[:16], expected[:16], concurrency=8)
        assert after["correct"] == 16
