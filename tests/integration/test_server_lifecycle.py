"""A home's Prefect server stops by itself: after the home's idle time with no CLI call using it (never while one
does), and at once when its home is deleted; its keeper ends with it. Real servers, with a 3 s idle time."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.orchestration import keeper, server

pytestmark = pytest.mark.integration

IDLE_MINUTES = "0.05"  # 3 s

# A CLI call that uses the server for a while: what a flow command does (server.ensure), then its work.
USE = """import sys, time
from pathlib import Path
from flows.orchestration import server
found, _ = server.ensure(Path(sys.argv[1]), float(sys.argv[2]))
print(found.pid, flush=True)
time.sleep(float(sys.argv[3]))
"""


@pytest.fixture
def home(tmp_path):
    yield tmp_path / "home"
    server.stop_all(under=tmp_path)  # however the test ends: by pid, only servers of homes inside tmp_path


def _gone_within(pid: int, seconds: float) -> float | None:
    """Seconds until the process ended (or became a zombie), or None if it still runs after `seconds`."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if keeper.started_at(pid) is None:
            return time.monotonic() - began
        time.sleep(0.2)
    return None


def _keepers(prefect_home: Path) -> list[int]:
    """The keeper processes watching this home's server (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if b"flows.orchestration.keeper" in args and str(prefect_home).encode() in args:
            found.append(int(entry.name))
    return found


def test_an_idle_server_stops_but_never_while_a_call_uses_it(home):
    prefect_home = home / "prefect"
    use = subprocess.Popen([sys.executable, "-c", USE, str(prefect_home), IDLE_MINUTES, "6"], stdout=subprocess.PIPE,
                           text=True)
    try:
        pid = int(use.stdout.readline())  # the server answers
        watching = _keepers(prefect_home)
        assert len(watching) == 1
        assert _gone_within(pid, 5) is None  # twice the idle time, and more, but the call still runs
        use.wait(timeout=30)
        stopped_after = _gone_within(pid, 20)
        assert stopped_after is not None and stopped_after > 1.0  # the idle time (3 s) counts from the call's end
        assert _gone_within(watching[0], 15) is not None  # the keeper ends with its server
        assert server.recorded(prefect_home) is None and not (prefect_home / "server.json").exists()
        assert "idle for 0.05 minutes" in server.log_file(prefect_home).read_text()
    finally:
        use.kill()
        use.wait()


def test_a_deleted_homes_server_stops_at_once(home):
    env = {**os.environ, "ADUANA_HOME": str(home), "ADUANA_PREFECT_SERVER": "home"}
    env.pop("PREFECT_API_URL", None)
    started = subprocess.run([sys.executable, "-m", "flows.cli", "server", "start", "--json"], capture_output=True,
                             text=True, env=env, timeout=120)
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["pid"]
    watching = _keepers(home.resolve() / "prefect")
    assert len(watching) == 1 and keeper.started_at(pid) is not None

    shutil.rmtree(home)  # what a script's throwaway home comes to: the default idle time (30 min) does not apply
    assert _gone_within(pid, 10) is not None
    assert _gone_within(watching[0], 15) is not None
