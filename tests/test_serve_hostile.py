"""Hostile or broken clients against lgc serve: refused bodies leave nothing behind, large
bodies are decoded a few at a time, oversized or slow request heads and slow bodies are cut
off by deadlines, a client leaving mid-body is one log line, non-finite outputs are valid
JSON, and an empty token is refused. Real uvicorn servers on the h11 stack (and httptools,
where installed, as `pip install lgc[serve]` brings it)."""
import asyncio
import contextlib
import gc
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from lgc.serve import bodies as intake
from lgc.serve.app import ServeConfig, make_app
from lgc.serve.connection import HttpLimits
from lgc.serve.server import ThreadedServer
from lgc.tools.serve_cli import no_auth_warning

from .test_serve_app import GOOD, GatedBackend, _req

STACKS = ["h11", pytest.param("httptools", marks=pytest.mark.skipif(
    importlib.util.find_spec("httptools") is None, reason="httptools not installed"))]


def _connect(srv) -> socket.socket:
    s = socket.create_connection((srv.host, srv.port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _read_until_closed(s: socket.socket, limit_s: float = 10.0) -> tuple[bytes, float, str]:
    """Everything the server sends until it closes: (bytes, seconds taken, 'closed' or 'reset')."""
    t0, got = time.monotonic(), b""
    s.settimeout(limit_s)
    try:
        while chunk := s.recv(65536):
            got += chunk
        how = "closed"
    except ConnectionResetError:
        how = "reset"
    return got, time.monotonic() - t0, how


def _status(raw: bytes) -> int | None:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else None


def _good(srv) -> int:
    return httpx.post(f"http://{srv.url}/v2/models/m/infer", json=GOOD, timeout=10).status_code


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@contextlib.contextmanager
def captured_logs():
    """Log records of lgc.serve and of uvicorn (whose loggers do not propagate to the root).
    Enter it after creating the server: uvicorn.Config resets its loggers' handlers."""
    h = _Records()
    loggers = [logging.getLogger(n) for n in ("lgc.serve", "uvicorn.error", "uvicorn")]
    old = [(lg.level, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.addHandler(h)
        lg.setLevel(logging.INFO)
        lg.disabled = False
    try:
        yield h.records
    finally:
        for lg, (level, disabled) in zip(loggers, old):
            lg.removeHandler(h)
            lg.setLevel(level)
            lg.disabled = disabled


def test_refused_bodies_leave_no_reference_behind():
    """A refused body (and what was parsed of it) is freed with its answer, by reference
    counting: the garbage collector is off, so a reference cycle would show as growth."""
    big = json.dumps(_req(np.full((1, 200_000), 0.5, np.float32))).encode()[:-3] + b", 1]}]}"
    assert len(big) > intake.OFFLOAD_BYTES                    # decoded in a worker thread
    head = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                   "parameters": {"binary_data_size": len(big)}}]}).encode()
    binary = (head + b"\0" * len(big), {"inference-header-content-length": str(len(head))})
    cases = [((big, {}), 400), (binary, 400), ((b"x" * (3 << 20), {}), 413)]  # bad JSON, size; too big
    with TestClient(make_app(GatedBackend(width=-1), ServeConfig(max_body_bytes=2 << 20))) as c:
        for (body, headers), status in cases:                     # warm up
            assert c.post("/v2/models/m/infer", content=body, headers=headers).status_code == status
        gc.collect()
        gc.disable()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(4):
                for (body, headers), status in cases:
                    r = c.post("/v2/models/m/infer", content=body, headers=headers)
                    assert r.status_code == status, r.text
                    del r                          # its request holds our copy of the body
            grown = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
            gc.enable()
    assert grown < len(big) / 2, f"{grown} bytes stayed after 12 refused requests"


def test_large_bodies_are_decoded_parse_slots_at_a_time(monkeypatch):
    inside, most = 0, 0
    lock = threading.Lock()
    real = intake.parse_infer_request

    def counting(*args):
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.05)
        with lock:
            inside -= 1
        return real(*args)
    monkeypatch.setattr(intake, "parse_infer_request", counting)
    x = np.linspace(0, 1, 40_000, dtype=np.float32).reshape(1, -1)
    body = json.dumps(_req(x)).encode()
    assert len(body) > intake.OFFLOAD_BYTES
    app = make_app(GatedBackend(width=-1), ServeConfig(parse_slots=2))

    async def post_many():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as c:
            return await asyncio.gather(*[c.post("/v2/models/m/infer", content=body) for _ in range(6)])
    for r in asyncio.run(post_many()):
        assert r.status_code == 200
        np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"], np.float32), x[0] * 2 + 1)
    assert most == 2


def test_non_finite_outputs_are_strict_json():
    class NonFinite(GatedBackend):
        def infer(self, feeds):
            with np.errstate(divide="ignore", invalid="ignore"):
                return {"y": np.log(feeds["x"])}                  # log(-1) NaN, log(0) -Inf

    x = np.array([[-1.0, 0.0, np.e]], np.float32)
    with TestClient(make_app(NonFinite())) as c:
        r = c.post("/v2/models/m/infer", json=_req(x))

    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    out = json.loads(r.content, parse_constant=refuse)["outputs"][0]
    assert out["data"][:2] == ["NaN", "-Infinity"]
    got = np.array(out["data"], np.float32)                       # what tritonclient does
    np.testing.assert_array_equal(got[:2], [np.nan, -np.inf])
    assert abs(got[2] - 1) < 1e-6


def test_empty_token_is_refused():
    with pytest.raises(ValueError, match="token is empty"):
        make_app(GatedBackend(), ServeConfig(token=""))
    run = lambda *a, env=None: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "lgc.tools.cli", "serve", "missing.onnx", *a], capture_output=True,
        text=True, timeout=60, env=dict(os.environ, **(env or {})))
    r = run("--token", "")
    assert r.returncode == 1 and "--token is empty" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
    r = run(env={"LGC_SERVE_TOKEN": ""})
    assert r.returncode == 1 and "$LGC_SERVE_TOKEN is set but empty" in r.stderr, r.stderr
    assert "NO AUTHENTICATION" in no_auth_warning("127.0.0.1")
    assert "listening on 0.0.0.0" in no_auth_warning("0.0.0.0")


def test_too_many_headers_answer_431():
    with TestClient(make_app(GatedBackend(), ServeConfig(max_header_count=20))) as c:
        r = c.get("/v2/health/live", headers={f"x-h{i}": "1" for i in range(30)})
        assert r.status_code == 431 and "over the limit of 20" in r.json()["error"]
        assert c.get("/v2/health/live").status_code == 200


@pytest.mark.parametrize("http", STACKS)
def test_oversized_head_is_refused_at_once(http):
    limits = HttpLimits(head_timeout_s=60, max_head_bytes=8 << 10)
    with ThreadedServer(make_app(GatedBackend()), http=http, limits=limits) as srv, \
            captured_logs() as records:
        s = _connect(srv)
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (40 << 10))
        raw, took, how = _read_until_closed(s)
        s.close()
        assert took < 2, f"an oversized head held the connection {took:.1f} s"
        if how == "closed":                 # else the reset overtook the answer
            assert _status(raw) == 431 and b"over the limit of 8192 bytes" in raw, raw
        assert _good(srv) == 200
    assert any("431" in r.getMessage() for r in records if r.name == "lgc.serve")


@pytest.mark.parametrize("http", STACKS)
def test_slow_heads_and_idle_connections_are_closed(http):
    limits = HttpLimits(head_timeout_s=0.5)
    with ThreadedServer(make_app(GatedBackend()), http=http, limits=limits) as srv:
        partial, idle = _connect(srv), _connect(srv)
        partial.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\n")
        assert _good(srv) == 200
        raw, took, _ = _read_until_closed(partial)
        assert _status(raw) == 408 and b"not received within 0.5 s" in raw and took < 3
        raw, took, _ = _read_until_closed(idle)
        assert raw == b"" and took < 3
        # a keep-alive connection's next head runs to the same deadline
        s = _connect(srv)
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\nGET /v2/health/live HTTP/1.1\r\n")
        raw, took, _ = _read_until_closed(s)
        assert raw.count(b"HTTP/1.1 200") == 1 and b"HTTP/1.1 408" in raw and took < 3


@pytest.mark.parametrize("http", STACKS)
def test_slow_body_is_cut_off_by_the_body_timeout(http):
    app = make_app(GatedBackend(), ServeConfig(body_timeout_s=0.5))
    with ThreadedServer(app, http=http, limits=HttpLimits(head_timeout_s=0.5)) as srv:
        s = _connect(srv)
        s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"inputs\": [")
        assert _good(srv) == 200
        raw, took, how = _read_until_closed(s)
        assert how == "closed" and took < 3
        assert _status(raw) == 408 and b"request body not received within 0.5 s" in raw, raw
        assert b"connection: close" in raw.lower()
        assert _good(srv) == 200
        text = httpx.get(f"http://{srv.url}/metrics").text
        assert 'lgc_serve_requests_total{model="m",outcome="body_timeout"} 1.0' in text


def test_bodies_held_at_once_are_bounded():
    """Two bodies that together exceed the budget: the second is refused (503) as soon as its
    Content-Length is known; once the first is answered, the budget is free again."""
    x = np.ones((1, 3), np.float32)
    body = json.dumps(_req(x)).encode()
    config = ServeConfig(max_body_bytes=len(body), body_memory_bytes=len(body) + 10)
    with ThreadedServer(make_app(GatedBackend(), config)) as srv:
        head = (b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n"
                % len(body))
        first = _connect(srv)
        first.sendall(head + body[:10])
        time.sleep(0.2)
        second = _connect(srv)
        second.sendall(head + body[:10])
        raw, _, _ = _read_until_closed(second)
        assert _status(raw) == 503 and b"retry-after: 1" in raw.lower() and b"bytes of request bodies" in raw
        first.sendall(body[10:])
        assert first.recv(65536).startswith(b"HTTP/1.1 200")
        assert _good(srv) == 200


@pytest.mark.parametrize("http", STACKS)
def test_client_leaving_mid_body_is_one_log_line(http):
    with ThreadedServer(make_app(GatedBackend()), http=http) as srv, captured_logs() as records:
        s = _connect(srv)
        s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"
                  + b"{" * 100)
        time.sleep(0.2)
        s.close()
        deadline = time.monotonic() + 10
        while not any(r.name == "lgc.serve" for r in records) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _good(srv) == 200
    mine = [r for r in records if r.name == "lgc.serve"]
    assert len(mine) == 1, [r.getMessage() for r in records]
    line = mine[0]
    assert line.levelno == logging.INFO and line.exc_info is None
    assert "went away" in line.getMessage() and "100 bytes" in line.getMessage()
    assert "\n" not in line.getMessage()
    assert not [r for r in records if r.levelno >= logging.ERROR or r.exc_info]
