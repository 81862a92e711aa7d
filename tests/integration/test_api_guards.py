"""The guards around the app (serving/api/guards.py): bodies over the cap or too slow to arrive, slow and oversized
request heads, idle connections, answers the server writes itself, and the security headers of every answer; and
how `aduana serve` configures the server with them. Each case answers a documented status, never a 500."""
from __future__ import annotations

import base64
import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from serving import ui
from serving.api import create_app, server_config
from serving.api.guards import JSON_CSP, MAX_HEADER_BYTES
from tests.conftest import free_port
from tests.integration.test_api import _declaration, api_scorer  # noqa: F401 - a module-scoped fixture

pytestmark = pytest.mark.integration



@contextmanager
def running(app, **config) -> Iterator[str]:  # noqa: ANN001
    """The app served by uvicorn (as `aduana serve` configures it) in a thread, stopped however the test ends."""
    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_chunked_body_over_the_cap_is_413(api_scorer):  # noqa: F811
    def chunks():
        for _ in range(20):
            yield b" " * 100_000  # 2 MB in all, with no Content-Length

    with running(create_app(api_scorer, api_key="", decision_log=False)) as url:
        response = httpx.post(f"{url}/v1/score", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413, response.text
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_a_body_that_trickles_in_is_408_and_the_connection_closed(api_scorer):  # noqa: F811
    with running(create_app(api_scorer, api_key="", decision_log=False, body_timeout_s=1.0)) as url:
        sock = _raw(url)
        try:
            sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 500\r\n\r\n{")
            t = time.perf_counter()
            answer = _read_all(sock)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert time.perf_counter() - t < 5
            assert b"x-content-type-options: nosniff" in answer.lower()  # BodyGuard's own answer is secured too
        finally:
            sock.close()


def test_slow_headers_and_idle_connections_are_closed(api_scorer):  # noqa: F811
    with running(create_app(api_scorer, api_key="", decision_log=False), header_timeout_s=1.0) as url:
        idle = [_raw(url) for _ in range(50)]
        slow = _raw(url)
        try:
            slow.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\n")  # and nothing more
            t = time.perf_counter()
            for sock in [slow, *idle]:
                assert not _read_all(sock).startswith(b"HTTP/1.1 2")
            assert time.perf_counter() - t < 8
            assert httpx.get(f"{url}/healthz").status_code == 200  # the server itself is fine
        finally:
            for sock in [slow, *idle]:
                sock.close()


def _head_of(size: int) -> bytes:
    """A GET /healthz (closing the connection after) whose request line and headers come to `size` bytes."""
    start, end = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Padding: ", b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


def test_a_request_head_over_16_kb_is_431_even_in_one_read(api_scorer):  # noqa: F811
    """h11 caps only an incomplete head: a 20 KB one that arrives in a single read was accepted before."""
    with running(create_app(api_scorer, api_key="", decision_log=False)) as url:
        for size, status in ((15_000, b"200"), (MAX_HEADER_BYTES, b"200"), (MAX_HEADER_BYTES + 1, b"431"),
                             (20_000, b"431"), (64_000, b"431")):
            sock = _raw(url)
            try:
                sock.sendall(_head_of(size))
                answer = _read_all(sock)
            finally:
                sock.close()
            assert answer.startswith(b"HTTP/1.1 " + status), (size, answer[:200])
            if status == b"431":
                assert b"x-content-type-options: nosniff" in answer.lower()
        sock = _raw(url)  # a head in many small reads is counted the same way
        try:
            head = _head_of(20_000)[:MAX_HEADER_BYTES + 1000]  # not ended yet, and already over the cap
            for i in range(0, len(head), 1000):
                sock.sendall(head[i:i + 1000])
                time.sleep(0.005)
            assert _read_all(sock).startswith(b"HTTP/1.1 431")
        finally:
            sock.close()
        with httpx.Client(base_url=url) as kept_alive:  # a kept-alive connection: each request's head on its own
            for _ in range(3):
                assert kept_alive.get("/healthz", headers={"X-Padding": "p" * 15_000}).status_code == 200
        for sends in (1, 2):  # a head pipelined behind another request, in the same read or the next one
            first = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            sock = _raw(url)
            try:
                for part in ([first + _head_of(20_000)] if sends == 1 else [first, _head_of(20_000)]):
                    sock.sendall(part)
                answers = _read_all(sock)
            finally:
                sock.close()
            assert answers.startswith(b"HTTP/1.1 200") and answers.count(b"HTTP/1.1 431") == 1, answers[:300]


def test_a_request_the_server_cannot_parse_is_answered_with_the_security_headers(api_scorer):  # noqa: F811
    with running(create_app(api_scorer, api_key="", decision_log=False)) as url:
        sock = _raw(url)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            answer = _read_all(sock)
        finally:
            sock.close()
    assert answer.startswith(b"HTTP/1.1 400") and b"x-content-type-options: nosniff" in answer.lower()


def _secured(response: httpx.Response, csp: str | None = JSON_CSP, stored: bool = False) -> bool:
    h = response.headers
    return (h.get("x-content-type-options") == "nosniff" and h.get("x-frame-options") == "DENY"
            and h.get("referrer-policy") == "no-referrer" and "frame-ancestors 'none'" in h.get("content-security-policy", "")
            and (csp is None or h["content-security-policy"] == csp)
            and (h.get("cache-control") == "no-store") != stored)


def test_every_answer_carries_the_security_headers(api_scorer, world, monkeypatch):  # noqa: F811
    """nosniff, a Content-Security-Policy with frame-ancestors 'none', X-Frame-Options and no referrer on every
    route and every error, 5xx included; no-store on all but the docs' static files."""
    c = TestClient(create_app(api_scorer, api_key="k", max_body_bytes=20_000, decision_log=False),
                   raise_server_exceptions=False)
    key = {"X-API-Key": "k"}
    json_answers = {
        "score": c.post("/v1/score", json=_declaration(world), headers=key),
        "422": c.post("/v1/score", json={**_declaration(world), "hs_code": "98"}, headers=key),
        "401": c.post("/v1/score", json=_declaration(world)),
        "413": c.post("/v1/score", content=b" " * 30_000, headers={**key, "content-type": "application/json"}),
        "openapi": c.get("/openapi.json"), "healthz": c.get("/healthz"), "readyz": c.get("/readyz"),
        "404": c.get("/nowhere"), "405": c.get("/v1/score"),
    }
    assert [r.status_code for r in json_answers.values()] == [200, 422, 401, 413, 200, 200, 200, 404, 405]
    assert all(_secured(r) for r in json_answers.values()), {k: dict(r.headers) for k, r in json_answers.items()}
    assert _secured(c.get("/ui", headers=key), csp=ui.HEADERS["Content-Security-Policy"])
    assert _secured(c.get("/ui"), csp=ui.HEADERS["Content-Security-Policy"])  # its 401 page
    assert _secured(c.get("/docs-assets/swagger-ui.css"), stored=True)
    docs, redoc = c.get("/docs"), c.get("/redoc")
    assert _secured(docs, csp=None) and _secured(redoc, csp=None)
    # Swagger UI's one inline script runs by its hash; nothing else inline, and every source is this server
    inline = re.search(r"<script>(.*?)</script>", docs.text, re.DOTALL).group(1).encode()
    digest = base64.b64encode(hashlib.sha256(inline).digest()).decode()
    script_src = next(d for d in docs.headers["content-security-policy"].split(";") if "script-src" in d)
    assert script_src.split() == ["script-src", "'self'", f"'sha256-{digest}'"]
    assert "script-src 'self';" in redoc.headers["content-security-policy"]
    assert "worker-src blob:" in redoc.headers["content-security-policy"]

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003
        raise RuntimeError("a bug")

    monkeypatch.setattr(api_scorer, "score_realtime", broken)
    crashed = c.post("/v1/score", json=_declaration(world), headers=key)
    assert crashed.status_code == 500 and _secured(crashed) and "a bug" not in crashed.text


def test_serve_refuses_an_open_interface_without_a_key(home, monkeypatch):
    from typer.testing import CliRunner

    import serving.scorer
    from flows.cli import app

    served = []
    monkeypatch.delenv("ADUANA_API_KEY", raising=False)
    monkeypatch.setattr(serving.scorer.ModelSource, "champion_version", lambda self: None)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: served.append(self.config))
    runner = CliRunner()
    refused = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert refused.exit_code != 0 and not served
    assert "ADUANA_API_KEY" in refused.output
    allowed = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--allow-open"])
    assert allowed.exit_code == 0, allowed.output
    assert "ADUANA_API_KEY" in allowed.output and len(served) == 1
    assert served[0].timeout_keep_alive <= 5 and served[0].h11_max_incomplete_event_size
    local = runner.invoke(app, ["serve"])
    assert local.exit_code == 0 and len(served) == 2
    monkeypatch.setenv("ADUANA_API_KEY", "k")
    assert runner.invoke(app, ["serve", "--host", "0.0.0.0"]).exit_code == 0 and len(served) == 3
