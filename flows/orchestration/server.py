"""One local Prefect server per ADUANA_HOME: started by the first CLI call that runs a flow, reused by the next.

Prefect's ephemeral mode starts a temporary server in every CLI call (8–12 s before the first task) and forgets
its runs when the call ends. A server per home pays that once, keeps every run for the Prefect UI, and runs
schedules and automations. Its state is `<home>/prefect/server.json` (pid, port); its log is `server.log` beside
it. It runs until `aduana server stop`. A user's own PREFECT_API_URL always wins: then no server is started.

The server listens on loopback only, and its API asks for this home's secret (`<home>/prefect/api-auth`, mode
0600, Prefect's basic auth): whoever may send it requests can have a worker run code, so another local user, who
can reach the port but not read the file, is refused. infra/README.md states the boundary.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from flows.orchestration.watchdog import alive

PREFERRED_PORT = 4200  # Prefect's own default, so the README's URL is right for the first home
START_TIMEOUT_SECONDS = 90.0
# What the server must not inherit from the CLI: the watchdog's token (it would end the server with the call)
# and any API URL (the server is the API).
NOT_INHERITED = ("ADUANA_CLI_RUN", "PREFECT_API_URL")


@dataclass(frozen=True)
class Server:
    pid: int
    port: int
    started: float
    protected: bool = False  # started with the home's API secret; a state file from before secrets reads False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _state_file(prefect_home: Path) -> Path:
    return prefect_home / "server.json"


def log_file(prefect_home: Path) -> Path:
    return prefect_home / "server.log"


def auth_file(prefect_home: Path) -> Path:
    """Where the home's API secret is kept: what a user exports as PREFECT_API_AUTH_STRING for the prefect CLI,
    and types into the UI's login."""
    return prefect_home / "api-auth"


def auth_string(prefect_home: Path) -> str:
    """The home's API secret ("aduana:" and 256 random bits, so that `curl -u` takes it as it is)."""
    return auth_file(prefect_home).read_text().strip()


def _ensure_secret(prefect_home: Path) -> str:
    """The home's API secret, made on first start (under the start lock): written whole under a temporary name,
    readable by its owner only, then renamed, so it is never seen empty or half written."""
    with contextlib.suppress(FileNotFoundError):
        if kept := auth_string(prefect_home):
            return kept
    path = auth_file(prefect_home)
    secret = f"aduana:{secrets.token_urlsafe(32)}"
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return secret


def healthy(server: Server, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{server.api_url}/health", timeout=timeout) as answer:
            return answer.status == 200
    except OSError:
        return False


def recorded(prefect_home: Path) -> Server | None:
    """The server this home started, if its process is still alive (healthy or still starting)."""
    try:
        server = Server(**json.loads(_state_file(prefect_home).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return server if alive(server.pid) else None


def running(prefect_home: Path) -> Server | None:
    """The home's server if it answers now."""
    server = recorded(prefect_home)
    return server if server is not None and healthy(server) else None


@contextlib.contextmanager
def _locked(prefect_home: Path) -> Iterator[None]:
    """One starter at a time per home: two CLI calls at once share one server."""
    prefect_home.mkdir(parents=True, exist_ok=True)
    with open(prefect_home / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_port() -> int:
    for port in (PREFERRED_PORT, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise OSError("no free loopback port")


def ensure(prefect_home: Path, timeout: float = START_TIMEOUT_SECONDS) -> tuple[Server, bool]:
    """The home's server, started if none answers. Returns it and whether this call started it.

    A server started without the home's secret (by an Aduana from before secrets), or whose secret is gone, is
    stopped and started again with one: left running, it would let any local user in, or no client. Its runs
    are kept."""
    server = running(prefect_home)
    if server is not None and _protected(server, prefect_home):
        return server, False
    with _locked(prefect_home):
        server = recorded(prefect_home)
        if server is not None and not _protected(server, prefect_home):
            stop(prefect_home)
            server = None
        if server is None:
            server = _start(prefect_home)
            started = True
        else:  # another call is starting it, or it is busy: wait for it below
            started = False
        deadline = time.monotonic() + timeout
        while not healthy(server):
            _reap(server.pid)
            if not alive(server.pid):
                raise RuntimeError(f"the Prefect server for this home stopped while starting; see {log_file(prefect_home)}")
            if time.monotonic() > deadline:
                stop(prefect_home)
                raise RuntimeError(f"the Prefect server for this home did not answer within {timeout:.0f} s; "
                                   f"see {log_file(prefect_home)}")
            time.sleep(0.25)
    return server, started


def _protected(server: Server, prefect_home: Path) -> bool:
    """Started with the home's secret, and the secret is still there for its clients to read."""
    return server.protected and auth_file(prefect_home).exists()


def _start(prefect_home: Path) -> Server:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env |= {"PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true",
            "PREFECT_SERVER_API_AUTH_STRING": _ensure_secret(prefect_home)}
    with open(log_file(prefect_home), "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=prefect_home,
            start_new_session=True)  # its own process group: it outlives the call, and stop() ends all of it
    server = Server(pid=process.pid, port=port, started=time.time(), protected=True)
    _state_file(prefect_home).write_text(json.dumps(asdict(server)))
    return server


def stop(prefect_home: Path, grace: float = 10.0) -> Server | None:
    """End the home's server (its whole process group). Returns the server stopped, or None if none ran."""
    server = recorded(prefect_home)
    _state_file(prefect_home).unlink(missing_ok=True)
    if server is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(server.pid) and time.monotonic() < deadline:
        _reap(server.pid)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    _reap(server.pid)
    return server


def _reap(pid: int) -> None:
    """Collect the exit status when this process is the server's parent (it started it), so it is not a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
