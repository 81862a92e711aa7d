"""The production stack of one home on one machine: `aduana stack up|status|down`.

PostgreSQL (flows/orchestration/postgres.py) holds three databases: `prefect` for a Prefect server, `mlflow` for an
MLflow tracking server (`mlflow server`, which also serves the artifacts, kept under the stack's folder), and
`aduana_ops` for the operational tables that many writers share. Everything is under `<home>/stack/`: the record
`stack.json` (ports, kept across restarts, and the servers' pids), the servers' logs (`logs/`), the Prefect
server's own PREFECT_HOME and API secret (`prefect/`), the artifacts (`mlflow-artifacts/`) and the cluster
(`postgres/`, a link as root). Each server runs detached in its own process group and outlives the call.

While the record says the stack is up, the CLI in that home uses it with no setting exported: `stores()` gives the
three settings, which a value the user set (PREFECT_API_URL, MLFLOW_TRACKING_URI, ADUANA_OPS_URL) overrides
(flows/orchestration/runtime.py, flows/settings.py). The Prefect server asks for the stack's secret, as the home's
own server does (flows/orchestration/server.py); MLflow and PostgreSQL listen on loopback only.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from features.errors import UserError
from features.processes import alive
from flows.orchestration import postgres, server
from flows.orchestration.watchdog import TOKEN_VARIABLE

PIECES = ("postgres", "prefect", "mlflow")
DATABASES = ("prefect", "mlflow", "aduana_ops")
START_TIMEOUT_SECONDS = 120.0
# What the servers must not inherit from the CLI: the watchdog's token (it would end them with the call), and the
# client settings of whatever store the CLI was pointed at (each server is its own store).
NOT_INHERITED = (TOKEN_VARIABLE, "PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "PREFECT_HOME", "MLFLOW_TRACKING_URI",
                 "MLFLOW_REGISTRY_URI", "PREFECT_API_DATABASE_CONNECTION_URL")


def folder_of(home: Path) -> Path:
    return home / "stack"


def _record_file(folder: Path) -> Path:
    return folder / "stack.json"


def log_file(folder: Path, piece: str) -> Path:
    return folder / "logs" / f"{piece}.log"


def auth_file(folder: Path) -> Path:
    """The Prefect server's API secret: what clients send as PREFECT_API_AUTH_STRING and the UI's login asks for."""
    return folder / "prefect" / "api-auth"


def auth_string(folder: Path) -> str:
    return auth_file(folder).read_text().strip()


def read_record(folder: Path) -> dict:
    """The stack's record: {"up": bool, "ports": {piece: port}, "pids": {server: pid}}; empty when none is kept."""
    try:
        record = json.loads(_record_file(folder).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _write_record(folder: Path, record: dict) -> None:
    temporary = _record_file(folder).with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(temporary, _record_file(folder))


def urls(folder: Path, ports: dict) -> dict[str, str]:
    """The three settings a client of the stack uses, from its ports (the operational store's with its password)."""
    return {"PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api",
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports['mlflow']}",
            "ADUANA_OPS_URL": cluster(folder, ports["postgres"]).url("aduana_ops")}


def stores(folder: Path) -> dict[str, str]:
    """The settings of the stack recorded up in this folder (PREFECT_API_URL, MLFLOW_TRACKING_URI, ADUANA_OPS_URL);
    empty when none is. Reads one small file: no process is asked, so a stack that died is still used (and fails
    loudly, 'aduana stack up' restarts it) rather than silently replaced by the embedded stores."""
    record = read_record(folder)
    try:
        return urls(folder, record["ports"]) if record.get("up") else {}
    except (KeyError, TypeError):
        return {}


def stopped(folder: Path) -> list[str]:
    """The pieces of a stack recorded up whose process has ended (read from /proc, no server asked): the CLI says
    so before it fails to reach them."""
    record = read_record(folder)
    if not record.get("up"):
        return []
    pids = record.get("pids") or {}
    return [piece for piece, pid in (("postgres", _postmaster(cluster(folder))), *pids.items())
            if not (pid and _running(pid))]


def cluster(folder: Path, port: int = 0) -> postgres.Cluster:
    """The stack's PostgreSQL cluster, its role logging in with the stack's password (made by the first `up`)."""
    with contextlib.suppress(OSError):
        return postgres.Cluster(folder / "postgres", port, _password_file(folder).read_text().strip() or None)
    return postgres.Cluster(folder / "postgres", port)


def _password_file(folder: Path) -> Path:
    return folder / "postgres-password"


def up(home: Path, timeout: float = START_TIMEOUT_SECONDS) -> dict:
    """Start what of the stack does not run (all of it the first time); what runs is left as it is. Returns the
    status, with `started`: the pieces this call started, and `seconds_to_ready` for each piece."""
    postgres.server_bin()  # not installed: one line saying how to install it, before anything is made
    folder = folder_of(home)
    with _locked(folder):
        record = read_record(folder)
        record["up"] = False  # until every piece answers
        ports = _ports(folder, record)
        record["ports"] = ports
        pids = record.setdefault("pids", {})
        started, ready = [], {}
        if not cluster(folder).data.exists():  # a new cluster: its role gets a password
            _secret(_password_file(folder), "")
        pg = cluster(folder, ports["postgres"])
        began = time.monotonic()
        if not _pg_running(pg):
            pg.start()
            started.append("postgres")
        postgres.wait_ready(pg)
        for name in DATABASES:
            pg.create_database(name)
        ready["postgres"] = round(time.monotonic() - began, 1)
        waiting = {}
        for piece in ("prefect", "mlflow"):
            if not _ours(pids.get(piece), piece):
                pids[piece] = _start(folder, piece, ports)
                started.append(piece)
            waiting[piece] = pids[piece]
        _write_record(folder, record)  # the pids first: `down` finds what this call started, however it ends
        ready |= _wait_healthy(folder, waiting, ports, timeout)
        record["up"] = True
        _write_record(folder, record)
    return status(home) | {"started": started, "seconds_to_ready": ready}


def status(home: Path) -> dict:
    """Each piece (running or not, its address, pid and log) and the settings its clients use."""
    folder = folder_of(home)
    record = read_record(folder)
    ports, pids = record.get("ports") or {}, record.get("pids") or {}
    pieces = {}
    if ports:
        pg = cluster(folder, ports["postgres"])
        pg_running = _pg_running(pg)
        pieces["postgres"] = {"running": pg_running, "url": pg.url("aduana_ops"), "pid": _postmaster(pg) if pg_running
                              else None, "log": str(pg.log), "databases": list(DATABASES)}
        for piece, url in (("prefect", f"http://127.0.0.1:{ports['prefect']}"),
                           ("mlflow", f"http://127.0.0.1:{ports['mlflow']}")):
            pid = pids.get(piece)
            running = _ours(pid, piece) and _healthy(piece, ports[piece])
            pieces[piece] = {"running": running, "url": url, "pid": pid if running else None,
                             "log": str(log_file(folder, piece))}
    running = [name for name, piece in pieces.items() if piece["running"]]
    state = "up" if len(running) == len(PIECES) else "down" if not running else "partial"
    return {"state": state, "recorded_up": bool(record.get("up")), "folder": str(folder), "pieces": pieces,
            "settings": urls(folder, ports) if ports else {}, "auth_file": str(auth_file(folder))}


def down(home: Path, purge: bool = False) -> dict:
    """Stop MLflow, Prefect, then PostgreSQL; the data is kept, unless `purge`, which removes the stack's folder
    and the cluster's files. Returns the pieces stopped."""
    folder = folder_of(home)
    if not folder.exists():
        return {"stopped": [], "purged": False, "folder": str(folder)}
    stopped = []
    with _locked(folder):
        record = read_record(folder)
        pids = record.get("pids") or {}
        if record:
            record["up"] = False  # the CLI stops using the stack at once, even if a stop below fails
            _write_record(folder, record)
        for piece in ("mlflow", "prefect"):
            if _ours(pids.get(piece), piece):
                stop_process(pids[piece])
                stopped.append(piece)
        pg = cluster(folder)
        if _pg_running(pg):
            pg.stop()
            stopped.append("postgres")
        if record:
            record["pids"] = {}
            _write_record(folder, record)
    if purge:
        place = pg.place if pg.folder.is_symlink() else None
        shutil.rmtree(folder)
        if place is not None and place.parent == Path("/var/lib/postgresql/aduana"):  # only the link's own target
            shutil.rmtree(place, ignore_errors=True)
    return {"stopped": stopped, "purged": purge, "folder": str(folder)}


def stop_process(pid: int, grace: float = 10.0) -> None:
    """End a server's whole process group: SIGTERM, then SIGKILL after `grace` seconds."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _reap(pid) and _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> bool:
    """Collect a child's exit status (this process started it) so that it leaves no zombie. Always True."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    return True


def _ours(pid: int | None, piece: str) -> bool:
    """The recorded process is alive and is still this piece's server (not another process given its pid)."""
    if not pid or not _running(pid):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: alive is what can be told
    return piece.encode() in command and b"server" in command


def _running(pid: int) -> bool:
    """Alive and not a zombie (an ended server not yet collected by its parent, or by init)."""
    if not alive(pid):
        return False
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _healthy(piece: str, port: int, timeout: float = 1.0) -> bool:
    import urllib.request  # here: every CLI call reads the stack's record, few ask its servers

    path = "/api/health" if piece == "prefect" else "/health"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
            return answer.status == 200
    except OSError:
        return False


def _pg_running(pg: postgres.Cluster) -> bool:
    return pg.data.exists() and pg.running


def _postmaster(pg: postgres.Cluster) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((pg.data / "postmaster.pid").read_text().splitlines()[0])
    return None


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(folder: Path, record: dict) -> dict[str, int]:
    """The recorded ports, so that addresses stay the same across restarts; a piece that does not run and whose
    port another process took gets a new one."""
    ports = dict(record.get("ports") or {})
    pids = record.get("pids") or {}
    running = {"postgres": _pg_running(cluster(folder)),
               **{piece: _ours(pids.get(piece), piece) for piece in ("prefect", "mlflow")}}
    for piece in PIECES:
        port = ports.get(piece)
        if not port or not (running[piece] or _port_free(port)):
            ports[piece] = next(p for p in iter(postgres.free_port, 0) if p not in ports.values())
    return ports


def _start(folder: Path, piece: str, ports: dict) -> int:
    """Start one server detached (its own session and process group); returns its pid."""
    pg = cluster(folder, ports["postgres"])
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env |= {"DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    if piece == "prefect":
        home = folder / "prefect"
        home.mkdir(parents=True, exist_ok=True)
        env |= {"PREFECT_HOME": str(home), "PREFECT_API_DATABASE_CONNECTION_URL": pg.url("prefect", "+asyncpg"),
                "PREFECT_UI_API_URL": f"http://127.0.0.1:{ports['prefect']}/api",
                "PREFECT_SERVER_API_AUTH_STRING": _secret(auth_file(folder), "aduana:")}
        command = ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(ports["prefect"])]
        cwd = home
    else:
        artifacts = folder / "mlflow-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        env |= {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # about 0.5 GB instead of 2 (no job runner)
        env |= {"MLFLOW_BACKEND_STORE_URI": pg.url("mlflow", "+psycopg")}  # not in the command line: no password in ps
        command = ["mlflow", "server", "--host", "127.0.0.1", "--port", str(ports["mlflow"]), "--workers", "1",
                   "--serve-artifacts", "--artifacts-destination", str(artifacts)]
        cwd = folder
    log = log_file(folder, piece)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", *command], stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    return process.pid


def _wait_healthy(folder: Path, pids: dict[str, int], ports: dict, timeout: float) -> dict[str, float]:
    """Until each server answers its health endpoint (returns the seconds each took); one that stops or stays
    silent is an error naming its log."""
    names = {"prefect": "Prefect server", "mlflow": "MLflow server"}
    began = time.monotonic()
    deadline = began + timeout
    waiting, ready = dict(pids), {}
    while waiting:
        for piece, pid in list(waiting.items()):
            if _healthy(piece, ports[piece]):
                del waiting[piece]
                ready[piece] = round(time.monotonic() - began, 1)
            elif _reap(pid) and not _running(pid):
                raise UserError(f"the stack's {names[piece]} stopped while starting: {_last_line(folder, piece)}"
                                f"see {log_file(folder, piece)}")
            elif time.monotonic() > deadline:
                stop_process(pid)
                raise UserError(f"the stack's {names[piece]} did not answer within {timeout:.0f} s; see "
                                f"{log_file(folder, piece)}")
        if waiting:
            time.sleep(0.25)
    return ready


def _last_line(folder: Path, piece: str) -> str:
    """The log's last exception line (`SomeError: ...`), else its last line, as the start of an error message."""
    import re

    with contextlib.suppress(OSError, IndexError):
        lines = [line.strip() for line in log_file(folder, piece).read_text(errors="replace").splitlines()
                 if line.strip()]
        errors = [line for line in lines if re.match(r"[\w.]+(Error|Exception)\b", line)]
        return (errors or lines)[-1][:200] + "; "
    return ""


def _secret(path: Path, prefix: str) -> str:
    """A secret of the stack (the Prefect API's, PostgreSQL's password), made on first use: written whole, readable
    by its owner only."""
    import secrets

    with contextlib.suppress(OSError):
        if kept := path.read_text().strip():
            return kept
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = f"{prefix}{secrets.token_urlsafe(32)}"
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(secret + "\n")
    os.replace(temporary, path)
    return secret


def _locked(folder: Path) -> contextlib.AbstractContextManager[None]:
    """One `up` or `down` at a time per stack."""
    folder.mkdir(parents=True, exist_ok=True)
    return server.held(folder / "stack.lock")
