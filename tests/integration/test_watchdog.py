"""kill -9 of the CLI leaves no Prefect server behind: the watchdog ends what the CLI started."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.orchestration.watchdog import TOKEN_VARIABLE
from tests.conftest import write_csv

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    """Descendants of `pid`, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for child, parent in parents.items():
            if parent == current:
                found.append(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def test_a_killed_cli_leaves_no_ephemeral_server(tmp_path, world):
    path = write_csv(tmp_path / "declarations.csv", world.declarations.head(200))
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_HOME", TOKEN_VARIABLE)}
    env["ADUANA_HOME"] = str(tmp_path / "home")
    cli = subprocess.Popen([sys.executable, "-m", "flows.cli", "ingest", str(path)], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, servers = time.monotonic() + 90, []
        while time.monotonic() < deadline and not servers:
            servers = [p for p in _children(cli.pid) if "uvicorn" in _cmdline(p)]
            time.sleep(0.2)
        assert servers, "the CLI never started Prefect's ephemeral server"
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in servers):
            time.sleep(0.2)
        assert not any(_alive(p) for p in servers), [_cmdline(p) for p in servers if _alive(p)]
    finally:
        if cli.poll() is None:
            cli.kill()
