"""The decision log's copier: a process beside the API's that copies the operational log into the warehouse every
few seconds (serving/realtime.py `DecisionLog`).

In its own process its JSON parsing and framing never hold the API's GIL. Measured in the API's process, a copy of
1,000-1,500 answers took 77-107 ms every 5 s, and a request waited up to the 5 ms switch interval for its turn
meanwhile.

`python -m serving.decision_copy WAREHOUSE SECONDS WAIT`, with the log's locator in ADUANA_COPY_LOG (a PostgreSQL URL
is no argument `ps` shows). WAIT is how long a copy waits for another process's lock on the warehouse. It copies
until its standard input closes (the API closed it, or died). While the log is unchanged since its last good copy
(`fingerprint`: the journal's segment sizes) it opens the warehouse once a minute, not every few seconds. It writes
a line to standard output whenever the copy's state changes: `ok`, or `warning <why>` (the warehouse was busy or
could not be reached) or `error <why>`."""
from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from pathlib import Path

from features.warehouse import WAREHOUSE_ERRORS, OperationalLog, Warehouse, failure_text, reopen_log

LOCATOR = "ADUANA_COPY_LOG"
# With the log unchanged since its last good copy, the copier still copies this often: a warehouse restored from a
# backup meanwhile (its cursors behind the log) is caught up without a new answer.
IDLE_COPY_S = 60.0


def copy_once(warehouse: Warehouse, oplog: OperationalLog) -> tuple[int, str | None]:
    """Copy the log's new answers into the warehouse: (rows added, None), or (0, `warning <why>` / `error <why>`);
    the rows not copied stay in the log for the next copy."""
    try:
        with warehouse.process_lock():
            return warehouse.decisions.sync(oplog), None
    except Exception as exc:  # noqa: BLE001 - the rows stay in the log; the next copy takes them
        return 0, f"{'warning' if isinstance(exc, WAREHOUSE_ERRORS) else 'error'} {failure_text(exc)}"


def main(argv: list[str]) -> None:
    warehouse = Warehouse(Path(argv[0]), busy_wait=float(argv[2]))
    every = float(argv[1])
    oplog = reopen_log(os.environ[LOCATOR])
    with contextlib.suppress(OSError):
        os.nice(10)  # background work: the API's requests get the CPU first
    reported, copied, copied_at = None, None, 0.0
    try:
        while not select.select([sys.stdin], [], [], every)[0]:  # readable: end of file, the API is gone
            if not warehouse.path.parent.exists():  # its home was removed (a test's temporary folder, say)
                return
            mark = oplog.fingerprint()  # taken before the copy: rows added meanwhile change the next one
            if mark is not None and mark == copied and time.monotonic() - copied_at < IDLE_COPY_S:
                continue  # nothing new since the last good copy: the warehouse is not opened
            state = copy_once(warehouse, oplog)[1] or "ok"
            copied, copied_at = (mark, time.monotonic()) if state == "ok" else (None, 0.0)
            if state != reported:
                print(" ".join(state.split()), flush=True)
                reported = state
    finally:
        oplog.close()


if __name__ == "__main__":
    main(sys.argv[1:])
