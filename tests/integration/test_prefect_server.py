"""One Prefect server per ADUANA_HOME: the first flow command starts it, the next ones reuse it, its runs stay
visible, two homes get two servers, and `aduana server stop` ends it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from flows import server


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ADUANA_HOME": str(home), "ADUANA_PREFECT_SERVER": "home"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env,
                          timeout=240)


def _flow_runs(found: server.Server) -> list[str]:
    request = urllib.request.Request(f"{found.api_url}/flow_runs/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return [run["state_type"] for run in json.load(answer)]


@pytest.fixture
def homes(tmp_path):
    made = [tmp_path / "a", tmp_path / "b"]
    yield made
    for home in made:  # however the test ends
        server.stop(home / "prefect")


def test_the_first_flow_starts_the_homes_server_and_the_next_reuse_it(homes, declarations_csv):
    a, b = homes
    first = _cli(a, "ingest", str(declarations_csv), "--json")
    assert first.returncode == 0, first.stderr
    assert "started this home's Prefect server" in first.stderr
    started = server.running(a / "prefect")
    assert started is not None

    second = _cli(a, "ingest", str(declarations_csv), "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["duplicates"] == json.loads(first.stdout)["stored"]
    assert "started this home's Prefect server" not in second.stderr
    assert server.running(a / "prefect") == started  # the same process, not a new one
    assert _flow_runs(started).count("COMPLETED") == 2  # both calls' runs are kept for the UI

    other = _cli(b, "ingest", str(declarations_csv), "--json")  # another home: its own server, its own runs
    assert other.returncode == 0, other.stderr
    b_server = server.running(b / "prefect")
    assert b_server is not None and b_server.port != started.port
    assert _flow_runs(b_server).count("COMPLETED") == 1

    status = json.loads(_cli(a, "server", "status", "--json").stdout)
    assert status["state"] == "running" and status["ui"] == started.ui_url
    stopped = json.loads(_cli(a, "server", "stop", "--json").stdout)
    assert stopped["state"] == "stopped" and server.recorded(a / "prefect") is None
    assert json.loads(_cli(a, "server", "status", "--json").stdout)["state"] == "stopped"
    assert server.running(b / "prefect") == b_server  # stopping one home's server leaves the other's


def test_commands_that_run_no_flow_start_no_server(homes, tmp_path):
    a, _ = homes
    assert _cli(a, "promote", "--json").returncode == 0
    assert _cli(a, "ingest", str(tmp_path / "missing.csv")).returncode == 2  # checked before any server starts
    assert server.recorded(a / "prefect") is None
