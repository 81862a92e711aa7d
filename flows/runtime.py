"""Process environment for flows: quiet telemetry, and Prefect state kept under ADUANA_HOME unless told otherwise.

Called by the CLI before Prefect is imported, never at import time.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path

from features.settings import Settings

QUIET = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "False",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def configure(settings: Settings, debug: bool = False) -> None:
    """Set defaults the user has not set: each ADUANA_HOME gets its own Prefect home (ephemeral mode).

    Without --debug, Prefect's console handler is silenced: the CLI prints its own progress and one-line
    errors, while the full run logs (tracebacks included) still go to the Prefect API and its UI.
    """
    for name, value in QUIET.items():
        os.environ.setdefault(name, value)
    if not debug:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no store-migration or input-example notes
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    if "PREFECT_API_URL" not in os.environ and "PREFECT_HOME" not in os.environ:
        settings.prefect_home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(settings.prefect_home)


def progress(message: str) -> None:
    """A progress line for people (stderr), and for the Prefect run log (the UI) when inside a run."""
    print(message, file=sys.stderr, flush=True)
    if "prefect" not in sys.modules:  # not inside a run, and no need to import Prefect to know it
        return
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    with contextlib.suppress(MissingContextError):
        get_run_logger().info(message)


LANDING_SUFFIXES = (".csv", ".parquet")


def landing_files(folder: Path) -> list[Path]:
    """The data files waiting at the top of a landing folder, oldest first."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in LANDING_SUFFIXES]
    return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))


def file_away(path: Path, destination: Path, note: str | None = None) -> Path:
    """Move a processed file into `destination` (never overwriting), with an optional `.reason.txt` beside it."""
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / path.name
    if target.exists():
        target = destination / f"{path.stem}-{int(time.time() * 1000)}{path.suffix}"
    path.replace(target)
    if note:
        target.with_name(target.name + ".reason.txt").write_text(note + "\n")
    return target
