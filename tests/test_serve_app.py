"""The KServe v2 app (lgc.serve.app): routes, errors, batching, queue, timeouts, metrics, auth.

Server logic is tested over a NumPy backend whose calls can be held back (deterministic
batching/queue/timeout tests); the compiled model over lgc's LocalBackend is checked against
onnxruntime.
"""
import asyncio
import json
import threading

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from starlette.testclient import TestClient

from lgc.errors import ArtifactError, InputError
from lgc.serve.app import ServeConfig, make_app
from lgc.serve.backend import Backend, LocalBackend, TensorSpec

from .conftest import make_small_model


class GatedBackend:
    """y = 2 x + 1 row by row; `gate` holds calls back; records each call's rows."""

    max_concurrency = 1

    def __init__(self, name="m", max_batch_size=8, width=3, fail=None):
        self.name, self.version = name, "1"
        self.inputs = [TensorSpec("x", "FP32", (-1, width))]
        self.outputs = [TensorSpec("y", "FP32", (-1, width))]
        self.max_batch_size = max_batch_size
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.calls: list[int] = []
        self.fail = fail
        self.is_ready = True

    def infer(self, feeds):
        self.entered.set()
        self.gate.wait(10)
        self.calls.append(feeds["x"].shape[0])
        if self.fail:
            raise self.fail
        return {"y": feeds["x"] * 2 + 1}

    def ready(self):
        return self.is_ready

    def close(self):
        pass


def _req(x, name="x", datatype="FP32"):
    x = np.asarray(x)
    return {"inputs": [{"name": name, "datatype": datatype, "shape": list(x.shape),
                        "data": x.reshape(-1).tolist()}]}


def _y(resp):
    out = resp.json()["outputs"][0]
    return np.array(out["data"], np.float32).reshape(out["shape"])


GOOD = _req(np.ones((1, 3), np.float32))


def test_protocol_routes():
    b = GatedBackend()
    assert isinstance(b, Backend)
    with TestClient(make_app(b)) as c:
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").status_code == 200
        meta = c.get("/v2").json()
        assert meta["name"] == "lgc" and "binary_tensor_data" in meta["extensions"]
        assert c.get("/v2/models/m").json()["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
        assert c.get("/v2/models/m/versions/1/ready").json()["ready"] is True
        assert c.get("/v2/models/m/versions/2").status_code == 404
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        r = c.post("/v2/models/m/versions/1/infer", json=dict(_req(x), id="abc"))
        assert r.status_code == 200 and r.json()["id"] == "abc"
        np.testing.assert_array_equal(_y(r), x * 2 + 1)
        b.is_ready = False
        assert c.get("/v2/health/ready").status_code == 503
        b.ready = lambda: 1 / 0                  # a failing probe reads as not ready
        assert c.get("/v2/health/ready").status_code == 503
        del b.ready
        assert c.get("/v2/models/m/ready").status_code == 503
        r = c.post("/v2/models/m/infer", json=GOOD)
        assert r.status_code == 503 and "not ready" in r.json()["error"]
        assert c.get("/v2/health/live").status_code == 200


BAD = [
    ("post", "/v2/models/nope/infer", {"json": GOOD}, 404, "unknown model 'nope'"),
    ("get", "/v2/models/nope", {}, 404, "unknown model"),
    ("get", "/v2/nothing", {}, 404, "no route"),
    ("get", "/v2/models/m/infer", {}, 405, "not allowed"),
    ("post", "/v2/models/m/infer", {"content": b"{oops"}, 400, "malformed JSON"),
    ("post", "/v2/models/m/infer", {"json": _req(np.ones((1, 3)), name="q")}, 400, "unknown input 'q'"),
    ("post", "/v2/models/m/infer", {"json": _req(np.ones((1, 4), np.float32))}, 400, "shape [1, 4]"),
    ("post", "/v2/models/m/infer", {"json": _req(np.ones((1, 3), np.int64), datatype="INT64")}, 400,
     "datatype 'INT64'"),
    ("post", "/v2/models/m/infer", {"json": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3],
                                                         "data": [1, 2]}]}}, 400, "has 2 elements"),
    ("post", "/v2/models/m/infer", {"json": _req(np.ones((9, 3), np.float32))}, 400, "max_batch_size 8"),
    ("post", "/v2/models/m/infer", {"content": b"{}", "headers": {"inference-header-content-length": "7"}},
     400, "outside the body"),
    ("post", "/v2/models/m/infer", {"content": b"x" * 5000}, 413, "over the limit of 4096 bytes"),
    ("post", "/v2/models/m/infer", {"content": iter([b"x" * 3000, b"x" * 3000])}, 413, "over the limit"),
    ("post", "/v2/models/m/infer", {"content": b"{}", "headers": {"content-encoding": "br"}}, 415,
     "Content-Encoding"),
    ("post", "/v2/models/m/infer", {"content": b"{}", "headers": {"content-encoding": "gzip"}}, 400,
     "not valid gzip data"),
    ("post", "/v2/models/m/infer", {"content": __import__("gzip").compress(b" " * 5000),
                                    "headers": {"content-encoding": "gzip"}}, 413, "decompressed"),
]


def test_bad_input_answers_4xx_and_server_keeps_serving():
    with TestClient(make_app(GatedBackend(), ServeConfig(max_body_bytes=4096))) as c:
        for method, path, kw, status, message in BAD:
            r = getattr(c, method)(path, **kw)
            assert r.status_code == status, (path, kw, r.text)
            assert message in r.json()["error"], r.json()
            good = c.post("/v2/models/m/infer", json=GOOD)
            assert good.status_code == 200
            np.testing.assert_array_equal(_y(good), np.full((1, 3), 3, np.float32))
        text = c.get("/metrics").text
        assert 'lgc_serve_requests_total{model="m",outcome="success"} 16.0' in text
        assert 'lgc_serve_requests_total{model="m",outcome="bad_request"} 9.0' in text  # incl. 415
        assert 'lgc_serve_requests_total{model="m",outcome="too_large"} 3.0' in text


def test_backend_errors_are_500_or_400_and_serving_continues():
    b = GatedBackend(fail=RuntimeError("device lost"))
    with TestClient(make_app(b)) as c:
        r = c.post("/v2/models/m/infer", json=GOOD)
        assert r.status_code == 500 and "device lost" in r.json()["error"]
        b.fail = InputError("input 'x' is odd")
        r = c.post("/v2/models/m/infer", json=GOOD)
        assert r.status_code == 400 and "is odd" in r.json()["error"]
        b.fail = None
        assert c.post("/v2/models/m/infer", json=GOOD).status_code == 200


def test_bearer_token_guards_all_but_health():
    with TestClient(make_app(GatedBackend(), ServeConfig(token="t0k"))) as c:
        assert c.get("/v2/health/live").status_code == 200
        assert c.get("/v2/health/ready").status_code == 200
        for path in ("/v2", "/v2/models/m", "/v2/models/m/ready", "/metrics"):
            r = c.get(path)
            assert r.status_code == 401 and "bearer token" in r.json()["error"], path
            assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get(path, headers={"Authorization": "Bearer t0k"}).status_code == 200
        assert c.post("/v2/models/m/infer", json=GOOD).status_code == 401
        r = c.post("/v2/models/m/infer", json=GOOD, headers={"Authorization": "Bearer t0k"})
        assert r.status_code == 200


async def _until(cond, what, limit=10.0):
    for _ in range(int(limit / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def _post_all(app, bodies, backend=None, release=True, stagger=0.01):
    """POST bodies in order. With `backend` (gate closed): the first is sent alone and held in
    the backend; the rest are sent once it is there, one by one, and the gate opens (if
    `release`) only when they all wait in the queue or have been answered."""
    transport = httpx.ASGITransport(app=app)
    model = app.state.models["m"]
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as c:
        post = lambda body: asyncio.ensure_future(c.post("/v2/models/m/infer", json=body))  # noqa: E731
        tasks = []
        for i, body in enumerate(bodies):
            tasks.append(post(body))
            if backend is not None and i == 0:
                await _until(lambda: backend.entered.is_set(), "the first call to reach the backend")
            await asyncio.sleep(stagger)
        if backend is not None and release:
            await _until(lambda: model.batcher.depth() + sum(t.done() for t in tasks) >= len(bodies) - 1,
                         "requests to queue")
            backend.gate.set()
        return await asyncio.gather(*tasks)


def test_dynamic_batching_merges_queued_requests_and_splits_answers():
    b = GatedBackend(max_batch_size=8)
    app = make_app(b, ServeConfig(max_wait_ms=0))
    b.gate.clear()
    xs = [np.full((n, 3), i, np.float32) for i, n in enumerate([1, 2, 1, 3, 4])]
    # The first request's batch holds the backend; the rest queue and then go as batches of
    # at most 8 rows: [2, 1, 3] = 6 rows, then [4] (6 + 4 > 8).
    rs = asyncio.run(_post_all(app, [_req(x) for x in xs], b))
    for x, r in zip(xs, rs):
        assert r.status_code == 200
        np.testing.assert_array_equal(_y(r), x * 2 + 1)
    assert b.calls == [1, 6, 4]
    text = asyncio.run(_get_metrics(app))
    assert 'lgc_serve_batch_size_count{model="m"} 3.0' in text
    assert 'lgc_serve_batch_size_sum{model="m"} 11.0' in text


def test_requests_with_other_shapes_are_not_merged():
    b = GatedBackend(max_batch_size=8, width=-1)
    app = make_app(b, ServeConfig(max_wait_ms=0))
    b.gate.clear()
    xs = [np.ones((1, 2), np.float32), np.ones((1, 3), np.float32), np.ones((2, 5), np.float32),
          np.ones((2, 3), np.float32)]
    rs = asyncio.run(_post_all(app, [_req(x) for x in xs], b))
    for x, r in zip(xs, rs):
        np.testing.assert_array_equal(_y(r), x * 2 + 1)
    assert b.calls == [1, 3, 2]      # the two width-3 requests went together


def test_max_wait_gathers_requests_arriving_soon_after():
    b = GatedBackend(max_batch_size=8)
    app = make_app(b, ServeConfig(max_wait_ms=1500))
    rs = asyncio.run(_post_all(app, [GOOD] * 3))
    assert all(r.status_code == 200 for r in rs)
    assert b.calls == [3]


def test_full_queue_answers_503_and_timeouts_504():
    b = GatedBackend(max_batch_size=1)
    app = make_app(b, ServeConfig(max_wait_ms=0, queue_size=2, timeout_s=0.5))
    b.gate.clear()
    # 1 running (held), 2 queued, the 4th refused at once; all three admitted time out (0.5 s)
    rs = asyncio.run(_post_all(app, [GOOD] * 4, b, release=False))
    b.gate.set()
    codes = [r.status_code for r in rs]
    assert codes == [504, 504, 504, 503], codes
    assert "queue is full" in rs[3].json()["error"] and rs[3].headers["retry-after"] == "1"
    assert "no answer within 0.5 s" in rs[0].json()["error"]
    # after the gate opens, the queued requests whose callers left are dropped, not run
    rs = asyncio.run(_post_all(app, [GOOD]))
    assert rs[0].status_code == 200
    assert b.calls == [1, 1]
    text = asyncio.run(_get_metrics(app))
    assert 'outcome="timeout"} 3.0' in text and 'outcome="queue_full"} 1.0' in text
    assert 'lgc_serve_queue_depth{model="m"} 0.0' in text


def test_backends_with_concurrency_overlap_batches():
    """max_concurrency 2 (a Ray backend with replicas): two batches run at once."""
    b = GatedBackend(max_batch_size=1)
    b.max_concurrency = 2
    inside = []
    both = threading.Barrier(2, timeout=10)

    def infer(feeds):
        inside.append(1)
        both.wait()                  # passes only when two calls are inside together
        return {"y": feeds["x"] * 2 + 1}
    b.infer = infer
    app = make_app(b, ServeConfig(max_wait_ms=0))
    rs = asyncio.run(_post_all(app, [GOOD] * 4))
    assert [r.status_code for r in rs] == [200] * 4 and len(inside) == 4


def test_broken_backends_are_refused_by_name():
    from lgc.errors import ModelError
    b = GatedBackend()
    b.outputs = [TensorSpec("y", "FP31", (-1, 3))]
    with pytest.raises(ModelError, match="datatype 'FP31'"):
        make_app(b)
    b = GatedBackend()
    b.inputs = [TensorSpec("x", "FP32", (1, 3))]
    with pytest.raises(ModelError, match="axis 0 must be -1"):
        make_app(b)
    with pytest.raises(ValueError, match="two backends are named 'm'"):
        make_app([GatedBackend(), GatedBackend()])


async def _get_metrics(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        return (await c.get("/metrics")).text


# -- the compiled model ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    p = tmp_path_factory.mktemp("serve") / "small.onnx"
    make_small_model(p)
    return p


def test_local_backend_matches_onnxruntime_across_batch_sizes(small_onnx):
    sess = ort.InferenceSession(str(small_onnx))
    backend = LocalBackend(small_onnx, max_batch_size=4)
    assert backend.max_batch_size == 4 and backend.inputs[0].shape == (-1, 4)
    rng = np.random.default_rng(3)
    with TestClient(make_app(backend, ServeConfig(max_wait_ms=0))) as c:
        for n in (1, 3, 4):          # 3 is padded to the bucket of 4 and trimmed back
            x = rng.standard_normal((n, 4)).astype(np.float32)
            r = c.post("/v2/models/small/infer", json=_req(x))
            assert r.status_code == 200, r.text
            got = {o["name"]: np.array(o["data"], np.float32).reshape(o["shape"]) for o in r.json()["outputs"]}
            want = dict(zip(["y", "z"], sess.run(None, {"x": x})))
            for k in want:
                np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    assert not backend.ready()       # the app closed it on shutdown


def test_artifact_backend_batches_in_chunks_and_checks_checksums(small_onnx, tmp_path):
    import lgc
    path = tmp_path / "small.lgc"
    lgc.compile(small_onnx).save(path)             # batch dimension fixed at 1
    backend = LocalBackend(path, max_batch_size=4)
    assert backend.max_batch_size == 4 and backend._chunk == 1
    x = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    got = backend.infer({"x": x})
    want = ort.InferenceSession(str(small_onnx)).run(None, {"x": x})
    np.testing.assert_allclose(got["z"], want[1], rtol=1e-5, atol=1e-6)
    assert LocalBackend(path, batching=False).inputs[0].shape == (1, 4)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.lgc"
    bad.write_bytes(bytes(data))
    with pytest.raises(ArtifactError):
        LocalBackend(bad)


def test_onnx_with_fixed_batch_one_and_undeclared_output_shapes(tmp_path):
    import onnx
    model = make_small_model(batch=1)
    for o in model.graph.output:              # outputs without shapes: filled by shape inference
        o.type.tensor_type.ClearField("shape")
    path = tmp_path / "fixed.onnx"
    onnx.save(model, path)
    backend = LocalBackend(path, max_batch_size=3)
    assert backend._chunk == 1 and backend.outputs[1].shape == (-1, 4)
    x = np.random.default_rng(5).standard_normal((3, 4)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x[:1]})[1]
    got = backend.infer({"x": x})["z"]
    np.testing.assert_allclose(got[:1], want, rtol=1e-5, atol=1e-6)
    for k in (1, 2):                           # each row run on its own
        np.testing.assert_allclose(got[k:k + 1], ort.InferenceSession(str(path)).run(None, {"x": x[k:k + 1]})[1],
                                   rtol=1e-5, atol=1e-6)


def test_metadata_json_is_what_tritonclient_reads(small_onnx):
    backend = LocalBackend(small_onnx, max_batch_size=2)
    with TestClient(make_app(backend)) as c:
        meta = c.get("/v2/models/small").json()
        assert meta["outputs"][1] == {"name": "z", "datatype": "FP32", "shape": [-1, 4]}
        cfg = c.get("/v2/models/small/config").json()
        assert cfg["max_batch_size"] == 2
        json.dumps(meta)
