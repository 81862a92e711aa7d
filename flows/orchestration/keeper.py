"""Stops a home's Prefect server when nothing uses it, and at once when its home is deleted.

A server per home outlives the CLI calls that use it; without this, every home a script made and deleted (CI,
cron) left a server of about 250 MB behind. Started with the server (server._start), in a session of its own; it
ends when the server ends, however that comes.

Idle means, for the home's idle time: no CLI call has used the server (server.ensure stamps each use and holds a
lock on the stamp while the call runs), no flow run is running, pending or due to start, and no worker has sent a
heartbeat. The stamp is read every second; the API (with the home's secret) is asked only once the stamp is
stale, and an API that does not answer is not called idle.

    python -m flows.orchestration.keeper PREFECT_HOME PID PORT IDLE_MINUTES
"""
from __future__ import annotations

import base64
import json
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flows.orchestration import server

CHECK_SECONDS = 1.0  # how often it looks at the home, the process and the stamp: a few stats and a read of /proc
WORKER_SILENCE_SECONDS = 90.0  # a worker beats every 30 s (PREFECT_WORKER_HEARTBEAT_SECONDS): three missed
ACTIVE = ["RUNNING", "PENDING", "CANCELLING"]


def poll_seconds(idle_minutes: float) -> float:
    """How often the API is asked once the stamp is stale: a tenth of the idle time, between 1 s and 30 s."""
    return min(30.0, max(CHECK_SECONDS, idle_minutes * 60 / 10))


def started_at(pid: int) -> str | None:
    """The process's start time (in clock ticks, from /proc), or None once it has ended or is a zombie: with the
    pid, what tells the server from a later process that was given its pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def keep(prefect_home: Path, pid: int, port: int, idle_minutes: float) -> None:
    """Watch the server until it ends, stopping it when its home is gone or it has been idle long enough."""
    born = started_at(pid)
    found = server.Server(pid=pid, port=port, started=time.time(), protected=True)
    idle_seconds = idle_minutes * 60
    last_active = next_look = time.time()
    while born is not None and started_at(pid) == born:
        if not prefect_home.is_dir():  # the home deleted (or its prefect folder): nothing left to serve
            _stop(pid, "its home is gone")
            return
        last_active = max(last_active, _last_use(prefect_home))
        if idle_seconds > 0 and time.time() >= next_look and time.time() - last_active >= idle_seconds:
            if not _unused(prefect_home, found, idle_seconds):
                last_active = time.time()
            elif _stop_if_unused(prefect_home, pid, idle_minutes):
                return
            next_look = time.time() + poll_seconds(idle_minutes)
        time.sleep(CHECK_SECONDS)


def _last_use(prefect_home: Path) -> float:
    """When a CLI call last used the server: now while one runs, else when the last one began."""
    if server.in_use(prefect_home):
        return time.time()
    try:
        return server.used_file(prefect_home).stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _stop(pid: int, why: str) -> None:
    print(f"aduana keeper: stopping the Prefect server (pid {pid}): {why}", flush=True)
    server.end(pid)


def _stop_if_unused(prefect_home: Path, pid: int, idle_minutes: float) -> bool:
    """Stop the server unless a CLI call began using it since the check, under the lock that server.ensure
    records a use under: a call either finds no server (and starts one) or uses this one, never a dying one."""
    try:
        with server.locked(prefect_home):
            if time.time() - _last_use(prefect_home) < idle_minutes * 60:
                return False
            server.forget(prefect_home, pid)
            _stop(pid, f"idle for {idle_minutes:g} minutes")
    except FileNotFoundError:  # the home went meanwhile
        _stop(pid, "its home is gone")
    return True


def _unused(prefect_home: Path, found: server.Server, idle_seconds: float) -> bool:
    """No flow run or worker keeps the server (the CLI calls have been checked already)."""
    try:
        auth = server.auth_string(prefect_home)
    except FileNotFoundError:
        return True  # no client can sign in to it any more (server.ensure would replace it anyway)
    try:
        return not _busy(found, auth, idle_seconds)
    except (OSError, ValueError):  # not answering (busy, or still starting): ask again at the next look
        return False


def _busy(found: server.Server, auth: str, idle_seconds: float) -> bool:
    """A flow run running or pending, one scheduled within the idle time either side of now (a late one counts
    for that long only: without a worker it would wait for ever), or a worker heard from lately."""
    now = datetime.now(UTC)
    window = timedelta(seconds=idle_seconds)
    active = {"flow_runs": {"state": {"type": {"any_": ACTIVE}}}}
    due = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}, "expected_start_time": {
        "after_": (now - window).isoformat(), "before_": (now + window).isoformat()}}}
    if _post(found, "flow_runs/count", auth, active) or _post(found, "flow_runs/count", auth, due):
        return True
    silence = max(window, timedelta(seconds=WORKER_SILENCE_SECONDS))
    heard = {"workers": {"last_heartbeat_time": {"after_": (now - silence).isoformat()}}}
    return any(_post(found, f"work_pools/{urllib.parse.quote(pool['name'], safe='')}/workers/filter", auth, heard)
               for pool in _post(found, "work_pools/filter", auth, {}))


def _post(found: server.Server, path: str, auth: str, body: dict):
    request = urllib.request.Request(
        f"{found.api_url}/{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json",
                 "Authorization": "Basic " + base64.b64encode(auth.encode()).decode()})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


if __name__ == "__main__":
    keep(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
