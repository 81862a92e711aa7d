"""customs-monitor: drift of features and scores, and selection outcomes; emits aduana.drift.detected."""
from __future__ import annotations

import shutil
import uuid

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run

from features.errors import UserError
from features.warehouse import read_tables
from flows.orchestration import runtime
from flows.orchestration.runtime import Runtime, progress
from flows.render import monitor_markdown
from serving.post_clearance import audit_findings
from training import registry, runs
from training.models import RiskModel
from training.monitoring import (
    MonitorReport,
    monitor,
    window_bounds,
    window_features,
)
from training.snapshot_training import window_from_snapshot

DRIFT_EVENT = "aduana.drift.detected"
MODEL_RESOURCE = f"aduana.model.{registry.MODEL_NAME}"


@task(name="load_window", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def load_window(rt: Runtime, window_days: int, as_of: str | None, outcome_days: int) -> dict:
    """The champion, its reference, the window's features and the outcomes of recent decisions."""
    version = registry.alias_version(rt.client, registry.CHAMPION)
    if version is None:
        raise UserError("no customs-risk@champion to monitor: train and promote a model first ('aduana train')")
    warehouse = rt.warehouse
    newest = warehouse.newest_declaration_date()
    if newest is None:
        raise UserError("the warehouse holds no declarations: run 'aduana ingest' first")
    start, end = window_bounds(newest, pd.Timestamp(as_of) if as_of else None, window_days)
    model = registry.load_version(version)
    progress(f"monitoring customs-risk v{version} on declarations filed {start.date()}…{end.date()}")
    rt.sync_decisions()  # every answer given, even those the API has not copied yet
    outcomes = warehouse.decisions.controlled_outcomes(end - pd.Timedelta(days=outcome_days - 1), end)
    design = warehouse.decisions.selection_design(end - pd.Timedelta(days=outcome_days - 1), end)
    return {"version": version, "model": model, "reference": runs.load_reference(rt.client, version),
            "current": current_features(rt, model, start, end), "outcomes": outcomes, "design": design,
            "window": (start, end), "audit_findings": audit_findings(warehouse)}


def current_features(rt: Runtime, model: RiskModel, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The window's features: from the history in pandas, or, beyond `training_memory_rows` declarations (as a
    retrain), from the warehouse's snapshot through DuckDB, only the window's rows in pandas."""
    stored = rt.warehouse.counts()["declarations"]
    if stored <= rt.settings.training_memory_rows:
        return window_features(read_tables(rt.warehouse), model, start, end)
    folder = rt.settings.work_dir / f"monitor-{uuid.uuid4().hex[:12]}"
    try:
        progress(f"{stored:,} declarations, more than training_memory_rows ({rt.settings.training_memory_rows:,}): "
                 "the window's features come from the warehouse's snapshot through DuckDB")
        return window_from_snapshot(rt.warehouse.export_tables(folder), model, start, end)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@task(name="track_monitoring", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def track_monitoring(rt: Runtime, report: MonitorReport) -> str:
    return runs.log_monitoring(rt.client, report, rt.artifacts, flow_run.get_id())


@flow(name="customs-monitor")
def customs_monitor(window_days: int | None = None, as_of: str | None = None, outcome_days: int | None = None) -> dict:
    """Compare recent declarations with the champion's reference; emit aduana.drift.detected when drifted."""
    rt = runtime.current()
    thresholds = rt.settings.monitor
    loaded = load_window(rt, window_days or thresholds.window_days, as_of, outcome_days or thresholds.outcome_days)
    report = monitor(loaded["model"], loaded["version"], loaded["reference"], loaded["current"],
                     loaded["outcomes"], loaded["window"], thresholds, loaded["design"])
    report.audit_findings = loaded["audit_findings"]
    run_id = track_monitoring(rt, report)
    create_markdown_artifact(key="customs-monitor-report", markdown=monitor_markdown(report),
                             description="Feature and score drift, and selection outcomes, against the champion")
    payload = {**report.payload(), "mlflow_run_id": run_id, "aduana_home": str(rt.settings.root)}
    event_id = None
    if report.drift_detected:
        event = emit_event(event=DRIFT_EVENT, resource={"prefect.resource.id": MODEL_RESOURCE,
                                                        "prefect.resource.name": registry.MODEL_NAME},
                           payload=payload)
        event_id = str(event.id) if event else None
        progress(f"drift detected: {DRIFT_EVENT} emitted ({', '.join(report.drifted_features) or 'outcomes'})")
    else:
        progress("no drift beyond the thresholds")
    return {**payload, "drift_detected": report.drift_detected, "event_id": event_id,
            "outcomes": report.outcomes, "score_psi": report.score["psi"], "released_compliance": report.audit_findings,
            "top_features": report.features[report.features["alerting"]].head(10)[["feature", "psi"]].round(4)
            .to_dict("records")}
