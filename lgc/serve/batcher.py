"""Dynamic batching in front of one Backend: a bounded queue, one dispatcher, N runners.

Requests wait in a queue of at most `queue_size` entries (a full queue refuses at once:
the server answers 503). The dispatcher thread waits for a free runner slot (at most
`backend.max_concurrency` batches in flight), takes the oldest request, and adds queued
requests whose non-batch shapes match it, in arrival order, until the batch holds
`max_batch_size` rows or `max_wait_ms` has passed since the oldest request arrived. While the
backend is busy the queue fills, so batches grow with load and a lone request waits at most
`max_wait_ms`. A backend with max_batch_size 0 gets one request per call.

A request whose caller gave up (timeout) before its batch started is dropped, not run.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ..errors import LgcError
from .backend import Backend


class QueueFull(LgcError):
    """The model's request queue is full (the server answers 503)."""


class BackendOutputError(LgcError):
    """The backend returned outputs that do not fit the batch it was given."""


class _Pending:
    __slots__ = ("feeds", "rows", "key", "arrival", "future")

    def __init__(self, feeds: dict[str, np.ndarray], batched: bool):
        self.feeds = feeds
        self.rows = next(iter(feeds.values())).shape[0] if batched else 1
        # requests batch together only when every input matches beyond axis 0
        self.key = tuple(sorted((k, v.dtype.str, v.shape[1:] if batched else v.shape)
                                for k, v in feeds.items()))
        self.arrival = time.monotonic()
        self.future: Future = Future()


class Batcher:
    """Queue + batching for one backend; `submit` returns a concurrent Future of the outputs."""

    def __init__(self, backend: Backend, max_wait_ms: float = 0.0, queue_size: int = 64,
                 on_batch=None):
        self.backend = backend
        self.max_batch = int(backend.max_batch_size)
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.queue_size = int(queue_size)
        self.on_batch = on_batch              # called with (rows, requests, seconds) per batch
        self._items: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._slots = threading.Semaphore(max(1, int(getattr(backend, "max_concurrency", 1))))
        self._pool = ThreadPoolExecutor(max(1, int(getattr(backend, "max_concurrency", 1))),
                                        thread_name_prefix=f"lgc-serve-{backend.name}")
        self._stopped = False
        self._thread = threading.Thread(target=self._dispatch, daemon=True,
                                        name=f"lgc-serve-batcher-{backend.name}")
        self._thread.start()

    def depth(self) -> int:
        """Requests waiting (not yet in a batch)."""
        return len(self._items)

    def submit(self, feeds: dict[str, np.ndarray]) -> Future:
        item = _Pending(feeds, self.max_batch > 0)
        with self._cond:
            if self._stopped:
                raise QueueFull(f"model {self.backend.name!r} is shutting down")
            if len(self._items) >= self.queue_size:
                raise QueueFull(f"model {self.backend.name!r}: request queue is full "
                                f"({self.queue_size} waiting); retry later")
            self._items.append(item)
            self._cond.notify()
        return item.future

    def abandon(self, future: Future) -> None:
        """The caller gave up (timeout): drop its request if not started, freeing its place."""
        with self._cond:
            if future.cancel():
                for i, it in enumerate(self._items):
                    if it.future is future:
                        del self._items[i]
                        break

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            leftovers = list(self._items)
            self._items.clear()
            self._cond.notify_all()
        for item in leftovers:
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(QueueFull(f"model {self.backend.name!r} is shutting down"))
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False)     # a hung backend call must not hang the shutdown

    # -- dispatcher thread -----------------------------------------------------------------
    def _dispatch(self) -> None:
        while True:
            self._slots.acquire()
            batch = self._next_batch()
            if batch is None:
                self._slots.release()
                return
            self._pool.submit(self._run, batch)

    def _next_batch(self) -> list[_Pending] | None:
        with self._cond:
            first = None
            while first is None:
                while not self._items and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return None
                cand = self._items.popleft()
                if not cand.future.cancelled():
                    first = cand
            batch, rows = [first], first.rows
            if self.max_batch <= 0:
                return batch
            deadline = first.arrival + self.max_wait
            scanned = 0                        # items before this index were looked at already
            while rows < self.max_batch:
                took = False
                i = scanned
                while i < len(self._items) and rows < self.max_batch:
                    it = self._items[i]
                    if it.future.cancelled():
                        del self._items[i]
                        continue
                    if it.key == first.key and rows + it.rows <= self.max_batch:
                        del self._items[i]
                        batch.append(it)
                        rows += it.rows
                        took = True
                        continue
                    i += 1
                scanned = i
                if rows >= self.max_batch:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopped:
                    break
                if not took:
                    self._cond.wait(remaining)
            return batch

    # -- runner threads --------------------------------------------------------------------
    def _run(self, batch: list[_Pending]) -> None:
        try:
            live = [it for it in batch if it.future.set_running_or_notify_cancel()]
            if not live:
                return
            t0 = time.perf_counter()
            try:
                if len(live) == 1:
                    feeds = live[0].feeds
                else:
                    feeds = {k: np.concatenate([it.feeds[k] for it in live]) for k in live[0].feeds}
                outs = self.backend.infer(feeds)
                parts = self._split(outs, live)
            except BaseException as e:              # noqa: BLE001 - every caller gets the error
                for it in live:
                    it.future.set_exception(e)
                return
            finally:
                if self.on_batch is not None:
                    self.on_batch(sum(it.rows for it in live), len(live), time.perf_counter() - t0)
            for it, part in zip(live, parts):
                it.future.set_result(part)
        finally:
            self._slots.release()

    def _split(self, outs: dict[str, np.ndarray], live: list[_Pending]) -> list[dict]:
        if len(live) == 1:
            return [outs]
        total = sum(it.rows for it in live)
        for k, v in outs.items():
            if np.ndim(v) == 0 or np.shape(v)[0] != total:
                raise BackendOutputError(f"model {self.backend.name!r}: output {k!r} has shape "
                                         f"{np.shape(v)}, not {total} rows for the batch")
        parts, start = [], 0
        for it in live:
            parts.append({k: v[start:start + it.rows] for k, v in outs.items()})
            start += it.rows
        return parts
