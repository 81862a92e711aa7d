"""Whether a process is alive, by its id: standard library only, so that the small watchdog and keeper processes
import it without the data stack."""
from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """The process exists (one of another user counts: it cannot be signalled, but it is there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
