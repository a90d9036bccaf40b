"""Run the app under uvicorn in a background thread (tests, benchmarks, notebooks)."""
from __future__ import annotations

import socket
import threading
import time

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ThreadedServer:
    """`with ThreadedServer(app) as srv: ... srv.url ...` - a real HTTP server on a free port.

    Leaving the block stops uvicorn, which runs the app's shutdown (closing its backends).
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None,
                 http: str = "auto", loop: str = "auto"):
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                access_log=False, lifespan="on", http=http, loop=loop)
        self.server = uvicorn.Server(config)
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
