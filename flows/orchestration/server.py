"""One local Prefect server per ADUANA_HOME: started by the first CLI call that runs a flow, reused by the next.

Prefect's ephemeral mode starts a temporary server in every CLI call (8–12 s before the first task) and forgets
its runs when the call ends. A server per home pays that once, keeps every run for the Prefect UI, and runs
schedules and automations. Its state is `<home>/prefect/server.json` (pid, port); its log is `server.log` beside
it. A user's own PREFECT_API_URL always wins: then no server is started.

It does not outlive its use: a keeper started with it (flows/orchestration/keeper.py) stops it after the home's
idle time (prefect_server_idle_minutes) with no CLI call, flow run or worker, and at once when the home is deleted,
so that scripts running commands in throwaway homes leave no servers behind. `aduana server stop` ends it sooner;
`servers()` finds those of every home of this user (`aduana server status`, `aduana server stop --all`).

The server listens on loopback only, and its API asks for this home's secret (`<home>/prefect/api-auth`, mode
0600, Prefect's basic auth): whoever may send it requests can have a worker run code, so another local user, who
can reach the port but not read the file, is refused. infra/README.md states the boundary.
"""
from __future__ import annotations

import base64
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from features.processes import alive

PREFERRED_PORT = 4200  # Prefect's own default, so the README's URL is right for the first home
START_TIMEOUT_SECONDS = 90.0
# What the server must not inherit from the CLI: the watchdog's token (it would end the server with the call)
# and any API URL (the server is the API).
NOT_INHERITED = ("ADUANA_CLI_RUN", "PREFECT_API_URL")
# How the CLI starts a server (and how every Aduana did), and the mark in its environment: what tells a home's
# server from other Prefect processes (a user's own `prefect server start`, the stack's server on PostgreSQL).
COMMAND = ("-m", "prefect", "server", "start")
MARK = "ADUANA_HOME_SERVER"


@dataclass(frozen=True)
class Server:
    pid: int
    port: int
    started: float
    protected: bool = False  # started with the home's API secret; a state file from before secrets reads False
    keeper: int | None = None  # the pid of its keeper; a state file from before keepers has none

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


def used_file(prefect_home: Path) -> Path:
    """The stamp of the server's use by CLI calls, which the keeper reads (see _record_use)."""
    return prefect_home / "server.used"


_USES: dict[Path, object] = {}  # per home, this process's open stamp, which holds its shared lock


def _record_use(prefect_home: Path) -> None:
    """Mark the server used by this process: the stamp's time says when a call last began, and a shared lock on
    it, held until the process ends (the system drops it however the process ends), that a call is under way,
    for as long as it takes (a flow run only shows in the API once it is created)."""
    if prefect_home not in _USES:
        handle = open(used_file(prefect_home), "a")  # noqa: SIM115 (open until the process ends)
        fcntl.flock(handle, fcntl.LOCK_SH)
        _USES[prefect_home] = handle
    os.utime(used_file(prefect_home))


def in_use(prefect_home: Path) -> bool:
    """Whether a CLI call that uses the server is running now (holds the stamp's shared lock)."""
    try:
        with open(used_file(prefect_home)) as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except FileNotFoundError:
        return False
    return False


def auth_file(prefect_home: Path) -> Path:
    """Where the home's API secret is kept: what a user exports as PREFECT_API_AUTH_STRING for the prefect CLI,
    and types into the UI's login."""
    return prefect_home / "api-auth"


def auth_string(prefect_home: Path) -> str:
    """The home's API secret ("aduana:" and 256 random bits, so that `curl -u` takes it as it is)."""
    return auth_file(prefect_home).read_text().strip()


def lifetime(idle_minutes: float) -> str:
    """How long a started server lives, for the line that says it started."""
    if idle_minutes <= 0:
        return "it keeps running until 'aduana server stop'"
    return f"it stops after {idle_minutes:g} idle minutes, or at 'aduana server stop'"


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


def answers_with_secret(server: Server, prefect_home: Path, timeout: float = 1.0) -> bool:
    """The server on the port takes this home's secret: it is this home's, not another home's server that took the
    port first (its health check, open to all, would answer the same)."""
    try:
        secret = base64.b64encode(auth_string(prefect_home).encode()).decode()
        request = urllib.request.Request(f"{server.api_url}/admin/version", headers={"Authorization": f"Basic {secret}"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:
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
def held(lock_file: Path) -> Iterator[None]:
    """An exclusive lock on `lock_file` (fcntl: released when the process ends, however it ends)."""
    with open(lock_file, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def locked(prefect_home: Path) -> contextlib.AbstractContextManager[None]:
    """One starter or stopper at a time per home: two CLI calls at once share one server, and the keeper never
    stops it between a call's finding it and that call's use of it. Creates no folder: a home deleted stays so."""
    return held(prefect_home / "server.lock")


def _free_port(preferred: bool = True) -> int:
    for port in (PREFERRED_PORT, 0) if preferred else (0,):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise OSError("no free loopback port")


def ensure(prefect_home: Path, idle_minutes: float, timeout: float = START_TIMEOUT_SECONDS) -> tuple[Server, bool]:
    """The home's server, started if none answers (to stop after `idle_minutes` unused; 0: never). Returns it and
    whether this call started it. Either way the use is recorded, under the lock the keeper stops it under.

    A server started without the home's secret (by an Aduana from before secrets), or whose secret is gone, is
    stopped and started again with one: left running, it would let any local user in, or no client. Its runs
    are kept."""
    prefect_home.mkdir(parents=True, exist_ok=True)
    with locked(prefect_home):
        _record_use(prefect_home)
        server = recorded(prefect_home)
        if server is not None and not _protected(server, prefect_home):
            stop(prefect_home)
            server = None
        started = server is None
        if started:
            server = _start(prefect_home, idle_minutes)
        elif server.keeper is None or not alive(server.keeper):  # one an Aduana from before keepers started
            server = _record(replace(server, keeper=_keep(prefect_home, server, idle_minutes)), prefect_home)
        try:
            _wait_healthy(server, prefect_home, timeout)
        except PortTaken:  # another home's server took the port between the choice and the bind: once more
            server = _start(prefect_home, idle_minutes, preferred=False)
            _wait_healthy(server, prefect_home, timeout)
    return server, started


class PortTaken(RuntimeError):
    """The server this call started ended while another process served its port."""


def _wait_healthy(server: Server, prefect_home: Path, timeout: float) -> None:
    """Wait for a server starting (this call's, or another's that is still starting) to answer."""
    deadline = time.monotonic() + timeout
    while not (healthy(server) and answers_with_secret(server, prefect_home)):
        _reap(server.pid)
        if not alive(server.pid):
            if healthy(server):
                _state_file(prefect_home).unlink(missing_ok=True)
                raise PortTaken(f"port {server.port} is another server's")
            raise RuntimeError(f"the Prefect server for this home stopped while starting; see {log_file(prefect_home)}")
        if time.monotonic() > deadline:
            stop(prefect_home)
            raise RuntimeError(f"the Prefect server for this home did not answer within {timeout:.0f} s; "
                               f"see {log_file(prefect_home)}")
        time.sleep(0.25)


def _protected(server: Server, prefect_home: Path) -> bool:
    """Started with the home's secret, and the secret is still there for its clients to read."""
    return server.protected and auth_file(prefect_home).exists()


def _start(prefect_home: Path, idle_minutes: float, preferred: bool = True) -> Server:
    """Start the server and its keeper, each in its own session: they outlive the call, and stop() ends all of
    the server's processes. The UI is told its own port's API: Prefect otherwise points every home's UI at
    4200 (the server's --port does not reach the UI's settings), where the first home's runs are."""
    port = _free_port(preferred)
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env |= {"PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "true",
            "PREFECT_SERVER_API_AUTH_STRING": _ensure_secret(prefect_home), MARK: "1",
            "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_UI_URL": f"http://127.0.0.1:{port}"}  # the links in automations' notifications
    with open(log_file(prefect_home), "ab") as log:
        process = subprocess.Popen(
            [sys.executable, *COMMAND, "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=prefect_home,
            start_new_session=True)
    server = Server(pid=process.pid, port=port, started=time.time(), protected=True)
    return _record(replace(server, keeper=_keep(prefect_home, server, idle_minutes)), prefect_home)


def _keep(prefect_home: Path, server: Server, idle_minutes: float) -> int:
    """Start the server's keeper (flows/orchestration/keeper.py). Returns its pid."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    with open(log_file(prefect_home), "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "flows.orchestration.keeper", str(prefect_home), str(server.pid),
             str(server.port), str(idle_minutes)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=prefect_home,
            start_new_session=True).pid


def _record(server: Server, prefect_home: Path) -> Server:
    _state_file(prefect_home).write_text(json.dumps(asdict(server)))
    return server


def stop(prefect_home: Path, grace: float = 10.0) -> Server | None:
    """End the home's server (its whole process group). Returns the server stopped, or None if none ran."""
    server = recorded(prefect_home)
    _state_file(prefect_home).unlink(missing_ok=True)
    if server is not None:
        end(server.pid, grace=grace)
    return server


def forget(prefect_home: Path, pid: int) -> None:
    """Remove the home's state file if it names this server (which another process is ending)."""
    with contextlib.suppress(OSError, ValueError, TypeError):
        if Server(**json.loads(_state_file(prefect_home).read_text())).pid == pid:
            _state_file(prefect_home).unlink(missing_ok=True)


def end(*pids: int, grace: float = 10.0) -> None:
    """Terminate servers' process groups, all at once, then kill what is left of them after `grace` seconds."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        for pid in pids:
            _reap(pid)
        time.sleep(0.1)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
        _reap(pid)


def _signal(pid: int, number: int) -> None:
    """The server's group (it leads one); a process that leads none, alone."""
    try:
        os.killpg(pid, number)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)


def _reap(pid: int) -> None:
    """Collect the exit status when this process is the server's parent (it started it), so it is not a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass(frozen=True)
class Resident:
    """A home's server found running, whichever home (or Aduana) started it."""
    pid: int
    port: int | None
    prefect_home: Path

    @property
    def home(self) -> Path:
        return self.prefect_home.parent  # Settings.prefect_home is `<home>/prefect`

    def describe(self) -> dict:
        """What `aduana server status` says of it (no port: one started some other way, its address unknown)."""
        ui = None if self.port is None else f"http://127.0.0.1:{self.port}"
        return {"home": str(self.home), "home_exists": self.prefect_home.is_dir(), "pid": self.pid,
                "port": self.port, "ui": ui, "api": None if ui is None else f"{ui}/api"}


def servers(under: Path | None = None) -> list[Resident]:
    """The home servers this user's processes run, those whose home is deleted included; with `under`, only
    homes inside that folder. Read from /proc: `python -m prefect server start` with a PREFECT_HOME and the mark,
    or without the mark (an Aduana from before it) on its own SQLite database, as a home's server is."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                resident = _resident(entry)
                if resident is not None and (under is None or resident.prefect_home.is_relative_to(under.resolve())):
                    found.append(resident)
    return sorted(found, key=lambda r: r.pid)


def _resident(entry: Path) -> Resident | None:
    if entry.stat().st_uid != os.getuid():
        return None
    args = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")]
    if not any(tuple(args[i:i + len(COMMAND)]) == COMMAND for i in range(len(args))):
        return None
    environ = dict(v.split(b"=", 1) for v in (entry / "environ").read_bytes().split(b"\0") if b"=" in v)
    if b"PREFECT_HOME" not in environ or (MARK.encode() not in environ
                                          and b"PREFECT_API_DATABASE_CONNECTION_URL" in environ):
        return None
    port = args[args.index("--port") + 1] if "--port" in args[:-1] else None
    return Resident(pid=int(entry.name), port=int(port) if port and port.isdigit() else None,
                    prefect_home=Path(environ[b"PREFECT_HOME"].decode(errors="replace")))


def stop_all(under: Path | None = None) -> list[Resident]:
    """End every home's server this user runs (`servers(under)`). Returns those stopped."""
    found = servers(under)
    end(*(resident.pid for resident in found))
    for resident in found:
        forget(resident.prefect_home, resident.pid)
    return found
