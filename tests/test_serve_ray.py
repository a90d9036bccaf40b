"""The same HTTP app in front of Ray actors (lgc serve --address): a local Ray instance shared
by the module, the small model deployed as an artifact with 2 replicas, answers checked
against onnxruntime through tritonclient, readiness following the actors."""
import argparse
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
        ray.init(num_cpus=2, resources={"lgc_device": 2}, namespace="lgc",
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
    from lgc.serve.cli import make_backend
    args = argparse.Namespace(address="auto", model=str(artifact / "small.lgc"), name="cli-dep",
                              max_batch_size=2, model_version="1", device=None, no_warmup=False)
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
