"""`RayBackend`: lgc.serve's Backend interface in front of a Ray deployment.

Batching follows LocalBackend's rule for fixed-shape artifacts: when every model input and
output leads with the same size b, a batch of n rows is cut into ceil(n / b) chunks (the last
padded by repeating its last row) and the chunks go through the pipeline at once, so that
they overlap on different stages and replicas.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import InputError
from ..ir import dtypes
from ..serve.backend import batch_layout, pad_rows
from .deployment import Deployment


class RayBackend:
    """A Deployment seen as one model by the HTTP server."""

    def __init__(self, deployment: Deployment, max_batch_size: int = 8, version: str = "1",
                 owns_deployment: bool = False, timeout_s: float = 60.0):
        self.deployment = deployment
        self.name = deployment.name
        self.version = str(version)
        self.timeout_s = timeout_s
        self._owns = owns_deployment
        produced = {s["name"]: s for st in deployment.stages for s in st.outputs}
        ins = [(s["name"], dtypes.by_name(s["dtype"]).np, tuple(s["shape"])) for s in deployment.inputs]
        outs = [(n, dtypes.by_name(produced[n]["dtype"]).np, tuple(produced[n]["shape"]))
                for n in deployment.output_names]
        self._chunk, self.max_batch_size, self.inputs, self.outputs = batch_layout(
            ins, outs, max_batch_size)
        # requests in flight that keep every actor busy: one per actor
        self.max_concurrency = max(1, sum(len(rs) for rs in deployment.replicas))
        self._pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="lgc-ray")

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.max_batch_size == 0:
            return self.deployment.infer(feeds, self.timeout_s)
        n = next(iter(feeds.values())).shape[0]
        if n > self.max_batch_size:
            raise InputError(f"batch of {n} exceeds max_batch_size {self.max_batch_size}")
        b = self._chunk
        chunks = [{k: pad_rows(v[s:s + b], b) for k, v in feeds.items()} for s in range(0, n, b)]
        if len(chunks) == 1:
            parts = [self.deployment.infer(chunks[0], self.timeout_s)]
        else:
            parts = list(self._pool.map(lambda c: self.deployment.infer(c, self.timeout_s), chunks))
        return {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}

    def ready(self) -> bool:
        return self.deployment.ready()

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        if self._owns:
            self.deployment.shutdown()
