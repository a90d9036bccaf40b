"""Request bodies in, answers out, with memory bounded and refusals as plain values.

A body is read whole (`Intake.receive`), within a deadline from the request's arrival, up to
`max_body_bytes`, and only while all bodies held at once (received, not yet decoded) fit a
byte budget (else 503). It is then decoded into tensors and dropped before the request
queues. Decoding JSON takes about 14x the body in memory (a Python float per value), so
bodies over OFFLOAD_BYTES are decoded in a worker thread, `parse_slots` at a time; large
answers are encoded the same way.

Every refusal is a `Refusal` value, never an exception leaving a worker thread or a
deadline: such an exception's traceback forms a reference cycle (through anyio's future,
or the cancelled task) that keeps the body and whatever was parsed of it alive until the
next full garbage collection, which large bytes objects do not trigger.
"""
from __future__ import annotations

import time
import zlib
from typing import NamedTuple

import anyio
import anyio.to_thread
import numpy as np
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from .protocol import (InferRequest, ProtocolError, encode_infer_response, json_object,
                       parse_infer_request)

OFFLOAD_BYTES = 256 << 10   # bodies/outputs above this are coded in a worker thread


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Refusal(NamedTuple):
    """A request refused: the answer's status and message, and the metrics outcome."""
    status: int
    message: str
    outcome: str
    close: bool = False                # the body was not read whole: close the connection
    retry_after: bool = False

    def response(self) -> JSONResponse:
        headers = {}
        if self.close:
            headers["connection"] = "close"
        if self.retry_after:
            headers["retry-after"] = "1"
        return error_response(self.status, self.message, headers or None)


class _Budget:
    """Bytes of request bodies held at once, over all requests (the event loop's only)."""

    def __init__(self, total: int):
        self.total, self.used = total, 0


class _Claim:
    """One request's share of the budget; `release()` when its body is gone."""

    def __init__(self, budget: _Budget):
        self.budget, self.held = budget, 0

    def cover(self, size: int) -> bool:
        """Hold `size` bytes in all; False (nothing taken) when the budget cannot."""
        need = size - self.held
        if need > 0:
            if self.budget.used + need > self.budget.total:
                return False
            self.budget.used += need
            self.held = size
        return True

    def release(self) -> None:
        self.budget.used -= self.held
        self.held = 0


class Intake:
    """Reads and decodes request bodies; encodes answers. One per app."""

    def __init__(self, max_body_bytes: int, body_memory_bytes: int, body_timeout_s: float,
                 parse_slots: int):
        if body_memory_bytes < max_body_bytes:
            raise ValueError(f"the body memory budget ({body_memory_bytes} bytes) is below the "
                             f"largest body ({max_body_bytes} bytes), which could never be read")
        if parse_slots < 1:
            raise ValueError(f"parse_slots must be at least 1, got {parse_slots}")
        self.limit = max_body_bytes
        self.budget = _Budget(body_memory_bytes)
        self.timeout_s = body_timeout_s
        self.slots = anyio.CapacityLimiter(parse_slots)

    async def receive(self, request: Request, backend, arrival: float) -> InferRequest | Refusal:
        """The decoded request, or why not. The body lives in this frame only, so it is
        dropped (and its budget released) when this returns."""
        claim = _Claim(self.budget)
        try:
            body = await self._within_deadline(request, claim, arrival)
            if isinstance(body, Refusal):
                return body
            args = (body, request.headers.get("inference-header-content-length"),
                    backend.inputs, backend.outputs, backend.max_batch_size)
            # big JSON bodies take milliseconds to decode: off the event loop, so health
            # checks and other requests are not held up, and a few at a time
            if len(body) > OFFLOAD_BYTES:
                return await anyio.to_thread.run_sync(_decode, *args, limiter=self.slots)
            return _decode(*args)
        finally:
            claim.release()

    async def receive_json(self, request: Request, arrival: float) -> dict | Refusal:
        """A request body that is one JSON object (the generate extension's), read under the
        same limits as infer bodies."""
        claim = _Claim(self.budget)
        try:
            body = await self._within_deadline(request, claim, arrival)
            if isinstance(body, Refusal):
                return body
            try:
                return json_object(body, "the request")
            except ProtocolError as e:
                return Refusal(e.status, str(e), "bad_request")
        finally:
            claim.release()

    async def _within_deadline(self, request: Request, claim, arrival: float) -> bytes | Refusal:
        body = Refusal(408, f"request body not received within {self.timeout_s:g} s",
                       "body_timeout", close=True)
        with anyio.move_on_after(self.timeout_s - (time.monotonic() - arrival)):
            body = await self._read(request, claim)
        return body

    async def encode(self, *args) -> tuple[bytes, dict] | Refusal:
        """encode_infer_response(*args) (model, version, id, outputs, wanted), off the event
        loop when the outputs are large."""
        if _nbytes(args[3]) > OFFLOAD_BYTES:
            return await anyio.to_thread.run_sync(_encode, *args, limiter=self.slots)
        return _encode(*args)

    async def _read(self, request: Request, claim: _Claim) -> bytes | Refusal:
        limit = self.limit
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return Refusal(400, f"Content-Length {declared!r} is not an integer", "bad_request", True)
            if size > limit:
                return Refusal(413, f"request body of {size} bytes is over the limit of {limit} bytes",
                               "too_large", True)
            if not claim.cover(size):
                return self._busy()
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip", "deflate"):
            return Refusal(415, f"Content-Encoding {encoding!r} is not supported "
                                f"(use gzip, deflate or none)", "bad_request", True)
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return Refusal(413, f"request body is over the limit of {limit} bytes",
                                   "too_large", True)
                if not claim.cover(size):
                    return self._busy()
                chunks.append(chunk)
        except ClientDisconnect:
            return Refusal(499, f"disconnected after {size} bytes of the body", "disconnected")
        body = b"".join(chunks)
        del chunks
        if encoding in ("gzip", "deflate"):       # as tritonclient's request_compression_algorithm
            body = _decompress(body, encoding, limit)
            if not isinstance(body, Refusal) and not claim.cover(size + len(body)):
                return self._busy()
        return body

    def _busy(self) -> Refusal:
        return Refusal(503, f"the server holds {self.budget.used} bytes of request bodies, its "
                            f"limit is {self.budget.total}: retry", "busy", close=True,
                       retry_after=True)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes | Refusal:
    d = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS)
    try:
        body = d.decompress(body, limit + 1)
    except zlib.error as e:
        return Refusal(400, f"request body is not valid {encoding} data: {e}", "bad_request")
    if len(body) > limit or d.unconsumed_tail:
        return Refusal(413, f"decompressed request body is over the limit of {limit} bytes",
                       "too_large")
    return body


def _decode(*args) -> InferRequest | Refusal:
    """parse_infer_request, with a refusal as a value: nothing keeps the traceback (and the
    body and half-parsed data its frames hold) once this returns."""
    try:
        return parse_infer_request(*args)
    except ProtocolError as e:
        return Refusal(e.status, str(e), "too_large" if e.status == 413 else "bad_request")


def _nbytes(outs) -> int:
    try:
        return sum(np.asarray(v).nbytes for v in outs.values())
    except Exception:                  # noqa: BLE001 - _encode reports what is wrong
        return 0


def _encode(model_name, version, request_id, outs, wanted) -> tuple[bytes, dict] | Refusal:
    """encode_infer_response, with a failure as a value (see _decode)."""
    try:
        missing = [n for n, _ in wanted if n not in outs]
        if missing:
            raise ValueError(f"the backend returned no output {missing[0]!r}")
        return encode_infer_response(model_name, version, request_id, outs, wanted)
    except Exception as e:             # noqa: BLE001 - reported, server keeps serving
        return Refusal(500, f"model {model_name!r}: bad outputs: {e}", "error")
