"""The Open Inference Protocol (KServe v2) REST API as a Starlette app over Backends.

`make_app(backends, config)` returns an ASGI app: run it with uvicorn (lgc serve) or drive it
with starlette's TestClient. Every error answers `{"error": "..."}` with a 4xx/5xx status and
the server keeps serving: 400 bad request, 401 missing/wrong bearer token, 404 unknown model
or version, 408 body not received in time, 413 body over the limit, 431 too many headers,
503 queue full, body memory full or model not ready, 504 timed out, 500 the backend failed.

Bodies are read, decoded and dropped by lgc.serve.bodies, under a deadline, a size limit and
a memory budget; the request then waits for its batch holding only its tensors.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import lgc

from ..errors import InputError
from .backend import Backend, check_backend
from .batcher import Batcher, QueueFull
from .generate import generate_routes
from .bodies import Intake, Refusal
from .bodies import error_response as _error
from .metrics import ServeMetrics
from .protocol import ProtocolError

log = logging.getLogger("lgc.serve")

HEALTH_PATHS = ("/v2/health/live", "/v2/health/ready")
EXTENSIONS = ["binary_tensor_data", "generate"]


@dataclass
class ServeConfig:
    max_wait_ms: float = 0.0          # longest a request waits for others to batch with
    queue_size: int = 64              # requests waiting per model before 503
    timeout_s: float = 30.0           # arrival to answer; 504 after
    max_body_bytes: int = 64 << 20    # 413 above
    body_memory_bytes: int = 512 << 20  # bodies held at once (read, not yet decoded); 503 above
    body_timeout_s: float = 30.0      # the whole body must arrive within this; 408 after
    parse_slots: int = 2              # large bodies decoded (large answers encoded) at once
    max_header_count: int = 100       # 431 above
    token: str | None = None          # bearer token for every route but the health checks


class _Model:
    """A backend with its batcher."""

    def __init__(self, backend: Backend, config: ServeConfig, metrics: ServeMetrics):
        self.backend = backend
        self.batcher = Batcher(backend, config.max_wait_ms, config.queue_size,
                               on_batch=metrics.batch_observer(backend.name))
        metrics.queue_depth.labels(backend.name).set_function(self.batcher.depth)

    def metadata(self) -> dict:
        b = self.backend
        return {"name": b.name, "versions": [b.version], "platform": "lgc",
                "inputs": [s.as_json() for s in b.inputs],
                "outputs": [s.as_json() for s in b.outputs]}

    def config(self) -> dict:
        """Triton-style model configuration (GET .../config), for clients that ask."""
        b = self.backend
        return {"name": b.name, "platform": "lgc", "max_batch_size": b.max_batch_size,
                "input": [s.as_json() for s in b.inputs],
                "output": [s.as_json() for s in b.outputs]}


def make_app(backends, config: ServeConfig | None = None) -> Starlette:
    """The ASGI app serving `backends` (a Backend or a list of them, distinct names).

    The app owns the backends: shutting it down closes their batchers and the backends.
    """
    config = config or ServeConfig()
    if config.token is not None and not config.token:
        raise ValueError("the bearer token is empty: give a token, or None for no authentication")
    intake = Intake(config.max_body_bytes, config.body_memory_bytes, config.body_timeout_s,
                    config.parse_slots)
    if not isinstance(backends, (list, tuple)):
        backends = [backends]
    names = [b.name for b in backends]
    for b in backends:
        check_backend(b)
        if names.count(b.name) > 1:
            raise ValueError(f"two backends are named {b.name!r}")
    metrics = ServeMetrics()
    models = {b.name: _Model(b, config, metrics) for b in backends}

    def find(request: Request) -> _Model:
        name = request.path_params["name"]
        m = models.get(name)
        if m is None:
            raise ProtocolError(f"unknown model {name!r} (models: {', '.join(models)})", 404)
        version = request.path_params.get("version")
        if version is not None and version != m.backend.version:
            raise ProtocolError(f"model {name!r} has no version {version!r} "
                                f"(versions: {m.backend.version})", 404)
        return m

    async def live(request):
        return JSONResponse({"live": True})

    async def ready(request):
        ok = all(_is_ready(m.backend) for m in models.values())
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_metadata(request):
        return JSONResponse({"name": "lgc", "version": getattr(lgc, "__version__", "0"),
                             "extensions": EXTENSIONS})

    def on_model(answer):
        """A GET route answering answer(the model named), or 404 naming what is unknown."""
        async def route(request):
            try:
                return answer(find(request))
            except ProtocolError as e:
                return _error(e.status, str(e))
        return route

    def model_ready(m: _Model):
        ok = _is_ready(m.backend)
        return JSONResponse({"name": m.backend.name, "ready": ok}, status_code=200 if ok else 503)

    async def infer(request: Request):
        t0 = time.monotonic()
        label = request.path_params["name"]
        outcome, response = await _infer(request, t0)
        metrics.observe_request(label if label in models else "<unknown>", outcome,
                                time.monotonic() - t0)
        return response

    async def _infer(request: Request, t0: float):
        try:
            m = find(request)
        except ProtocolError as e:
            return "not_found", _error(e.status, str(e), {"connection": "close"})
        b = m.backend
        req = await intake.receive(request, b, t0)
        if isinstance(req, Refusal):
            if req.outcome == "disconnected":
                log.info("%s: client went away while sending its request to %r: %s",
                         _client(request), b.name, req.message)
            return req.outcome, req.response()
        if not _is_ready(b):
            return "not_ready", _error(503, f"model {b.name!r} is not ready")
        try:
            fut = m.batcher.submit(req.inputs)
        except QueueFull as e:
            return "queue_full", _error(503, str(e), {"retry-after": "1"})
        req.inputs = None                   # the batcher's now: freed once its batch has run
        waited = asyncio.wrap_future(fut)
        try:
            left = config.timeout_s - (time.monotonic() - t0)      # the limit runs from arrival
            outs = await asyncio.wait_for(asyncio.shield(waited), max(left, 0.0))
        except asyncio.CancelledError:
            m.batcher.abandon(fut)          # the client went away: do not run it for nobody
            raise
        except asyncio.TimeoutError:
            m.batcher.abandon(fut)          # dropped if its batch has not started
            return "timeout", _error(504, f"model {b.name!r}: no answer within "
                                          f"{config.timeout_s:g} s (request timeout)")
        except InputError as e:
            return "bad_request", _error(400, f"model {b.name!r}: {e}")
        except Exception as e:             # noqa: BLE001 - reported, server keeps serving
            return "error", _error(500, f"model {b.name!r} failed: {type(e).__name__}: {e}")
        del fut, waited
        answer = await intake.encode(b.name, b.version, req.id, outs, req.outputs)
        if isinstance(answer, Refusal):
            return answer.outcome, answer.response()
        content, headers = answer
        return "success", Response(content, headers=headers)

    generate, generate_stream = generate_routes(models, find, intake, config, metrics)

    async def metrics_endpoint(request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        return Response(generate_latest(metrics.registry), headers={"content-type": CONTENT_TYPE_LATEST})

    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route("/metrics", metrics_endpoint),
    ]
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [
            Route(prefix, on_model(lambda m: JSONResponse(m.metadata()))),
            Route(prefix + "/config", on_model(lambda m: JSONResponse(m.config()))),
            Route(prefix + "/ready", on_model(model_ready)),
            Route(prefix + "/infer", infer, methods=["POST"]),
            Route(prefix + "/generate", generate, methods=["POST"]),
            Route(prefix + "/generate_stream", generate_stream, methods=["POST"]),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        close_models(models)

    async def unexpected(request, exc):
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={Exception: unexpected})
    app.state.models = models
    app.state.metrics = metrics
    app.state.config = config
    if config.token:
        app.add_middleware(_BearerAuth, token=config.token, metrics=metrics)
    app.add_middleware(_HeaderCount, limit=config.max_header_count)
    app.add_middleware(_JsonErrors)
    return app


def _is_ready(backend) -> bool:
    """backend.ready(), with a failing probe read as not ready."""
    try:
        return bool(backend.ready())
    except Exception:                      # noqa: BLE001
        return False


def close_models(models: dict) -> None:
    """Stop every batcher (queued requests get 503) and close the backends."""
    for m in models.values():
        m.batcher.close()
        m.backend.close()


def _client(request: Request) -> str:
    c = request.client
    return f"{c.host}:{c.port}" if c else "a client"


class _BearerAuth:
    """Every route but the health checks needs `Authorization: Bearer <token>` (else 401)."""

    def __init__(self, app, token: str, metrics: ServeMetrics):
        self.app = app
        self.token = token.encode()
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in HEALTH_PATHS:
            return await self.app(scope, receive, send)
        auth = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = auth.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token):
            return await self.app(scope, receive, send)
        if scope["path"].endswith("/infer"):
            self.metrics.requests.labels("<unauthenticated>", "unauthorized").inc()
        resp = _error(401, "missing or wrong bearer token (send 'Authorization: Bearer <token>')",
                      {"www-authenticate": "Bearer", "connection": "close"})   # body left unread
        await resp(scope, receive, send)


class _HeaderCount:
    """More than `limit` request headers: 431 (their total size is capped per connection,
    by lgc.serve.connection)."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and len(scope["headers"]) > self.limit:
            resp = _error(431, f"{len(scope['headers'])} request headers are over the limit of "
                               f"{self.limit}", {"connection": "close"})
            return await resp(scope, receive, send)
        return await self.app(scope, receive, send)


class _JsonErrors:
    """Starlette's own 404/405 answers (unknown paths, wrong methods) as {"error": ...}."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        replaced = False

        async def send_json_errors(message):
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] in (404, 405):
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(b"text/plain"):
                    replaced = True
                    status = message["status"]
                    text = (f"no route {scope['path']!r}" if status == 404 else
                            f"method {scope['method']} is not allowed on {scope['path']!r}")
                    resp = _error(status, text)
                    await resp(scope, receive, send)
                    return
            if replaced:
                return                        # drop the plain-text body of the replaced answer
            await send(message)

        await self.app(scope, receive, send_json_errors)
