"""Whether a process is alive: an exited process waiting to be reaped (a zombie) is not."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from features.processes import alive


def test_a_running_process_is_alive_and_an_exited_one_is_not_even_before_it_is_reaped():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert alive(child.pid) and alive(os.getpid())
        child.kill()
        deadline = time.monotonic() + 10
        while alive(child.pid):  # killed, not yet reaped: a zombie, which must read as dead
            assert time.monotonic() < deadline, "a killed, unreaped process still reads as alive"
            time.sleep(0.05)
        assert child.poll() is not None  # it was a zombie until reaped here
    finally:
        child.kill()
        child.wait()
    assert not alive(child.pid)
