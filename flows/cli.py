"""The `aduana` command line. Errors are one line and a non-zero exit code; --debug shows the traceback."""
from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from features.errors import UserError
from features.settings import get_settings
from flows import runtime

app = typer.Typer(
    name="aduana",
    help="Open, data-driven customs risk management. All state lives under ADUANA_HOME (default ./.aduana).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"debug": False}
EX_TEMPFAIL = 75  # sysexits.h: a temporary failure (a busy warehouse); retrying later may succeed

JsonOption = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    home: Annotated[Path | None, typer.Option("--home", help="Use this ADUANA_HOME.", envvar="ADUANA_HOME")] = None,
) -> None:
    _state["debug"] = debug
    if home is not None:
        os.environ["ADUANA_HOME"] = str(home)
    runtime.configure(get_settings(), debug)
    from flows import watchdog

    watchdog.start()  # Prefect's ephemeral server ends with this process, even after kill -9


def _emit(result: dict | list, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text)


class WorldName(StrEnum):
    """The embedded worlds `aduana generate` can write."""

    default = "default"  # declarations, manifests and traders in canonical fields
    islas = "islas"  # a third-party export: islas_train.csv, islas_test.csv and its mapping file


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the world's files into.")],
    rows: Annotated[int, typer.Option("--rows", min=100, help="Number of declarations (goods items).")] = 200_000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same world.")] = 7,
    fmt: Annotated[str | None, typer.Option("--format", help="parquet or csv (default parquet). The default world "
                                                           "only: islas is always CSV.")] = None,
    world_name: Annotated[WorldName, typer.Option(
        "--world", help="default: declarations, manifests and traders in canonical fields. islas: a third-party "
                        "export in its own layout (islas_train.csv, islas_test.csv), with islas_mapping.yaml to "
                        "ingest it by.")] = WorldName.default,
    as_json: JsonOption = False,
) -> None:
    """Simulate a customs administration: by default declarations, manifests and the trader registry."""
    from features.simulator import simulate, simulate_islas, write_islas, write_world

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
                  "mapping": {"path": str(paths["mapping"])}, "bad_rows": islas.injected()}
        lines = [f"{n:<13} {result[n]['rows']:>10,} rows  {result[n]['path']}" for n in ("train", "test")]
        lines.append(f"{'mapping':<13} {'':>15}  {result['mapping']['path']}")
        lines.append(f"injected bad rows: {sum(result['bad_rows'].values())} "
                     f"({', '.join(f'{r} {k}' for r, k in result['bad_rows'].items())})")
        _emit(result, as_json, "\n".join(lines))
        return
    fmt = fmt or "parquet"
    if fmt not in ("parquet", "csv"):
        raise UserError(f"--format must be parquet or csv, not {fmt!r}")
    runtime.progress(f"simulating {rows:,} declarations (seed {seed})…")
    world = simulate(rows, seed=seed)
    paths = write_world(world, out, fmt)
    result = {name: {"path": str(p), "rows": len(getattr(world, name))} for name, p in paths.items()}
    _emit(result, as_json, "\n".join(f"{n:<13} {r['rows']:>10,} rows  {r['path']}" for n, r in result.items()))


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="CSV or Parquet files: declarations, manifests, traders, outcomes.")],
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML column mapping for a foreign layout.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="declarations|manifests|traders|outcomes "
                                                             "(default: from the file name).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Validate files and store them in the warehouse; invalid rows go to quarantine with a reason."""
    from features.contract import KINDS
    from flows.ingest import customs_ingest

    if kind is not None and kind not in KINDS:
        raise UserError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    summaries = customs_ingest([str(p) for p in paths], kind=kind, mapping=str(mapping) if mapping else None)
    result = summaries[0] if len(summaries) == 1 else {"files": summaries, **_totals(summaries)}
    _emit(result, as_json, _ingest_text(summaries))


def _totals(summaries: list[dict]) -> dict:
    return {k: sum(s[k] for s in summaries) for k in ("read", "stored", "quarantined", "duplicates")}


def _ingest_text(summaries: list[dict]) -> str:
    lines = [f"{'file':<28} {'kind':<13} {'read':>10} {'stored':>10} {'quarantined':>12} {'duplicates':>11}"]
    for s in summaries:
        lines.append(f"{Path(s['source']).name:<28} {s['kind']:<13} {s['read']:>10,} {s['stored']:>10,} "
                     f"{s['quarantined']:>12,} {s['duplicates']:>11,}")
        for reason, n in sorted(s["reasons"].items()):
            lines.append(f"{'':<42}quarantined {reason}: {n:,}")
        lines += [f"{'':<42}converted {c}" for c in s.get("conversions", [])]
    settings = get_settings()
    lines.append(f"warehouse: {settings.warehouse_path}")
    lines.append(f"data docs: {settings.data_docs_index}")
    return "\n".join(lines)


def _metrics_text(result: dict) -> str:
    from training.metrics import RATES, label

    keys = [f"{m}_at_{n}pct" for m in ("precision", "recall", "revenue") for n in RATES] + ["pr_auc"]
    fmt = lambda v: "absent" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"{'metric (holdout)':<18} {'model':>8} {'reference':>10}"]
    lines += [f"{label(k):<18} {fmt(result['metrics'].get(k)):>8} {fmt(result['reference_metrics'].get(k)):>10}"
              for k in keys]
    lines.append("reference: a library-default CatBoost on the mapped columns")
    groups = result.get("feature_groups") or []
    if groups:
        lines.append("feature groups: " + ", ".join(
            f"{g['group']} {'kept' if g['kept'] else 'left out'}"
            + (f" ({g['delta']:+.4f})" if g["delta"] is not None else "") for g in groups))
    return "\n".join(lines)


def _train_text(result: dict) -> str:
    from training.tracking import CHAMPION, MODEL_NAME

    verdict = f"promoted to @{CHAMPION}" if result["promoted"] else "kept as challenger"
    lines = [f"trained on {result['counts']['train']:,} controlled declarations, "
             f"holdout {result['counts']['holdout']:,}", _metrics_text(result),
             f"{MODEL_NAME} v{result['version']} ({result['candidate']}): {verdict}"]
    lines += [f"  - {r}" for r in result["reasons"]]
    lines.append(f"MLflow UI: .venv/bin/mlflow server --backend-store-uri sqlite:///{get_settings().mlflow_db} "
                 "--host 127.0.0.1 --port 5000  (then open http://127.0.0.1:5000)")
    return "\n".join(lines)


@app.command()
def train(
    dataset: Annotated[str, typer.Option("--dataset", help="Experiment name suffix (one experiment per dataset).")]
    = "warehouse",
    iterations: Annotated[int | None, typer.Option("--iterations", min=10, help="CatBoost iterations (max).")] = None,
    tune: Annotated[bool, typer.Option("--tune", help="Search hyperparameters with Optuna first.")] = False,
    budget: Annotated[str, typer.Option("--budget", help="Time for --tune, e.g. 10m, 90s, 1h.")] = "10m",
    as_json: JsonOption = False,
) -> None:
    """Retrain on the warehouse, log to MLflow, register @challenger and run the promotion gate."""
    from flows.retrain import customs_retrain
    from training.tuning import parse_budget

    seconds = parse_budget(budget) if tune else None
    result = customs_retrain(dataset=dataset, iterations=iterations, tune_seconds=seconds)
    _emit(result, as_json, _train_text(result))


@app.command()
def evaluate(
    train_file: Annotated[Path, typer.Option("--train", help="Labelled declarations to train on (CSV or Parquet).")],
    test_file: Annotated[Path, typer.Option("--test", help="Labelled declarations to evaluate on.")],
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML column mapping for both files.")] = None,
    iterations: Annotated[int | None, typer.Option("--iterations", min=10)] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the training pipeline on an explicit split and print holdout metrics (model vs the default-CatBoost reference)."""
    from flows.retrain import customs_evaluate

    result = customs_evaluate(str(train_file), str(test_file), str(mapping) if mapping else None, iterations)
    text = (f"trained on {result['counts']['train']:,} rows, evaluated on {result['counts']['holdout']:,}\n"
            + _metrics_text(result) + f"\nMLflow run: {result['run_id']}")
    _emit(result, as_json, text)


@app.command()
def score(
    path: Annotated[Path, typer.Argument(help="Declarations to score (CSV or Parquet).")],
    out: Annotated[Path, typer.Option("--out", help="Score output file (.csv or .parquet).")],
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML column mapping.")] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="YAML lane policy (capacity, exploration, rules).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Give every declaration a lane (red/yellow/green) with reasons, using customs-risk@champion."""
    from flows.score import customs_score

    result = customs_score(str(path), str(out), str(mapping) if mapping else None, str(policy) if policy else None)
    text = (f"scored {result['read']:,} declarations with customs-risk v{result['model_version']} → {result['out']}\n"
            + "lanes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result["lanes"].items()))
            + f"\ninvalid rows (validation lane, quarantined): {result['invalid']:,}\nreport: {result['report']}")
    _emit(result, as_json, text)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    policy: Annotated[Path | None, typer.Option("--policy", help="YAML lane policy.")] = None,
    max_items: Annotated[int, typer.Option("--max-items", min=1, help="Declarations per request.")] = 100,
    mapping: Annotated[Path | None, typer.Option(
        "--mapping", help="YAML column mapping: /v1/score also takes records in its source layout.")] = None,
    allow_open: Annotated[bool, typer.Option(
        "--allow-open", help="Serve on an interface other than loopback without ADUANA_API_KEY: anyone who can "
                             "reach it can score.")] = False,
) -> None:
    """Serve POST /v1/score, /healthz, /readyz and the OpenAPI docs (/docs) with uvicorn."""
    import ipaddress

    import uvicorn

    from features.intake.mapping import load_mapping
    from features.warehouse import Warehouse
    from serving.api import create_app, server_config
    from serving.lanes import load_policy
    from serving.scorer import Scorer

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        loopback = False
    if not loopback and not os.environ.get("ADUANA_API_KEY"):
        if not allow_open:
            typer.echo(f"aduana: refusing to serve scoring on {host} without a key: set ADUANA_API_KEY (clients "
                       "then send X-API-Key), or pass --allow-open to serve it open", err=True)
            raise typer.Exit(2)
        typer.echo(f"aduana: warning: serving scoring on {host} with no ADUANA_API_KEY: anyone who can reach it "
                   "can score declarations", err=True)
    settings = get_settings()
    scorer = Scorer(Warehouse(settings.warehouse_path), load_policy(policy or settings.lane_policy),
                    reload_seconds=settings.reload_seconds)
    app_ = create_app(scorer, max_items=max_items, mapping=load_mapping(mapping) if mapping else None)
    app_.state.service.refresh()
    runtime.progress(f"serving customs-risk v{scorer.version or '(none yet)'} on http://{host}:{port} (docs: /docs)")
    uvicorn.Server(server_config(app_, host, port)).run()


@app.command()
def audit(
    period: Annotated[str, typer.Option("--period", help="START:END dates, a month (2024-11) or a year (2024).")],
    capacity: Annotated[int, typer.Option("--capacity", min=1, help="Enterprises the audit teams can take.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Pick enterprises for post-clearance audit: expected unrecovered revenue in their released goods."""
    from flows.audit import customs_audit

    result = customs_audit(period, capacity)
    lines = [f"post-clearance audit list for {period} ({len(result['selected'])} of capacity {capacity})"]
    for r in result["selected"]:
        lines.append(f"{r['rank']:>3}. {r['importer_id']:<12} priority {r['audit_priority']:>12,.0f}  {r['reasons']}")
        for e in [e for e in result["evidence"] if e["importer_id"] == r["importer_id"]][:3]:
            lines.append(f"       {e['declaration_id']} ({e['lane']}, risk {e['risk_score']:.2f}, "
                         f"expected {e['residual_revenue']:,.0f})")
    _emit(result, as_json, "\n".join(lines))


@app.command()
def ratings(
    entity: Annotated[str, typer.Option("--entity", help="importer, declarant, hs_heading or lane.")] = "importer",
    top: Annotated[int, typer.Option("--top", min=1)] = 20,
    min_controls: Annotated[int, typer.Option("--min-controls", min=0)] = 5,
    as_json: JsonOption = False,
) -> None:
    """Risk ratings of goods, enterprises and trade lanes: band, smoothed hit rate with interval, volume."""
    from flows.audit import RATED, customs_ratings

    if entity not in RATED:
        raise UserError(f"--entity must be one of {', '.join(RATED)}, not {entity!r}")
    rows = customs_ratings(entity, top, min_controls)
    lines = [f"{' → '.join(str(r[k]) for k in RATED[entity]):<22} {r['band']:<10} {r['why']}" for r in rows]
    _emit(rows, as_json, "\n".join(lines))


def _monitor_text(result: dict) -> str:
    fmt = lambda v: "–" if v is None else f"{v:.1%}"  # noqa: E731
    lines = [f"monitor: customs-risk v{result['model_version']}, window {result['window_start']}…{result['window_end']} "
             f"({result['rows']:,} declarations): " + ("DRIFT DETECTED" if result["drift_detected"] else "no drift")]
    lines += [f"  - {a}" for a in result["alerts"]]
    lines.append("  top PSI: " + ", ".join(f"{f['feature']} {f['psi']:.3f}" for f in result["top_features"][:5])
                 + f"; risk score {result['score_psi']:.3f}")
    for name, o in result["outcomes"].items():
        lines.append(f"  {name}: {o['controlled']:,} controlled, hit rate {fmt(o['hit_rate'])} "
                     f"(95% CI {fmt(o['ci_low'])}–{fmt(o['ci_high'])}), model expected {fmt(o['expected_hit_rate'])}")
    if result["event_id"]:
        lines.append(f"  event aduana.drift.detected emitted ({result['event_id']})")
    lines.append(f"  MLflow run: {result['mlflow_run_id']} (experiment aduana-monitoring)")
    return "\n".join(lines)


@app.command()
def monitor(
    window_days: Annotated[int | None, typer.Option("--window-days", min=1, help="Days in the recent window.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Window end date (default: newest declaration).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Check feature and score drift and selection outcomes against the champion; emit aduana.drift.detected."""
    from flows.monitor import customs_monitor

    result = customs_monitor(window_days=window_days, as_of=as_of)
    _emit(result, as_json, _monitor_text(result))


@app.command()
def backtest(
    path: Annotated[Path | None, typer.Argument(help="Labelled declarations to replay (default: the simulator).")] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML column mapping for PATH.")] = None,
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
    from serving.backtest import report_markdown

    result = customs_backtest(str(path) if path else None, str(mapping) if mapping else None, rows, seed, capacity,
                              exploration, retrain_every, warmup_weeks, policies, iterations)
    _emit(result, as_json, report_markdown(result) + f"\n\nMLflow run: {result['mlflow_run_id']} (experiment aduana-backtest)")


@app.command()
def schedule(
    names: Annotated[list[str] | None, typer.Argument(help="Deployments to serve (default: all in infra/prefect.yaml).")]
    = None,
) -> None:
    """Serve the deployments of infra/prefect.yaml (schedules and the drift trigger) from this process.

    Needs a Prefect server (PREFECT_API_URL); runs until interrupted. For a work pool and workers, use
    `prefect deploy --prefect-file infra/prefect.yaml` instead (see the README)."""
    if not os.environ.get("PREFECT_API_URL"):
        raise UserError("aduana schedule needs a Prefect server: start one ('prefect server start') and set "
                        "PREFECT_API_URL=http://127.0.0.1:4200/api")
    from flows.deployments import serve_deployments

    runtime.progress("serving the deployments of infra/prefect.yaml; Ctrl-C to stop")
    serve_deployments(names or None)


@app.command()
def promote(
    version: Annotated[str | None, typer.Option("--version", help="Make this registry version the champion.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded with who and when).")] = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Restore the previous champion.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show the registry's champion and challenger, promote a version by hand, or roll the champion back."""
    import getpass

    from training import tracking

    if version is not None and rollback:
        raise UserError("give either --version or --rollback, not both")
    if version is not None and not reason:
        raise UserError("promote --version needs --reason: say why this version should serve")
    settings = get_settings()
    client = tracking.configure(settings)
    if rollback:
        demoted, restored = tracking.rollback(client, settings.promotions_log, getpass.getuser())
        result = {"demoted": demoted, "champion": restored}
        text = f"@{tracking.CHAMPION} rolled back from v{demoted} to v{restored}"
    elif version is not None:
        previous = tracking.promote_by_hand(client, version.removeprefix("v"), reason or "", getpass.getuser(),
                                            settings.promotions_log)
        result = {"champion": version.removeprefix("v"), "previous": previous, "reason": reason}
        text = (f"@{tracking.CHAMPION} is now v{result['champion']}"
                + (f" (was v{previous})" if previous else "") + f"; logged in {settings.promotions_log}")
    else:
        result = {a: tracking.alias_version(client, a) for a in (tracking.CHAMPION, tracking.CHALLENGER)}
        result["promotions"] = tracking.read_promotions(settings.promotions_log)[-10:]
        text = "\n".join(f"@{a}: v{result[a]}" if result[a] else f"@{a}: none"
                         for a in (tracking.CHAMPION, tracking.CHALLENGER))
        text += "".join(f"\n  {p['at'][:19]} {p['action']} v{p['version']} by {p['by']}: {p['reason'][:100]}"
                        for p in result["promotions"])
    _emit(result, as_json, text)


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def _warnings_text(rows: list[dict]) -> str:
    if not rows:
        return "no batch has failed expectations"
    lines = []
    for r in rows:
        state = "REJECTED" if r["rejected"] else ("acknowledged" if r["acknowledged"] else "OPEN")
        lines.append(f"{r['batch_id']}  {r['kind']:<12} {r['file']}  {r['started_at']}  stored {r['stored']:,}  [{state}]")
        lines += [f"  - {f}" for f in r["failures"]]
        if r["acknowledged"]:
            lines.append(f"  acknowledged {r['acknowledged_at']} by {r['acknowledged_by']}: {r['ack_reason']}")
    open_ = sum(not r["acknowledged"] and not r["rejected"] for r in rows)
    lines.append(f"{open_} stored batch(es) with open warnings"
                 + (": acknowledge with 'aduana warnings --ack BATCH_ID --reason TEXT'" if open_ else ""))
    return "\n".join(lines)


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
    from features.warehouse import Warehouse

    settings = get_settings()
    warehouse = Warehouse(settings.warehouse_path)
    if ack is None:
        if reason is not None:
            raise UserError("--reason goes with --ack BATCH_ID")
        if kind is not None and kind not in KINDS:
            raise UserError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
        rows = warehouse.failed_batches(kind)
        _emit(rows, as_json, _warnings_text(rows))
        return
    if not reason or not reason.strip():
        raise UserError("--ack needs --reason TEXT: say why these failures are acceptable")
    record = warehouse.acknowledge(ack, reason, _os_user())
    record["reference_updated"] = accept_pending(settings.reference_dir, ack)
    _emit(record, as_json, f"acknowledged {ack} ({record['kind']}) as {record['acknowledged_by']}: {record['reason']}"
          + (f"\nits profile joined the {record['kind']} reference" if record["reference_updated"] else ""))


@app.command()
def demo(
    rows: Annotated[int, typer.Option("--rows", min=1000, help="Declarations to simulate.")] = 200_000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    as_json: JsonOption = False,
) -> None:
    """Run the whole loop on the embedded default: simulate, ingest, train, promote, score, audit."""
    from flows.demo import customs_demo

    result = customs_demo(rows=rows, seed=seed)
    score, outcome = result["score"], result["outcome"]
    text = (_ingest_text(result["ingest"]) + f"\nlanding files: {result['landing']}\n\n"
            + _train_text(result["train"]) + "\n\n"
            + f"scored {score['read']:,} arriving declarations: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(score["lanes"].items())) + "\n"
            + f"red lane hit rate on the simulator's hidden outcomes: {outcome['red_hit_rate']:.1%} "
            + f"(model selections {outcome['model_red_hit_rate']:.1%}, exploration "
            + (f"{outcome['exploration_hit_rate']:.1%}" if outcome["exploration_hit_rate"] is not None else "n/a")
            + f"; base rate {outcome['base_fraud_rate']:.1%}); revenue at stake in red: {outcome['red_revenue_share']:.1%}\n"
            + f"scores: {score['out']}\nbatch report: {score['report']}\n"
            + _monitor_text(result["monitor"]) + "\n"
            + f"post-clearance audit: {len(result['audit']['selected'])} enterprises "
            + ", ".join(r["importer_id"] for r in result["audit"]["selected"][:5]) + " …\n"
            + "Prefect UI: .venv/bin/prefect server start, then set PREFECT_API_URL (see README)")
    _emit(result, as_json, text)


def main() -> None:
    """Console-script entry point."""
    import click

    try:
        app(standalone_mode=False)
    except click.exceptions.Abort:
        print("aduana: aborted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if _state["debug"]:
            raise
        from features.warehouse import WarehouseBusy

        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        expected = isinstance(exc, UserError | WarehouseBusy)  # bad input, or a busy warehouse: no traceback needed
        kind = "" if expected else f"{type(exc).__name__}: "
        print(f"aduana: error: {kind}{message}" + ("" if expected else " (--debug for details)"), file=sys.stderr)
        sys.exit(2 if isinstance(exc, UserError) else EX_TEMPFAIL if isinstance(exc, WarehouseBusy) else 1)


if __name__ == "__main__":
    main()
