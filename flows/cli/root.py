"""The `aduana` group: its global options, how a command that runs flows starts them, and the checks of arguments
that refuse bad input before any flow (or Prefect server) starts."""
from __future__ import annotations

import functools
import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from flows import bars
from flows.orchestration import runtime
from flows.settings import Settings

app = typer.Typer(
    name="aduana",
    help="Open, data-driven customs risk management. All state lives under ADUANA_HOME (default ./.aduana).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: flags read as flags (Rich's tables print every flag as `<bool>`)
)
state = {"debug": False}

JsonOption = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout (errors too).")]
# An input file: checked when the arguments are parsed, before any flow (or Prefect server) starts.
INPUT = {"exists": True, "dir_okay": False, "readable": True}


def _print_version(asked: bool) -> None:
    if asked:
        print(importlib.metadata.version("aduana"))
        raise typer.Exit


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    home: Annotated[Path | None, typer.Option("--home", help="Use this ADUANA_HOME.", envvar="ADUANA_HOME")] = None,
    version: Annotated[bool, typer.Option("--version", help="Print the package version and exit.",
                                          callback=_print_version, is_eager=True)] = False,
) -> None:
    state["debug"] = debug
    settings = Settings(home=home) if home is not None else Settings()
    settings.make_home()
    ctx.with_resource(runtime.using(settings))  # the command's flows run with these settings, and only it
    runtime.configure(settings, debug)
    from flows.orchestration import watchdog

    watchdog.start()  # Prefect's ephemeral server ends with this process, even after kill -9


def settings() -> Settings:
    """The settings of the command being run (its --home)."""
    return runtime.current().settings


def runs_flows(command: Callable | None = None, *, check: Callable[..., None] | None = None) -> Callable:
    """A command that runs Prefect flows: once its arguments are checked (by Typer, then by `check`, given them
    all), connect to the home's Prefect server; long steps inside draw progress bars on a terminal. So a usage
    error, a mapping that does not fit its file included, is told in a second, not after a server's start."""
    if command is None:
        return functools.partial(runs_flows, check=check)

    @functools.wraps(command)
    def connected(*args, **kwargs):
        if check is not None:
            check(**kwargs)
        runtime.connect(settings())
        with bars.showing():  # a command's result (output.emit) takes them down: schedule's worker then has the terminal
            return command(*args, **kwargs)
    return connected


def check_layouts(paths: list[Path], mapping: Path | None, kind: str | None = "declarations") -> None:
    """Each file's header against the mapping (and the kind it is read as), reading no row: what ingest or
    scoring would refuse the file for as a whole, refused here (a UserError) before any flow starts."""
    from features.intake.checked import check_layout
    from features.intake.mapping import load_mapping

    loaded = load_mapping(mapping)
    for path in paths:
        check_layout(path, kind, loaded)


def headers_fit(*files: str) -> Callable[..., None]:
    """A `check` for a command that reads declarations: its named file arguments' headers against its --mapping."""
    def check(mapping: Path | None, **arguments) -> None:
        check_layouts([arguments[name] for name in files if arguments[name] is not None], mapping)
    return check


def os_user() -> str:
    """Who runs the command, as recorded with a promotion or an acknowledgement."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"
