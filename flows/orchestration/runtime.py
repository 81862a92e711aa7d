"""The top of the stack: the process environment for flows, and the runtime each flow builds once and hands down.

`configure` (called by the CLI before Prefect is imported, never at import time) quiets telemetry and keeps
Prefect's state under ADUANA_HOME unless told otherwise. `current()` is a flow's Runtime: the settings (read once),
the warehouse, the MLflow client and the registry's models; nothing below flows/ reads the environment.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from features.errors import UserError
from flows.settings import Settings

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from features.warehouse import OperationalLog, Warehouse
    from serving.scorer import Scorer
    from training.registry import RegistryModels

QUIET = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "False",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "DASK_LOGGING__DISTRIBUTED": "warning",  # a Dask cluster's workers and scheduler: no line per start and stop
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
    stacked = settings.stack_stores()
    if stacked and "PREFECT_API_URL" not in os.environ:
        # This home's production stack is up (`aduana stack up`): its Prefect server, with its secret, instead of the
        # home's own server or the ephemeral one. `connect` then has nothing to start; the environment carries both
        # to what the CLI starts (the worker, its flow runs). A PREFECT_API_URL the user gave wins.
        from flows.orchestration import stack

        os.environ["PREFECT_API_URL"] = stacked["PREFECT_API_URL"]
        with contextlib.suppress(OSError):  # no secret to read: the server's refusal then says so
            os.environ["PREFECT_API_AUTH_STRING"] = stack.auth_string(settings.stack_dir)
        if ended := stack.stopped(settings.stack_dir):
            print(f"aduana: warning: this home's stack is up but {', '.join(ended)} stopped: 'aduana stack up' "
                  "starts it again ('aduana stack down': back to the embedded stores)", file=sys.stderr)


def settle_gc() -> None:
    """Garbage collection for a CLI process: most of what it allocates is the modules it imports, which live
    until it ends, so the young generation is collected less often (mild for `serve` too), and the collection
    over the whole heap at exit is skipped (gc.freeze at exit, registered before the libraries' own exit
    handlers, which run before it). The warehouse and the MLflow store commit and close as they go, so nothing
    waits on a collection at exit."""
    import atexit
    import gc

    gc.set_threshold(10_000, 10, 10)
    atexit.register(gc.freeze)


def connect(settings: Settings) -> None:
    """Point this process's flows at the home's Prefect server, with the home's API secret, starting it if none
    answers. The environment carries both to what the CLI starts (`prefect deploy`, the worker, its flow runs).
    Nothing when the user chose the ephemeral server, nor when they gave PREFECT_API_URL (their server, their
    credentials), except that a URL of this home's own server gets its secret if they gave none. Called by CLI
    commands that run flows, after their arguments are checked."""
    if settings.prefect_server == "ephemeral" and "PREFECT_API_URL" not in os.environ:
        return
    from flows.orchestration import server

    if "PREFECT_API_URL" in os.environ:
        ours = server.recorded(settings.prefect_home)
        if ours is not None and ours.protected and os.environ["PREFECT_API_URL"].rstrip("/") == ours.api_url:
            with contextlib.suppress(OSError):  # no secret to read: Prefect then says what the server refused
                os.environ.setdefault("PREFECT_API_AUTH_STRING", server.auth_string(settings.prefect_home))
        return
    started_at = time.monotonic()
    found, started = server.ensure(settings.prefect_home, settings.prefect_server_idle_minutes)
    os.environ["PREFECT_API_URL"] = found.api_url
    os.environ["PREFECT_API_AUTH_STRING"] = server.auth_string(settings.prefect_home)
    if started:
        progress(f"started this home's Prefect server in {time.monotonic() - started_at:.0f} s: UI at {found.ui_url} "
                 f"(the next calls reuse it; {server.lifetime(settings.prefect_server_idle_minutes)})")


_SETTINGS: ContextVar[Settings | None] = ContextVar("aduana_settings", default=None)
_URIS_WE_SET: set[str] = set()  # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; ours is not the user's


@contextlib.contextmanager
def using(settings: Settings) -> Iterator[Settings]:
    """Run what is inside with these settings (the CLI's --home) instead of those of the environment."""
    token = _SETTINGS.set(settings)
    try:
        yield settings
    finally:
        _SETTINGS.reset(token)


def current() -> Runtime:
    """The runtime of the flow being run: the settings the CLI chose, else the environment's, read now."""
    return Runtime(_SETTINGS.get() or Settings())


def tracking_uri(settings: Settings) -> str:
    """The MLflow store of these settings: the user's MLFLOW_TRACKING_URI (not one this process exported itself),
    else the stack's tracking server while it is up, else the sqlite store under ADUANA_HOME."""
    user_uri = settings.mlflow_tracking_uri
    if user_uri and user_uri not in _URIS_WE_SET:
        return user_uri
    return settings.stack_stores().get("MLFLOW_TRACKING_URI") or f"sqlite:///{settings.mlflow_db}"


class Runtime:
    """What a flow works with, built once at its start and passed to its tasks. A plain class, not a dataclass:
    Prefect then hands it to tasks as it is, without copying its fields."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @cached_property
    def warehouse(self) -> Warehouse:
        from features.warehouse import Warehouse  # imported when used: the CLI starts without pandas

        return Warehouse(self.settings.warehouse_path)

    @cached_property
    def client(self) -> MlflowClient:
        """MLflow pointed at the user's MLFLOW_TRACKING_URI, else at the tracking server of this home's production
        stack while it is up, else at the sqlite store under ADUANA_HOME."""
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = tracking_uri(self.settings)
        _URIS_WE_SET.add(uri)
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)  # the fluent API (runs, model logging) reads the process-wide URI
        mlflow.set_registry_uri(uri)
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    @cached_property
    def models(self) -> RegistryModels:
        from training.registry import RegistryModels

        return RegistryModels(self.client)

    @cached_property
    def oplog(self) -> OperationalLog:
        """The operational decision log: the PostgreSQL database of ADUANA_OPS_URL, else the home's journal."""
        from features.warehouse import open_log

        return open_log(self.settings.ops_url, self.settings.warehouse_path)

    def sync_decisions(self) -> int:
        """Copy the operational log's answers the warehouse lacks (the API copies them every few seconds; a flow
        that reads the decisions, the audit and the monitor, first takes every answer given). Returns the rows."""
        copied = self.warehouse.decisions.sync(self.oplog)
        if copied:
            progress(f"copied {copied:,} real-time decisions from {self.oplog.where} into the warehouse")
        return copied

    def scorer(self, policy: Path | str | None = None) -> Scorer:
        """The scorer on this home's warehouse and champion, with the lane policy file given (or the settings')."""
        from serving.lanes import load_policy
        from serving.scorer import Scorer

        return Scorer(self.warehouse, load_policy(Path(policy) if policy else self.settings.lane_policy), self.models,
                      reload_seconds=self.settings.reload_seconds)

    @property
    def artifacts(self) -> Path:
        return self.settings.mlflow_artifacts


def progress(message: str) -> None:
    """A progress line, once: to the Prefect run log (the UI) when inside a run, and to stderr when nothing else
    shows it there (outside a run, or under the CLI, which silences Prefect's console handler). On a worker the
    console handler already prints the log line, so it is not printed again."""
    logged = False
    if "prefect" in sys.modules:  # else not inside a run, and no need to import Prefect to know it
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger

        with contextlib.suppress(MissingContextError):
            get_run_logger().info(message)
            logged = True
    if not logged or os.environ.get("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL") == "CRITICAL":
        print(message, file=sys.stderr, flush=True)


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


@contextlib.contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary name beside `path` (hidden, ending in .tmp) to write `path`'s new content to. When the block
    ends without error it is renamed to `path` in one step; when it fails it is removed, and a previous file at
    `path` stays as it was. So a file appears only once the work it stands for (a batch's logged decisions) is
    done, and no reader ever sees a half-written one."""
    if path.is_dir():  # refused before the work, not at the rename after it
        raise UserError(f"{path} is a folder: give the output a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")  # a unique name: two runs, one path
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
