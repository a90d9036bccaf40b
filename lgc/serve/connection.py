"""Connection-level limits uvicorn lacks: a deadline and a size cap on each request head.

uvicorn (0.29 to 0.55) bounds a request head only on its h11 stack (16 KiB by default) and
not on httptools, and arms no timer until a first response is sent: a client that opens a
connection and sends a partial request (a slowloris) holds it, and its file descriptor,
forever. `guarded_protocol(limits, http)` subclasses uvicorn's protocol class so that:

- the head of every request (request line and headers) must arrive within
  `head_timeout_s` of the connection opening or of the previous response; else the
  connection is closed, with a 408 answer when part of a head had come;
- a head over `max_head_bytes` is answered 431 and the connection closed as soon as it is
  known (at most one socket read, 256 KiB, past the limit).

Request bodies are the app's business (lgc.serve.app reads them under a deadline).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

log = logging.getLogger("lgc.serve")

HTTP_STACKS = ("auto", "h11", "httptools")
READ_CHUNK = 256 << 10            # the most asyncio (and uvloop) hands data_received at once


@dataclass(frozen=True)
class HttpLimits:
    """What one client may hold of the server before sending a complete request head."""
    head_timeout_s: float = 10.0       # request line + headers, from connect or last response
    max_head_bytes: int = 64 << 10     # request line + headers
    keep_alive_s: float = 5.0          # idle keep-alive connection closed after (uvicorn's)
    limit_concurrency: int = 1000      # connections + requests in flight; 503 beyond (uvicorn's)

    def uvicorn_options(self) -> dict:
        """The uvicorn.Config keywords these limits set (h11's own head cap as a backstop)."""
        return {"timeout_keep_alive": self.keep_alive_s, "limit_concurrency": self.limit_concurrency,
                "h11_max_incomplete_event_size": self.max_head_bytes + 2 * READ_CHUNK}


def resolve_stack(http: str) -> str:
    """"h11" or "httptools": what uvicorn's "auto" picks (httptools when installed)."""
    if http not in HTTP_STACKS:
        raise ValueError(f"HTTP stack {http!r} is not one of {', '.join(HTTP_STACKS)}")
    if http != "auto":
        return http
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def guarded_protocol(limits: HttpLimits, http: str = "auto") -> type:
    """uvicorn's protocol class for `http`, with the head deadline and size cap of `limits`."""
    stack = resolve_stack(http)
    if stack == "h11":
        from uvicorn.protocols.http.h11_impl import H11Protocol
        return type("GuardedH11Protocol", (_H11Head, _HeadGuard, H11Protocol), {"limits": limits})
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    return type("GuardedHttpToolsProtocol", (_HttpToolsHead, _HeadGuard, HttpToolsProtocol),
                {"limits": limits})


def _refusal(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class _HeadGuard:
    """Mixin over a uvicorn protocol. Per stack, `_head_key()` names the request head being
    received (None while a request is being answered) and `_head_buffered()` says whether
    part of the next head is already in hand."""

    limits: HttpLimits
    _completed = 0                    # requests fully received (counted where the stack says)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_timer = None
        self._arm_head_deadline()

    def connection_lost(self, exc) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        key, completed = self._head_key(), self._completed
        if key is not None:
            self._head_started = True
        super().data_received(data)
        after = self._head_key()
        if self.transport.is_closing() or after is None or self._completed != completed:
            return
        if after == key or key is not None and key[0] == "idle":
            # every byte of the chunk belongs to one request head, still incomplete
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse(431, "Request Header Fields Too Large",
                             f"request line and headers are over the limit of "
                             f"{self.limits.max_head_bytes} bytes")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_bytes = 0
        self._head_started = False
        if not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_deadline)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline(self) -> None:
        self._head_timer = None
        if self._head_key() is None or self.transport.is_closing():
            return                      # a request is being answered: the app's deadlines rule
        if self._head_started or self._head_buffered():
            self._refuse(408, "Request Timeout", f"request head not received within "
                                                 f"{self.limits.head_timeout_s:g} s")
        else:
            self.transport.close()      # idle: close quietly, as a keep-alive timeout does

    def _refuse(self, status: int, reason: str, message: str) -> None:
        client = "%s:%d" % tuple(self.client[:2]) if self.client else "a client"
        log.info("%s: %d %s", client, status, message)
        self.transport.write(_refusal(status, reason, message))
        self.transport.close()


class _H11Head:
    """h11 parses one request at a time: between responses, bytes received are a head."""

    def _head_buffered(self) -> bool:
        return bool(self.conn.trailing_data[0])

    def _head_key(self):
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return ("idle", id(cycle))
        return None


class _HttpToolsHead:
    """httptools (llhttp) calls back at each request's start and at the end of its head."""

    def connection_made(self, transport) -> None:
        self._in_head, self._heads = False, 0
        super().connection_made(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._heads += 1
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._completed += 1
        super().on_message_complete()

    def _head_buffered(self) -> bool:
        return self._in_head

    def _head_key(self):
        if self._in_head:
            return ("head", self._heads)
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return ("idle", self._heads)
        return None
