"""A real uvicorn server driven by tritonclient.http (unchanged), and `lgc serve` end to end.

Outputs are checked against onnxruntime on the same inputs.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from lgc.serve.app import ServeConfig, make_app
from lgc.serve.backend import LocalBackend
from lgc.serve.server import ThreadedServer, free_port

from .conftest import make_small_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from random_weights import light_model_path, randomize  # noqa: E402

TOKEN = {"Authorization": "Bearer s3cret"}


def auth():
    """A fresh headers dict per call: tritonclient writes Inference-Header-Content-Length into
    the dict it is given, which would go stale on the next call."""
    return dict(TOKEN)


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    p = tmp_path_factory.mktemp("serve") / "small.onnx"
    make_small_model(p)
    return p


@pytest.fixture(scope="module")
def server(small_onnx):
    backend = LocalBackend(small_onnx, max_batch_size=8)
    with ThreadedServer(make_app(backend, ServeConfig(token="s3cret", max_wait_ms=5))) as srv:
        yield srv


def _input(x, binary):
    i = httpclient.InferInput("x", list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=binary)
    return i


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("binary_out", [False, True])
def test_tritonclient_json_and_binary(server, small_onnx, binary_in, binary_out):
    c = httpclient.InferenceServerClient(server.url)
    assert c.is_server_live() and c.is_server_ready()     # health checks need no token
    assert c.is_model_ready("small", headers=auth())
    meta = c.get_model_metadata("small", headers=auth())
    assert [o["name"] for o in meta["outputs"]] == ["y", "z"]
    x = np.random.default_rng(int(binary_in) * 2 + int(binary_out)).standard_normal((3, 4)).astype(np.float32)
    outs = [httpclient.InferRequestedOutput("z", binary_data=binary_out),
            httpclient.InferRequestedOutput("y", binary_data=not binary_out)]
    r = c.infer("small", [_input(x, binary_in)], outputs=outs, request_id="q1", headers=auth(),
                request_compression_algorithm="gzip" if binary_in and binary_out else None)
    want = dict(zip(["y", "z"], ort.InferenceSession(str(small_onnx)).run(None, {"x": x})))
    for k in ("y", "z"):
        np.testing.assert_allclose(r.as_numpy(k), want[k], rtol=1e-5, atol=1e-6)
    assert r.get_response()["id"] == "q1"
    z = r.get_output("z")
    assert ("parameters" in z) == binary_out and ("data" in z) == (not binary_out)


def test_tritonclient_errors_and_concurrent_requests(server, small_onnx):
    c = httpclient.InferenceServerClient(server.url, concurrency=8)
    x = np.ones((1, 4), np.float32)
    with pytest.raises(InferenceServerException, match="401"):
        c.infer("small", [_input(x, True)])
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        c.infer("nope", [_input(x, True)], headers=auth())
    bad = httpclient.InferInput("x", [1, 5], "FP32")
    bad.set_data_from_numpy(np.ones((1, 5), np.float32))
    with pytest.raises(InferenceServerException, match=r"shape \[1, 5\], expected \[-1, 4\]"):
        c.infer("small", [bad], headers=auth())
    # 24 requests in flight at once: batched by the server, each answer its own rows
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((int(rng.integers(1, 4)), 4)).astype(np.float32) for _ in range(24)]
    pending = [c.async_infer("small", [_input(x, True)], headers=auth()) for x in xs]
    sess = ort.InferenceSession(str(small_onnx))
    for x, p in zip(xs, pending):
        np.testing.assert_allclose(p.get_result().as_numpy("z"), sess.run(None, {"x": x})[1],
                                   rtol=1e-5, atol=1e-6)
    c.close()


def test_drive_counts_correct_wrong_and_errors(server, small_onnx):
    from lgc.serve.testing import drive
    sess = ort.InferenceSession(str(small_onnx))
    rng = np.random.default_rng(11)
    feeds = [{"x": rng.standard_normal((2, 4)).astype(np.float32)} for _ in range(12)]
    expected = [dict(zip(["y", "z"], sess.run(None, f))) for f in feeds]
    expected[3] = {"z": expected[3]["z"] + 1}            # a wrong reference is caught as wrong
    feeds[5] = {"x": np.ones((2, 5), np.float32)}         # a bad request is counted by status
    counts = drive(server.url, "small", feeds, expected, concurrency=4, headers=TOKEN)
    assert counts["correct"] == 10 and counts["wrong"] == 1 and counts["errors"] == {400: 1}
    assert counts["lost"] == 0 and "shape [2, 5]" in counts["error_messages"][0]


class EchoBackend:
    """Outputs computed by NumPy from inputs of several datatypes (the wire coding under test)."""
    name, version, max_batch_size, max_concurrency = "echo", "1", 4, 1

    def __init__(self):
        from lgc.serve.backend import TensorSpec
        self.inputs = [TensorSpec("h", "FP16", (-1, 3)), TensorSpec("i", "INT64", (-1, 2)),
                       TensorSpec("b", "BOOL", (-1,)), TensorSpec("u", "UINT8", (-1, 2))]
        self.outputs = [TensorSpec("h2", "FP16", (-1, 3)), TensorSpec("i2", "INT64", (-1, 2)),
                        TensorSpec("nb", "BOOL", (-1,)), TensorSpec("d", "FP64", (-1,))]

    def infer(self, f):
        return {"h2": f["h"] * np.float16(2), "i2": f["i"] * 3 - 2**40, "nb": ~f["b"],
                "d": f["u"].sum(axis=1).astype(np.float64) / 3}

    def ready(self):
        return True

    def close(self):
        pass


@pytest.mark.parametrize("binary", [False, True])
def test_datatypes_round_trip_through_tritonclient(binary):
    from tritonclient.utils import np_to_triton_dtype
    rng = np.random.default_rng(2)
    feeds = {"h": rng.standard_normal((2, 3)).astype(np.float16),
             "i": rng.integers(-2**50, 2**50, (2, 2)), "b": np.array([True, False]),
             "u": rng.integers(0, 256, (2, 2)).astype(np.uint8)}
    feeds["h"][0] = [np.nan, np.inf, -np.inf]       # JSON answers carry them as "NaN", ...
    backend = EchoBackend()
    want = backend.infer(feeds)
    with ThreadedServer(make_app(backend)) as srv:
        c = httpclient.InferenceServerClient(srv.url)
        inputs = []
        for k, a in feeds.items():
            i = httpclient.InferInput(k, list(a.shape), np_to_triton_dtype(a.dtype))
            i.set_data_from_numpy(a, binary_data=binary)
            inputs.append(i)
        outs = [httpclient.InferRequestedOutput(k, binary_data=binary) for k in want]
        r = c.infer("echo", inputs, outputs=outs)
        for k, w in want.items():
            got = r.as_numpy(k)
            assert got.dtype == w.dtype and got.shape == w.shape, k
            np.testing.assert_array_equal(got, w)


def _wait_live(url, proc, limit=60):
    import httpx
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"lgc serve exited: {proc.stderr.read()}")
        try:
            if httpx.get(f"http://{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("lgc serve did not become ready")


def test_lgc_serve_cli_artifact(small_onnx, tmp_path):
    import lgc
    art = tmp_path / "small.lgc"
    lgc.compile(small_onnx).save(art)
    port = free_port()
    env = dict(os.environ, LGC_SERVE_TOKEN="envtok")
    proc = subprocess.Popen([sys.executable, "-m", "lgc.tools.cli", "serve", str(art), "--port", str(port),
                             "--name", "m", "--max-batch-size", "4"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_live(f"127.0.0.1:{port}", proc)
        c = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)  # 3 chunks of 1
        r = c.infer("m", [_input(x, True)], headers={"Authorization": "Bearer envtok"})
        want = ort.InferenceSession(str(small_onnx)).run(None, {"x": x})
        np.testing.assert_allclose(r.as_numpy("y"), want[0], rtol=1e-5, atol=1e-6)
        with pytest.raises(InferenceServerException, match="401"):
            c.get_model_metadata("m")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_lgc_serve_cli_refuses_bad_settings(small_onnx):
    run = lambda *a: subprocess.run([sys.executable, "-m", "lgc.tools.cli", "serve", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    r = run(str(small_onnx), "--queue-size", "0")
    assert r.returncode == 1 and "--queue-size must be at least 1" in r.stderr
    r = run("missing.lgc")
    assert r.returncode == 1 and "does not exist" in r.stderr
    r = run(str(small_onnx), "--body-memory-mb", "10", "--max-body-mb", "20")
    assert r.returncode == 1 and "--body-memory-mb (10) must be at least --max-body-mb (20)" in r.stderr
    r = run(str(small_onnx), "--header-timeout-s", "0")
    assert r.returncode == 1 and "--header-timeout-s must be at least" in r.stderr


@pytest.mark.slow
def test_squeezenet_artifact_served_matches_onnxruntime(tmp_path):
    """A real CNN, compiled to an artifact (batch 1), served with two rows per request."""
    import lgc
    model = randomize(onnx.load(light_model_path("squeezenet")), 0)
    last = model.graph.node[-1]                # random weights saturate the softmax: serve logits
    model.graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info(last.input[0], onnx.TensorProto.FLOAT, None))
    del model.graph.node[-1]
    src = tmp_path / "squeezenet.onnx"
    onnx.save(model, src)
    art = tmp_path / "squeezenet.lgc"
    lgc.compile(src).save(art)
    backend = LocalBackend(art, max_batch_size=2)
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with ThreadedServer(make_app(backend)) as srv:
        c = httpclient.InferenceServerClient(srv.url, network_timeout=300, connection_timeout=300)
        i = httpclient.InferInput("data_0", list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        got = c.infer("squeezenet", [i]).as_numpy(last.input[0])
    sess = ort.InferenceSession(str(src))
    want = np.concatenate([sess.run(None, {"data_0": x[k:k + 1]})[0] for k in range(2)])
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= 1e-4 * scale
