"""Run the app under uvicorn: `uvicorn_config` (what `lgc serve` runs) and `ThreadedServer`
(uvicorn in a background thread, for tests, benchmarks and notebooks)."""
from __future__ import annotations

import copy
import socket
import threading
import time

import uvicorn

from .connection import HttpLimits, guarded_protocol


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def log_config(level: str = "INFO") -> dict:
    """uvicorn's logging, with lgc.serve's one-line client events (disconnects, refused
    heads, body timeouts) through the same handler."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["lgc.serve"] = {"handlers": ["default"], "level": level, "propagate": False}
    return config


def uvicorn_config(app, host: str = "127.0.0.1", port: int = 8000, limits: HttpLimits | None = None,
                   http: str = "auto", loop: str = "auto", access_log: bool = False,
                   log_level: str = "warning", **options) -> uvicorn.Config:
    """uvicorn.Config for `app` with the connection limits of `limits` (HttpLimits())."""
    limits = limits or HttpLimits()
    return uvicorn.Config(app, host=host, port=port, http=guarded_protocol(limits, http), loop=loop,
                          ws="none", access_log=access_log, log_level=log_level, lifespan="on",
                          **limits.uvicorn_options(), **options)     # no WebSocket routes


class ThreadedServer:
    """`with ThreadedServer(app) as srv: ... srv.url ...` - a real HTTP server on a free port.

    Leaving the block stops uvicorn, which runs the app's shutdown (closing its backends).
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None,
                 http: str = "auto", loop: str = "auto", limits: HttpLimits | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.server = uvicorn.Server(uvicorn_config(app, host, self.port, limits, http, loop))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="lgc-serve-uvicorn")

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> "ThreadedServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
