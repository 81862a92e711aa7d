"""Model commands: `train` and `evaluate`, the registry (`promote`), the batches' `warnings`, and `monitor`."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from features.errors import UserError
from flows.cli.output import emit
from flows.cli.root import INPUT, JsonOption, headers_fit, os_user, runs_flows, settings

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def duration(text: str) -> float:
    """'10m', '90s', '1h' or plain seconds → seconds (a Click type: a bad one is a usage error, told at once)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text or "")
    if not found or float(found.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r}: give a duration such as 90s, 10m or 1h")
    return float(found.group(1)) * DURATION_UNITS[found.group(2) or "s"]


@runs_flows
def train(
    dataset: Annotated[str, typer.Option("--dataset", help="Experiment name suffix (one experiment per dataset).")]
    = "warehouse",
    iterations: Annotated[int | None, typer.Option("--iterations", min=10, help="CatBoost iterations (max).")] = None,
    tune: Annotated[bool, typer.Option("--tune", help="Search hyperparameters with Optuna first.")] = False,
    budget: Annotated[float, typer.Option("--budget", parser=duration, metavar="DURATION",
                                          help="Time for --tune, e.g. 10m, 90s, 1h.")] = "10m",
    dask: Annotated[str | None, typer.Option(
        "--dask", help="Build the features in partitions on a Dask cluster: its scheduler (tcp://host:8786), or "
                       "'local' for a LocalCluster on this machine. Default: ADUANA_DASK_ADDRESS, else in this "
                       "process.")] = None,
    dask_workers: Annotated[int | None, typer.Option(
        "--dask-workers", min=1, help="With --dask local: worker processes (default: one per core).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Retrain on the warehouse, log to MLflow, register @challenger and run the promotion gate."""
    from flows.render import train_text
    from flows.retrain import customs_retrain, with_dask

    address = dask or settings().dask_address
    run = with_dask(address, dask_workers) if address else customs_retrain
    result = run(dataset=dataset, iterations=iterations, tune_seconds=budget if tune else None, cluster=bool(address))
    emit(result, as_json, train_text(result, settings()))


@runs_flows(check=headers_fit("train_file", "test_file"))
def evaluate(
    train_file: Annotated[Path, typer.Option("--train", help="Labelled declarations to train on (CSV or Parquet).", **INPUT)],
    test_file: Annotated[Path, typer.Option("--test", help="Labelled declarations to evaluate on.", **INPUT)],
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML column mapping for both files.", **INPUT)] = None,
    iterations: Annotated[int | None, typer.Option("--iterations", min=10)] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the training pipeline on an explicit split and print holdout metrics (model vs the default-CatBoost reference)."""
    from flows.render import evaluate_text
    from flows.retrain import customs_evaluate

    result = customs_evaluate(str(train_file), str(test_file), str(mapping) if mapping else None, iterations)
    emit(result, as_json, evaluate_text(result))


def _check_promote(version: str | None, reason: str | None, rollback: bool, **_) -> None:
    if version is not None and rollback:
        raise UserError("give either --version or --rollback, not both")
    if version is not None and not reason:
        raise UserError("promote --version needs --reason: say why this version should serve")


@runs_flows(check=_check_promote)
def promote(
    version: Annotated[str | None, typer.Option("--version", help="Make this registry version the champion.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded with who and when).")] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Restore the previous champion.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the registry's champion and challenger, promote a version by hand, or roll the champion back."""
    from flows.promote import customs_promote
    from flows.render import promote_text

    result = customs_promote(version.removeprefix("v") if version else None, reason, rollback, os_user())
    emit(result, as_json, promote_text(result, settings().promotions_log))


def _check_warnings(ack: str | None, reason: str | None, kind: str | None, **_) -> None:
    from features.contract import KINDS

    if ack is None and reason is not None:
        raise UserError("--reason goes with --ack BATCH_ID")
    if ack is None and kind is not None and kind not in KINDS:
        raise UserError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if ack is not None and (not reason or not reason.strip()):
        raise UserError("--ack needs --reason TEXT: say why these failures are acceptable")


@runs_flows(check=_check_warnings)
def warnings_command(
    ack: Annotated[str | None, typer.Option("--ack", metavar="BATCH_ID",
                                            help="Acknowledge this batch's failed expectations (needs --reason).")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why the failures are acceptable.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only batches of this kind.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List batches whose dataset-level expectations failed, or acknowledge one (--ack BATCH_ID --reason TEXT).

    An acknowledged batch no longer counts as failed validation for the promotion gate, and its profile
    joins the dataset's reference, so its new codes or ranges become expected. Acknowledgements are
    append-only: who (the OS user), when and why are kept."""
    from flows.batch_warnings import customs_acknowledge, customs_warnings
    from flows.render import acknowledged_text, warnings_text

    if ack is None:
        rows = customs_warnings(kind)
        emit(rows, as_json, warnings_text(rows))
        return
    record = customs_acknowledge(ack, reason or "", os_user())
    emit(record, as_json, acknowledged_text(record))


@runs_flows
def monitor(
    window_days: Annotated[int | None, typer.Option("--window-days", min=1, help="Days in the recent window.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Window end date (default: newest declaration).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Check feature and score drift and selection outcomes against the champion; emit aduana.drift.detected."""
    from flows.monitor import customs_monitor
    from flows.render import monitor_text

    result = customs_monitor(window_days=window_days, as_of=as_of)
    emit(result, as_json, monitor_text(result))
