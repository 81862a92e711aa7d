"""The `aduana` command line: wiring from options to flows, and from results to flows/render.py's text.

Errors are one line and a non-zero exit code; --debug shows the traceback."""
from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from features.errors import UserError
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
_state = {"debug": False}
EX_TEMPFAIL = 75  # sysexits.h: a temporary failure (a busy warehouse); retrying later may succeed

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
    _state["debug"] = debug
    settings = Settings(home=home) if home is not None else Settings()
    settings.make_home()
    ctx.with_resource(runtime.using(settings))  # the command's flows run with these settings, and only it
    runtime.configure(settings, debug)
    from flows.orchestration import watchdog

    watchdog.start()  # Prefect's ephemeral server ends with this process, even after kill -9


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
        runtime.connect(_settings())
        with bars.showing():  # a command's result (_emit) takes them down: schedule's worker then has the terminal
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


def _check_ingest(paths: list[Path], mapping: Path | None, kind: str | None, **_) -> None:
    from features.contract import KINDS

    if kind is not None and kind not in KINDS:
        raise UserError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    check_layouts(paths, mapping, kind)


def _settings() -> Settings:
    return runtime.current().settings


def _emit(result: dict | list, as_json: bool, text: str) -> None:
    bars.finish()
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text)


class WorldName(StrEnum):
    """The embedded worlds `aduana generate` can write."""

    default = "default"  # declarations, manifests and traders in canonical fields
    islas = "islas"  # a third-party export: islas_train.csv, islas_test.csv, islas_arrivals.csv, its mapping file


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the world's files into.")],
    rows: Annotated[int, typer.Option("--rows", min=100, help="Number of declarations (goods items).")] = 200_000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same world.")] = 7,
    fmt: Annotated[str | None, typer.Option("--format", help="parquet or csv (default parquet). The default world "
                                                           "only: islas is always CSV.")] = None,
    world_name: Annotated[WorldName, typer.Option(
        "--world", help="default: declarations, manifests and traders in canonical fields. islas: a third-party "
                        "export in its own layout (islas_train.csv, islas_test.csv, and islas_arrivals.csv: the "
                        "test rows without their labels), with islas_mapping.yaml to ingest them all by.")
    ] = WorldName.default,
    as_json: JsonOption = False,
) -> None:
    """Simulate a customs administration: by default declarations, manifests and the trader registry."""
    from features.simulator import simulate, simulate_islas, write_islas, write_world
    from flows.render import generate_text

    if world_name is WorldName.islas:
        if fmt not in (None, "csv"):
            raise UserError(f"--format {fmt}: the islas world is written as CSV only")
        if rows < 500:
            raise UserError(f"--rows {rows}: the islas world needs at least 500 rows")
        runtime.progress(f"simulating the islas world: {rows:,} goods items (seed {seed})…")
        islas = simulate_islas(rows, seed=seed)
        paths = write_islas(islas, out)
        result = {"train": {"path": str(paths["train"]), "rows": len(islas.train)},
                  "test": {"path": str(paths["test"]), "rows": len(islas.test)},
                  "arrivals": {"path": str(paths["arrivals"]), "rows": len(islas.arrivals)},
                  "mapping": {"path": str(paths["mapping"])}, "bad_rows": islas.injected()}
        _emit(result, as_json, generate_text(result))
        return
    fmt = fmt or "parquet"
    if fmt not in ("parquet", "csv"):
        raise UserError(f"--format must be parquet or csv, not {fmt!r}")
    runtime.progress(f"simulating {rows:,} declarations (seed {seed})…")
    world = simulate(rows, seed=seed)
    paths = write_world(world, out, fmt)
    result = {name: {"path": str(p), "rows": len(getattr(world, name))} for name, p in paths.items()}
    _emit(result, as_json, generate_text(result))


@app.command()
@runs_flows(check=_check_ingest)
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="CSV or Parquet files: declarations, manifests, traders, outcomes.", **INPUT)],
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML column mapping for a foreign layout.", **INPUT)] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="declarations|manifests|traders|outcomes "
                                                             "(default: from the file name).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Validate files and store them in the warehouse; invalid rows go to quarantine with a reason."""
    from flows.ingest import customs_ingest
    from flows.render import ingest_text

    summaries = customs_ingest([str(p) for p in paths], kind=kind, mapping=str(mapping) if mapping else None)
    result = summaries[0] if len(summaries) == 1 else {"files": summaries, **_totals(summaries)}
    settings = _settings()
    _emit(result, as_json, ingest_text(summaries, settings.warehouse_path, settings.data_docs_index))


def _totals(summaries: list[dict]) -> dict:
    return {k: sum(s[k] for s in summaries) for k in ("read", "stored", "quarantined", "duplicates")}


@app.command()
@runs_flows
def train(
    dataset: Annotated[str, typer.Option("--dataset", help="Experiment name suffix (one experiment per dataset).")]
    = "warehouse",
    iterations: Annotated[int | None, typer.Option("--iterations", min=10, help="CatBoost iterations (max).")] = None,
    tune: Annotated[bool, typer.Option("--tune", help="Search hyperparameters with Optuna first.")] = False,
    budget: Annotated[str, typer.Option("--budget", help="Time for --tune, e.g. 10m, 90s, 1h.")] = "10m",
    as_json: JsonOption = False,
) -> None:
    """Retrain on the warehouse, log to MLflow, register @challenger and run the promotion gate."""
    from flows.render import train_text
    from flows.retrain import customs_retrain
    from training.tuning import parse_budget

    seconds = parse_budget(budget) if tune else None
    result = customs_retrain(dataset=dataset, iterations=iterations, tune_seconds=seconds)
    _emit(result, as_json, train_text(result, _settings()))


@app.command()
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
    _emit(result, as_json, evaluate_text(result))


@app.command()
@runs_flows(check=headers_fit("path"))
def score(
    path: Annotated[Path, typer.Argument(help="Declarations to score (CSV or Parquet).", **INPUT)],
    out: Annotated[Path, typer.Option("--out", help="Score output file (.csv or .parquet).", dir_okay=False)],
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML column mapping.", **INPUT)] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="YAML lane policy (capacity, exploration, rules).", **INPUT)] = None,
    as_json: JsonOption = False,
) -> None:
    """Give every declaration a lane (red/yellow/green) with reasons, using customs-risk@champion."""
    from flows.render import score_text
    from flows.score import customs_score

    result = customs_score(str(path), str(out), str(mapping) if mapping else None, str(policy) if policy else None)
    _emit(result, as_json, score_text(result))


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    policy: Annotated[Path | None, typer.Option("--policy", help="YAML lane policy.", **INPUT)] = None,
    max_items: Annotated[int, typer.Option("--max-items", min=1, help="Declarations per request.")] = 100,
    mapping: Annotated[Path | None, typer.Option(
        "--mapping", help="YAML column mapping: /v1/score also takes records in its source layout.", **INPUT)] = None,
    allow_open: Annotated[bool, typer.Option(
        "--allow-open", help="Serve on an interface other than loopback without ADUANA_API_KEY: anyone who can "
                             "reach it can score.")] = False,
) -> None:
    """Serve POST /v1/score, /healthz, /readyz and the OpenAPI docs (/docs) with uvicorn."""
    import ipaddress

    import uvicorn

    from features.intake.mapping import load_mapping
    from serving.api import create_app, server_config

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        loopback = False
    rt = runtime.current()
    if not loopback and not rt.settings.api_key:
        if not allow_open:
            typer.echo(f"aduana: refusing to serve scoring on {host} without a key: set ADUANA_API_KEY (clients "
                       "then send X-API-Key), or pass --allow-open to serve it open", err=True)
            raise typer.Exit(2)
        typer.echo(f"aduana: warning: serving scoring on {host} with no ADUANA_API_KEY: anyone who can reach it "
                   "can score declarations", err=True)
    scorer = rt.scorer(policy)
    app_ = create_app(scorer, max_items=max_items, mapping=load_mapping(mapping) if mapping else None,
                      api_key=rt.settings.api_key, secure_cookie=rt.settings.ui_secure_cookie)
    app_.state.service.refresh()
    runtime.progress(f"serving customs-risk v{scorer.version or '(none yet)'} on http://{host}:{port} "
                     "(docs: /docs, analysts' page: /ui)")
    uvicorn.Server(server_config(app_, host, port)).run()


@app.command()
@runs_flows
def audit(
    period: Annotated[str | None, typer.Option(
        "--period", help="START:END dates, a month (2024-11) or a year (2024). Default: the latest complete month "
                         "of the declarations in the warehouse.")] = None,
    capacity: Annotated[int, typer.Option("--capacity", min=1, help="Enterprises the audit teams can take.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Pick enterprises for post-clearance audit: expected unrecovered revenue in their released goods."""
    from flows.audit import customs_audit, parse_period
    from flows.render import audit_text

    if period is not None:
        parse_period(period)  # a bad period is refused before any flow starts
    result = customs_audit(period, capacity)
    _emit(result, as_json, audit_text(result))


@app.command()
@runs_flows
def ratings(
    entity: Annotated[str, typer.Option("--entity", help="importer, declarant, hs_heading or lane.")] = "importer",
    top: Annotated[int, typer.Option("--top", min=1)] = 20,
    min_controls: Annotated[int, typer.Option("--min-controls", min=0)] = 5,
    as_json: JsonOption = False,
) -> None:
    """Risk ratings of goods, enterprises and trade lanes: band, smoothed hit rate with interval, volume."""
    from flows.audit import RATED, customs_ratings
    from flows.render import ratings_text

    if entity not in RATED:
        raise UserError(f"--entity must be one of {', '.join(RATED)}, not {entity!r}")
    rows = customs_ratings(entity, top, min_controls)
    _emit(rows, as_json, ratings_text(rows, RATED[entity]))


@app.command()
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
    _emit(result, as_json, monitor_text(result))


@app.command()
@runs_flows(check=headers_fit("path"))
def backtest(
    path: Annotated[Path | None, typer.Argument(help="Labelled declarations to replay (default: the simulator).", **INPUT)] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML column mapping for PATH.", **INPUT)] = None,
    rows: Annotated[int, typer.Option("--rows", min=5000, help="Declarations to simulate (no PATH).")] = 200_000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    capacity: Annotated[float, typer.Option("--capacity", min=0.001, max=1.0, help="Share inspected each week.")] = 0.05,
    exploration: Annotated[float, typer.Option("--exploration", min=0.0, max=1.0,
                                               help="Random share of the hybrid policy's capacity.")] = 0.1,
    retrain_every: Annotated[int, typer.Option("--retrain-every", min=1, help="Weeks between refits.")] = 4,
    warmup_weeks: Annotated[int, typer.Option("--warmup-weeks", min=1, help="Weeks of historical labels to start from.")] = 8,
    policies: Annotated[list[str] | None, typer.Option("--policy", help="model, hybrid, random, rules (repeatable).")]
    = None,
    iterations: Annotated[int | None, typer.Option("--iterations", min=10, help="CatBoost rounds per refit.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Replay labelled history week by week (BACUDA protocol): would each selection policy have worked?"""
    from flows.backtest import customs_backtest
    from flows.render import backtest_markdown

    result = customs_backtest(str(path) if path else None, str(mapping) if mapping else None, rows, seed, capacity,
                              exploration, retrain_every, warmup_weeks, policies, iterations)
    _emit(result, as_json, backtest_markdown(result) + f"\n\nMLflow run: {result['mlflow_run_id']} (experiment aduana-backtest)")


@app.command()
@runs_flows
def schedule(
    names: Annotated[list[str] | None, typer.Argument(help="Deployments to register (default: all in infra/prefect.yaml).")]
    = None,
    register_only: Annotated[bool, typer.Option("--register-only", help="Register the deployments and exit; "
                                                "a worker elsewhere runs them.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Register infra/prefect.yaml's deployments (schedules and the drift trigger) and run a worker for them.

    Registration is `prefect deploy --prefect-file infra/prefect.yaml` from the repository root, on the work pool
    `aduana-local` (created if missing), so running either command again leaves the same deployments. The worker
    runs until interrupted, with this ADUANA_HOME; runs show in the Prefect UI ('aduana server status')."""
    if not os.environ.get("PREFECT_API_URL"):
        raise UserError("aduana schedule needs a Prefect server that outlives it: unset ADUANA_PREFECT_SERVER=ephemeral "
                        "(the home's server is then used) or set PREFECT_API_URL")
    from flows.orchestration import deployments

    pool = deployments.pool_of(deployments.chosen(names or None))
    registered = deployments.register(names or None)
    result = {"registered": registered, "work_pool": pool, "api": os.environ["PREFECT_API_URL"]}
    _emit(result, as_json, f"registered {', '.join(registered)} on work pool {pool}")
    if register_only:
        return
    runtime.progress(f"running a worker on {pool} for {_settings().root}; Ctrl-C to stop")
    code = deployments.run_worker(pool, _settings().root)
    if code not in (0, -2, 130):  # Ctrl-C ends the worker with SIGINT
        raise RuntimeError(f"the Prefect worker ended with exit code {code}")


server_app = typer.Typer(help="This home's local Prefect server (the CLI starts it when a flow first needs it).",
                           no_args_is_help=True, rich_markup_mode=None)
app.add_typer(server_app, name="server")


def _server_result(found, state: str) -> dict:
    home = _settings().prefect_home
    from flows.orchestration.server import auth_file, log_file

    where = {"log": str(log_file(home)), "auth_file": str(auth_file(home))}  # the secret its clients send
    if found is None:
        return {"state": state, "ui": None, "api": None, "pid": None, **where}
    return {"state": state, "ui": found.ui_url, "api": found.api_url, "pid": found.pid, **where}


@server_app.command(name="status")
def server_status(as_json: JsonOption = False) -> None:
    """Say whether this home's Prefect server runs, and where its UI is."""
    from flows.orchestration import server

    found = server.running(_settings().prefect_home)
    result = _server_result(found, "running" if found else "stopped")
    _emit(result, as_json, f"Prefect server: {result['state']}" + (f", UI at {result['ui']}" if found else ""))


@server_app.command(name="start")
def server_start(as_json: JsonOption = False) -> None:
    """Start this home's Prefect server now (flows start it anyway when they need it)."""
    from flows.orchestration import server

    found, started = server.ensure(_settings().prefect_home)
    result = _server_result(found, "started" if started else "running")
    _emit(result, as_json, f"Prefect server {result['state']}: UI at {found.ui_url}, API at {found.api_url}")


@server_app.command(name="stop")
def server_stop(as_json: JsonOption = False) -> None:
    """Stop this home's Prefect server (its runs are kept; the next flow starts it again)."""
    from flows.orchestration import server

    found = server.stop(_settings().prefect_home)
    result = _server_result(found, "stopped" if found else "not running")
    _emit(result, as_json, f"Prefect server {result['state']}")


@app.command()
def promote(
    version: Annotated[str | None, typer.Option("--version", help="Make this registry version the champion.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded with who and when).")] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Restore the previous champion.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the registry's champion and challenger, promote a version by hand, or roll the champion back."""
    import getpass

    from flows.render import promote_text
    from training import registry

    if version is not None and rollback:
        raise UserError("give either --version or --rollback, not both")
    if version is not None and not reason:
        raise UserError("promote --version needs --reason: say why this version should serve")
    rt = runtime.current()
    log = rt.settings.promotions_log
    if rollback:
        demoted, restored = registry.rollback(rt.client, log, getpass.getuser())
        result = {"demoted": demoted, "champion": restored}
    elif version is not None:
        previous = registry.promote_by_hand(rt.client, version.removeprefix("v"), reason or "", getpass.getuser(), log)
        result = {"champion": version.removeprefix("v"), "previous": previous, "reason": reason}
    else:
        result = {a: registry.alias_version(rt.client, a) for a in (registry.CHAMPION, registry.CHALLENGER)}
        result["promotions"] = registry.read_promotions(log)[-10:]
    _emit(result, as_json, promote_text(result, log))


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


@app.command(name="warnings")
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
    from expectations.reference import accept_pending
    from features.contract import KINDS
    from flows.render import acknowledged_text, warnings_text

    rt = runtime.current()
    warehouse = rt.warehouse
    if ack is None:
        if reason is not None:
            raise UserError("--reason goes with --ack BATCH_ID")
        if kind is not None and kind not in KINDS:
            raise UserError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
        rows = warehouse.failed_batches(kind)
        _emit(rows, as_json, warnings_text(rows))
        return
    if not reason or not reason.strip():
        raise UserError("--ack needs --reason TEXT: say why these failures are acceptable")
    record = warehouse.acknowledge(ack, reason, _os_user())
    record["reference_updated"] = accept_pending(rt.settings.reference_dir, ack)
    _emit(record, as_json, acknowledged_text(record))


@app.command()
@runs_flows
def demo(
    rows: Annotated[int, typer.Option("--rows", min=1000, help="Declarations to simulate.")] = 200_000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    as_json: JsonOption = False,
) -> None:
    """Run the whole loop on the embedded default: simulate, ingest, train, promote, score, audit."""
    from flows.demo import customs_demo
    from flows.render import demo_text

    result = customs_demo(rows=rows, seed=seed)
    _emit(result, as_json, demo_text(result, _settings()))

def _fail(message: str, code: int, kind: str, as_json: bool) -> None:
    """One line on stderr; with --json, the same as an object on stdout, so a script always reads JSON."""
    print(f"aduana: error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": {"type": kind, "message": message, "exit_code": code}}))
    sys.exit(code)


def main() -> None:
    """Console-script entry point. Exit codes: 0 done, 2 usage or bad input, 75 busy (retry later), 1 a bug."""
    runtime.settle_gc()
    from pydantic import ValidationError

    # Typer raises its own copy of Click's exceptions (typer._click), not those of the `click` package.
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    as_json = "--json" in sys.argv[1:]
    try:
        app(standalone_mode=False, prog_name="aduana")
    except typer.Abort:
        _fail("aborted", 130, "aborted", as_json)
    except usage_error as exc:  # usage: an unknown option, a missing file, a value out of range
        if not as_json:
            exc.show()
            sys.exit(exc.exit_code)
        _fail(exc.format_message(), exc.exit_code, "usage", as_json)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if _state["debug"]:
            raise
        from features.warehouse import WarehouseBusy

        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, ValidationError):  # a value a flow's parameters refuse: bad input, said by field
            message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        if isinstance(exc, UserError | ValidationError):
            _fail(message, 2, "input", as_json)
        if isinstance(exc, WarehouseBusy):
            _fail(message, EX_TEMPFAIL, "busy", as_json)
        _fail(f"{type(exc).__name__}: {message} (--debug for details)", 1, "internal", as_json)


if __name__ == "__main__":
    main()
