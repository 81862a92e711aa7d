"""customs-monitor: drift of features and scores, and selection outcomes; emits aduana.drift.detected."""
from __future__ import annotations

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run

from features.errors import UserError
from features.settings import get_settings
from features.warehouse import Warehouse
from flows.runtime import progress
from training import tracking
from training.monitoring import (
    MonitorReport,
    MonitorThresholds,
    monitor,
    window_bounds,
    window_features,
)

DRIFT_EVENT = "aduana.drift.detected"
MODEL_RESOURCE = f"aduana.model.{tracking.MODEL_NAME}"


@task(name="load_window", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def load_window(window_days: int, as_of: str | None, outcome_days: int) -> dict:
    """The champion, its reference, the window's features and the outcomes of recent decisions."""
    settings = get_settings()
    client = tracking.configure(settings)
    version = tracking.alias_version(client, tracking.CHAMPION)
    if version is None:
        raise UserError("no customs-risk@champion to monitor: train and promote a model first ('aduana train')")
    warehouse = Warehouse(settings.warehouse_path)
    newest = warehouse.newest_declaration_date()
    if newest is None:
        raise UserError("the warehouse holds no declarations: run 'aduana ingest' first")
    start, end = window_bounds(newest, pd.Timestamp(as_of) if as_of else None, window_days)
    model = tracking.load_version(version)
    progress(f"monitoring customs-risk v{version} on declarations filed {start.date()}…{end.date()}")
    outcomes = warehouse.decisions.controlled_outcomes(end - pd.Timedelta(days=outcome_days - 1), end)
    return {"version": version, "model": model, "reference": tracking.load_reference(client, version),
            "current": window_features(warehouse, model, start, end), "outcomes": outcomes, "window": (start, end)}


@task(name="log_monitoring", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def log_monitoring(report: MonitorReport) -> str:
    settings = get_settings()
    return tracking.log_monitoring(tracking.configure(settings), report, settings, flow_run.get_id())


def report_markdown(report: MonitorReport) -> str:
    verdict = "**drift detected**" if report.drift_detected else "no drift"
    lines = [f"## customs-risk v{report.model_version}: {verdict}",
             f"Window {report.window[0].date()}…{report.window[1].date()}: {report.rows:,} declarations against "
             f"{report.reference_rows:,} reference rows.", ""]
    lines += [f"- {a}" for a in report.alerts] + ([""] if report.alerts else [])
    lines += ["| feature | PSI | test | statistic | missing (ref → now) | alerts |", "|---|---:|---|---:|---|---|"]
    for row in report.features.head(25).itertuples():
        lines.append(f"| {row.feature} | {row.psi:.3f} | {row.test} | {row.statistic:.3g} | "
                     f"{row.missing_reference:.1%} → {row.missing_current:.1%} | {'yes' if row.alerting else 'no (trends with time)'} |")
    lines += ["", f"Risk score PSI {report.score['psi']:.3f}.", "", "| stratum | controlled | hit rate | 95% CI | expected |",
              "|---|---:|---:|---|---:|"]
    fmt = lambda v: "–" if v is None else f"{v:.1%}"  # noqa: E731
    for name, o in report.outcomes.items():
        lines.append(f"| {name} | {o['controlled']:,} | {fmt(o['hit_rate'])} | {fmt(o['ci_low'])}–{fmt(o['ci_high'])} "
                     f"| {fmt(o['expected_hit_rate'])} |")
    return "\n".join(lines)


@flow(name="customs-monitor")
def customs_monitor(window_days: int | None = None, as_of: str | None = None, outcome_days: int | None = None) -> dict:
    """Compare recent declarations with the champion's reference; emit aduana.drift.detected when drifted."""
    settings = get_settings()
    loaded = load_window(window_days or settings.monitor_window_days, as_of,
                         outcome_days or settings.monitor_outcome_days)
    thresholds = MonitorThresholds(psi=settings.monitor_psi, score_psi=settings.monitor_psi,
                                   missing_increase=settings.monitor_missing_increase,
                                   hit_rate_tolerance=settings.monitor_hit_rate_tolerance)
    report = monitor(loaded["model"], loaded["version"], loaded["reference"], loaded["current"],
                     loaded["outcomes"], loaded["window"], thresholds)
    run_id = log_monitoring(report)
    create_markdown_artifact(key="customs-monitor-report", markdown=report_markdown(report),
                             description="Feature and score drift, and selection outcomes, against the champion")
    payload = {**report.payload(), "mlflow_run_id": run_id, "aduana_home": str(settings.root)}
    event_id = None
    if report.drift_detected:
        event = emit_event(event=DRIFT_EVENT, resource={"prefect.resource.id": MODEL_RESOURCE,
                                                        "prefect.resource.name": tracking.MODEL_NAME},
                           payload=payload)
        event_id = str(event.id) if event else None
        progress(f"drift detected: {DRIFT_EVENT} emitted ({', '.join(report.drifted_features) or 'outcomes'})")
    else:
        progress("no drift beyond the thresholds")
    return {**payload, "drift_detected": report.drift_detected, "event_id": event_id,
            "outcomes": report.outcomes, "score_psi": report.score["psi"],
            "top_features": report.features[report.features["alerting"]].head(10)[["feature", "psi"]].round(4)
            .to_dict("records")}
