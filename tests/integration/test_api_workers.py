"""`aduana serve --workers N`'s supervisor (serving/api/workers.py) in real processes: every worker listens on the
port and takes connections, SIGTERM stops them all, and an app that cannot start stops the supervisor instead of
being restarted forever."""
from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi import FastAPI

from features.processes import alive
from flows.orchestration.postgres import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def app() -> FastAPI:
    """A worker's app: it says which process answered."""
    served = FastAPI()

    @served.get("/pid")
    def pid() -> dict:
        return {"pid": os.getpid()}

    return served


def broken() -> FastAPI:
    raise RuntimeError("this app cannot start")


def _supervisor(factory: str, port: int, workers: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "serving.api.workers", f"{__name__}:{factory}", str(port),
                             str(workers)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _pid(port: int) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # a new connection each time
    try:
        connection.request("GET", "/pid")
        return int(connection.getresponse().read().decode().split(":")[1].rstrip("}"))
    except (OSError, http.client.HTTPException, ValueError, IndexError):
        return None
    finally:
        connection.close()


def test_every_worker_takes_connections_and_sigterm_stops_them_all():
    port = free_port()
    supervisor = _supervisor("app", port, 2)
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 120
        while len(seen) < 2:  # new connections spread over both workers' sockets
            assert supervisor.poll() is None, supervisor.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, f"only {seen} answered"
            if (pid := _pid(port)) is not None:
                seen.add(pid)
            else:
                time.sleep(0.2)
        assert supervisor.pid not in seen
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
        assert not any(alive(pid) for pid in seen)  # the supervisor waited for its workers
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait()


def test_an_app_that_cannot_start_stops_the_supervisor():
    supervisor = _supervisor("broken", free_port(), 2)
    try:
        assert supervisor.wait(timeout=120) == 1
        assert "while starting" in supervisor.stderr.read().decode()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait()


def test_a_taken_port_is_refused_before_anything_is_built_with_a_clear_error():
    """A port another process listens on: `claim` says so (a UserError: the CLI prints one line), where the
    workers' SO_REUSEPORT sockets would otherwise have joined that process's group; a free port passes."""
    import socket

    from features.errors import UserError
    from serving.api.workers import claim

    port = free_port()
    claim("127.0.0.1", port)  # free: no error
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as a worker of another `aduana serve` binds it
        other.bind(("127.0.0.1", port))
        other.listen()
        with pytest.raises(UserError, match=rf"127\.0\.0\.1:{port}: the port is in use by another process"):
            claim("127.0.0.1", port)
    with pytest.raises(UserError, match="cannot serve on no-such-host.invalid"):
        claim("no-such-host.invalid", port)
