"""Ends the processes a CLI call started (Prefect's ephemeral server) when the CLI ends, however it ends.

Prefect starts its ephemeral server as a child process and stops it on a clean exit; after `kill -9` of the CLI
the server is re-parented and lives on. The CLI marks its environment with a token that every process it starts
inherits; this small process waits for the CLI to end, then terminates whatever still carries the token.

    python -m flows.orchestration.watchdog PID TOKEN
"""
from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path

from features.processes import alive

TOKEN_VARIABLE = "ADUANA_CLI_RUN"
POLL_SECONDS = 0.5
GRACE_SECONDS = 5.0


def marked(token: str) -> list[int]:
    """Processes whose environment carries this CLI call's token (read from /proc)."""
    needle = f"{TOKEN_VARIABLE}={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def watch(pid: int, token: str) -> None:
    while alive(pid) and os.getppid() == pid:
        time.sleep(POLL_SECONDS)
    leftover = marked(token)
    for p in leftover:
        os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline and any(alive(p) for p in leftover):
        time.sleep(0.1)
    for p in leftover:
        if alive(p):
            os.kill(p, signal.SIGKILL)


def start() -> None:
    """Mark this process's environment and start its watchdog (Linux: it reads /proc); elsewhere, nothing."""
    if not Path("/proc/self/environ").exists() or TOKEN_VARIABLE in os.environ:
        return
    import subprocess

    token = uuid.uuid4().hex
    os.environ[TOKEN_VARIABLE] = token
    subprocess.Popen([sys.executable, "-m", "flows.orchestration.watchdog", str(os.getpid()), token], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
