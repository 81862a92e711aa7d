"""Whether a process is alive, by its id: standard library only, so that the small watchdog and keeper processes
import it without the data stack."""
from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """The process exists and has not exited (one of another user counts: it cannot be signalled, but it is there;
    a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A process that has exited and waits to be reaped (a killed worker whose parent died first, in a container
    whose first process reaps nobody): it answers signal 0 but will never run again."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux), or gone meanwhile
        return False
    return stat[stat.rfind(")") + 2:].startswith(("Z", "X"))
