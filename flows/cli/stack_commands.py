"""`aduana stack up|status|down`: the production stack of this home on one machine (flows/orchestration/stack.py):
PostgreSQL, a Prefect server and an MLflow tracking server on it. While it is up, the CLI in this home uses it."""
from __future__ import annotations

import time
from typing import Annotated

import typer

from flows.cli.output import emit
from flows.cli.root import JsonOption, settings

stack_app = typer.Typer(help="This home's production stack: PostgreSQL, a Prefect server and an MLflow tracking "
                             "server on it, used by the CLI in this home while it is up.",
                        no_args_is_help=True, rich_markup_mode=None)


def _pieces_text(result: dict) -> list[str]:
    lines = []
    for name, piece in result["pieces"].items():
        state = "running" if piece["running"] else "stopped"
        pid = f"pid {piece['pid']}" if piece["pid"] else "no pid"
        lines.append(f"  {name:<9}{state:<9}{piece['url']}  ({pid}; log {piece['log']})")
    return lines


def _exports(result: dict) -> list[str]:
    """The settings as a user exports them for tools outside this home's CLI (the prefect CLI, a notebook)."""
    values = result["settings"]
    return [f"  export PREFECT_API_URL={values['PREFECT_API_URL']}",
            f"  export PREFECT_API_AUTH_STRING=\"$(cat {result['auth_file']})\"",
            f"  export MLFLOW_TRACKING_URI={values['MLFLOW_TRACKING_URI']}",
            f"  export ADUANA_OPS_URL={values['ADUANA_OPS_URL']}"]


def _status_text(result: dict, head: str) -> str:
    if not result["pieces"]:
        return f"{head}; 'aduana stack up' starts it"
    lines = [head, *_pieces_text(result)]
    if result["state"] == "up":
        prefect, mlflow = result["pieces"]["prefect"]["url"], result["pieces"]["mlflow"]["url"]
        lines += [f"Prefect UI: {prefect} (login: the secret in {result['auth_file']}); MLflow UI: {mlflow}",
                  "The CLI in this home uses the stack; for other tools:", *_exports(result)]
    elif result["recorded_up"]:
        lines.append("the CLI in this home still points at the stack: 'aduana stack up' restarts what stopped, "
                     "'aduana stack down' stops the rest")
    return "\n".join(lines)


@stack_app.command(name="up")
def stack_up(as_json: JsonOption = False) -> None:
    """Start the stack (PostgreSQL with databases prefect, mlflow and aduana_ops; the Prefect and MLflow servers);
    what already runs is left as it is, a piece that stopped is started again. Ports are kept across restarts."""
    from flows.orchestration import stack

    started_at = time.monotonic()
    result = stack.up(settings().root)
    result["seconds"] = round(time.monotonic() - started_at, 1)
    started = ", ".join(f"{piece} ({result['seconds_to_ready'][piece]:.0f} s)" for piece in result["started"])
    emit(result, as_json, _status_text(result, f"stack up in {result['seconds']:.0f} s; started: "
                                               f"{started or 'nothing (it was up)'}"))


@stack_app.command(name="status")
def stack_status(as_json: JsonOption = False) -> None:
    """Say which pieces of the stack run, where, and the settings its clients use."""
    from flows.orchestration import stack

    result = stack.status(settings().root)
    emit(result, as_json, _status_text(result, f"stack: {result['state']} ({result['folder']})"))


@stack_app.command(name="down")
def stack_down(
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the stack's data: its databases (runs, "
                                                        "models, operational tables) and artifacts.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Stop the MLflow server, the Prefect server, then PostgreSQL; the data is kept unless --purge. The CLI in
    this home then uses the embedded stores again."""
    from flows.orchestration import stack

    result = stack.down(settings().root, purge)
    stopped = ", ".join(result["stopped"]) or "nothing was running"
    emit(result, as_json, f"stack down: stopped {stopped}" + (f"; removed {result['folder']}" if purge else ""))
