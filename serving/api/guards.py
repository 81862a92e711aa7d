"""The ASGI and HTTP guards around the app: what a request may cost before the app sees it, and the security
headers of every answer.

- `BodyGuard` reads each request's whole body first: 413 past the size cap, 408 past the time to arrive, 431 for a
  head over MAX_HEADER_BYTES;
- `SlowClientGuard` (uvicorn's h11 protocol) gives each request's line and headers a deadline and a size cap;
- `SecurityHeaders` adds nosniff, a Content-Security-Policy, no framing, no referrer and no-store to every answer;
- `server_config` is how `aduana serve` runs the app with them.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_BODY_BYTES = 1_000_000
BODY_TIMEOUT_S = 10.0  # the whole body must arrive within this (a 1 MB body: 100 KB/s), else 408
HEADER_TIMEOUT_S = 10.0  # a connection's request line and headers must arrive within this, else it is closed
KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this
MAX_HEADER_BYTES = 16_384  # request line and headers together, else 431 (SlowClientGuard)


class BodyGuard:
    """Read each request's whole body before the app sees it: 413 past `max_bytes` (declared by Content-Length
    or streamed in chunks), 408 when it has not all arrived within `timeout_s`. Both close the connection.

    It first holds the request's head to MAX_HEADER_BYTES (431), as the server reconstructs it: SlowClientGuard
    counts the bytes of a head that arrives on its own, but a head pipelined behind another request is parsed
    from the server's buffer without passing through that count.

    Reading it here, not inside the app, is what makes a chunked body over the cap a 413: FastAPI answers 400 to
    any error raised while it reads a body."""

    def __init__(self, app, max_bytes: int, timeout_s: float):  # noqa: ANN001 - ASGI app
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI callables
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if head_size(scope) > MAX_HEADER_BYTES:
            return await _refuse(send, 431, f"request line and headers over {MAX_HEADER_BYTES} bytes")
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _refuse(send, 413, f"request body over {self.max_bytes} bytes")
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self.timeout_s):  # the whole body, one deadline (no task per message)
                while size <= self.max_bytes:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None  # the client went away: nobody to answer
                    size += len(message.get("body", b""))
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return await _refuse(send, 408, f"request body not received within {self.timeout_s:g} s")
        if size > self.max_bytes:
            return await _refuse(send, 413, f"request body over {self.max_bytes} bytes")
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:  # after the body: disconnect notices, as the server sends them
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def head_size(scope: dict) -> int:
    """The bytes of a request's line and headers as sent on HTTP/1.1 ("GET /path?query HTTP/1.1", each header
    line with its ": " and CRLF, and the blank line)."""
    query = scope.get("query_string") or b""
    line = len(scope["method"]) + len(scope.get("raw_path") or scope["path"].encode()) + (len(query) + 1 if query else 0)
    return line + 12 + sum(len(k) + len(v) + 4 for k, v in scope.get("headers") or []) + 2


async def _refuse(send, status: int, detail: str) -> None:  # noqa: ANN001
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# Every answer's security headers. A page that runs scripts or styles (/docs, /redoc, /ui) sends its own
# Content-Security-Policy, which `SecurityHeaders` keeps; everything else is JSON, which needs no source at all.
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": JSON_CSP,
                    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
NO_STORE = {"Cache-Control": "no-store"}  # every answer but the docs' static files: scores and states go stale


class SecurityHeaders:
    """Add SECURITY_HEADERS (and NO_STORE) to every answer that lacks them, whoever writes it: routes, error
    handlers, BodyGuard's 413/408. A pure ASGI middleware, so streamed and early answers pass through unchanged
    otherwise. An unhandled error is answered 500 here, before Starlette's own error middleware (which sits
    outside every other middleware) could answer it without the headers; the error is then raised on, to be
    logged as before. Files under `static_prefix` (the docs' assets) may be stored."""

    def __init__(self, app, static_prefix: str):  # noqa: ANN001 - ASGI app
        self.app, self.static_prefix = app, static_prefix

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI callables
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        static = scope["path"].startswith(self.static_prefix + "/")
        wanted = [(k.lower().encode(), v.encode()) for k, v in {**SECURITY_HEADERS, **({} if static else NO_STORE)}.items()]
        started = False

        async def send_secured(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                message = {**message, "headers": headers + [(k, v) for k, v in wanted if k not in present]}
            await send(message)

        try:
            await self.app(scope, receive, send_secured)
        except Exception:
            if not started:
                await _refuse(send_secured, 500, "internal server error")
            raise


def _raw_answer(status: str, detail: str) -> bytes:
    """An answer written by the protocol itself, before any request reached the app: closed, and secured."""
    body = json.dumps({"detail": detail}).encode()
    headers = {"content-type": "application/json", "content-length": str(len(body)), "connection": "close",
               **SECURITY_HEADERS, **NO_STORE}
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode() + body


HEAD_END = re.compile(rb"\n\r?\n")  # the blank line that ends a request's head (h11 takes a bare LF too)


class SlowClientGuard(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's line and headers: a client that opens a
    connection and sends nothing, or its headers a byte at a time, is cut off after `header_timeout` seconds
    (uvicorn itself only times out idle kept-alive connections, and resets that timer on every byte).

    It also holds the request head (line and headers) to `max_header_bytes`, answering 431 past it: h11's own cap
    applies only while a head is incomplete, so a larger head that arrives in one read would pass."""

    header_timeout = HEADER_TIMEOUT_S
    max_header_bytes = MAX_HEADER_BYTES
    _header_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0  # bytes of the awaited request head received so far
    _head_tail = b""  # its last bytes, where the blank line that ends it may have begun

    def connection_made(self, transport) -> None:  # noqa: ANN001
        super().connection_made(transport)
        _no_delay(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):  # awaiting a request's head
            self._unset_keepalive_if_required()
            self.transport.write(_raw_answer("431 Request Header Fields Too Large",
                                             f"request line and headers over {self.max_header_bytes} bytes"))
            self.transport.close()
            return
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers are complete
            self._disarm()

    def _head_too_large(self, data: bytes) -> bool:
        """Count the awaited head's bytes in `data` (up to its end, when it ends here) against the cap."""
        seen = self._head_tail + data
        end = HEAD_END.search(seen)
        size = self._head_bytes + (len(data) if end is None else end.end() - len(self._head_tail))
        if end is None:
            self._head_bytes, self._head_tail = size, seen[-2:]
        else:
            self._head_bytes, self._head_tail = 0, b""
        return size > self.max_header_bytes

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, with the same security headers as every other answer."""
        self._unset_keepalive_if_required()
        self.transport.write(_raw_answer("400 Bad Request", msg))
        self.transport.close()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if self.cycle is cycle and not self.transport.is_closing():  # waiting for the next request's headers
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        self._unset_keepalive_if_required()
        self.transport.write(_raw_answer("408 Request Timeout", f"request headers not received within "
                                                                f"{self.header_timeout:g} s"))
        self.transport.close()


def _no_delay(transport) -> None:  # noqa: ANN001 - an asyncio transport
    """Send each answer at once (TCP_NODELAY). asyncio sets it only on sockets made with protocol IPPROTO_TCP; the
    socket uvicorn binds for several worker processes is made with protocol 0, so without this every answer on a
    kept-alive connection waited ~40 ms for the client's delayed ACK (uvicorn issue #3149)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def server_config(app: FastAPI | str, host: str, port: int, header_timeout_s: float = HEADER_TIMEOUT_S,
                  keep_alive_s: int = KEEP_ALIVE_S, log_level: str = "warning", workers: int = 1) -> uvicorn.Config:
    """How `aduana serve` runs the app: slow or idle clients timed out, headers capped, a bounded shutdown. With
    `workers` > 1, `app` is an app factory's import name, which each worker process calls."""
    protocol = SlowClientGuard if header_timeout_s == HEADER_TIMEOUT_S else \
        type("SlowClientGuard", (SlowClientGuard,), {"header_timeout": header_timeout_s})  # one process only
    return uvicorn.Config(app, host=host, port=port, http=protocol, timeout_keep_alive=keep_alive_s,
                          h11_max_incomplete_event_size=MAX_HEADER_BYTES, timeout_graceful_shutdown=10,
                          log_level=log_level, workers=workers, factory=isinstance(app, str))
