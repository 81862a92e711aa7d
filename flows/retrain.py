"""customs-retrain: features → train → evaluate → register → gate, tracked in MLflow."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from features.build import integrate
from features.data.errors import DataError
from features.data.ingest import prepare_batch
from features.data.mapping import load_mapping
from features.data.warehouse import Warehouse
from features.settings import get_settings
from flows.runtime import progress
from training import tracking
from training.gate import GateDecision, GatePolicy
from training.metrics import RATES, label
from training.models import FitConfig
from training.pipeline import TrainingResult, explicit_split, train_and_evaluate
from training.promotion import gate_challenger


@task(name="load_training_data", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def load_training_data() -> tuple[pd.DataFrame, list[str]]:
    warehouse = Warehouse(get_settings().warehouse_path)
    declarations = warehouse.table("declarations")
    if declarations.empty:
        raise DataError("the warehouse holds no declarations: run 'aduana ingest' first")
    frame = integrate(declarations, warehouse.table("manifests"), warehouse.table("traders"))
    progress(f"loaded {len(frame):,} declarations ({int((frame['inspected'] == 1).sum()):,} controlled)")
    return frame, warehouse.validation_failures()


@task(name="train_model", cache_policy=NO_CACHE)
def train_model(frame: pd.DataFrame, iterations: int) -> TrainingResult:
    progress("building features and training the risk model and the raw baseline…")
    result = train_and_evaluate(frame, FitConfig(iterations=iterations))
    progress(f"trained on {result.counts['train']:,} controlled rows; holdout {result.counts['holdout']:,} rows")
    return result


@task(name="log_model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def log_model(result: TrainingResult, dataset: str, data_validated: bool, tags: dict[str, str]) -> str:
    settings = get_settings()
    client = tracking.configure(settings)
    run_id, _ = tracking.log_training(client, result, dataset, settings, flow_run.get_id(), data_validated, tags)
    return run_id


@task(name="register_model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def register_model(run_id: str) -> str:
    version = tracking.register_challenger(tracking.configure(get_settings()), run_id)
    progress(f"registered {tracking.MODEL_NAME} v{version} as @{tracking.CHALLENGER}")
    return version


@task(name="promote_model", cache_policy=NO_CACHE)
def promote_model(result: TrainingResult, run_id: str, version: str, data_validated: bool) -> GateDecision:
    settings = get_settings()
    policy = GatePolicy(settings.gate_metric, settings.gate_margin, settings.gate_guard_metric,
                        settings.gate_guard_tolerance)
    decision = gate_challenger(tracking.configure(settings), result, run_id, version, data_validated, policy,
                               lock=settings.root / "locks" / "promotion.lock")
    verdict = f"promoted v{version} to @{tracking.CHAMPION}" if decision.promote else f"kept v{version} as challenger"
    progress(f"gate: {verdict}" + "".join(f"\n  - {r}" for r in decision.reasons))
    return decision


def metrics_table(model: dict, baseline: dict) -> str:
    keys = [f"{m}_at_{n}pct" for m in ("precision", "recall", "revenue") for n in RATES] + ["pr_auc"]
    rows = ["| metric | model | raw baseline |", "|---|---:|---:|"]
    fmt = lambda v: "absent" if v is None else f"{v:.3f}"  # noqa: E731
    rows += [f"| {label(k)} | {fmt(model.get(k))} | {fmt(baseline.get(k))} |" for k in keys]
    return "\n".join(rows)


def trigger_tags(drift: dict | None) -> dict[str, str]:
    """Run tags saying why this retrain happened (schedule or hand, or which drift event)."""
    if not drift:
        return {"aduana.trigger": "schedule-or-manual"}
    return {"aduana.trigger": "drift", "aduana.drift_model_version": str(drift.get("model_version", "")),
            "aduana.drift_features": ",".join(drift.get("drifted_features", []))[:5000],
            "aduana.drift_monitor_run_id": str(drift.get("mlflow_run_id", ""))}


@flow(name="customs-retrain")
def customs_retrain(dataset: str = "warehouse", iterations: int | None = None, drift: dict | None = None) -> dict:
    """Retrain on the warehouse's controlled declarations and let the promotion gate decide.

    `drift`: the payload of the aduana.drift.detected event that triggered this run, if one did."""
    if drift:
        progress(f"triggered by drift on v{drift.get('model_version')}: {', '.join(drift.get('drifted_features', [])) or 'outcomes'}")
    frame, failures = load_training_data()
    result = train_model(frame, iterations or get_settings().train_iterations)
    validated = not failures
    tags = trigger_tags(drift)
    run_id = log_model(result, dataset, validated, tags)
    version = register_model(run_id)
    decision = promote_model(result, run_id, version, validated)
    create_markdown_artifact(
        key="customs-retrain-report",
        markdown=f"## {tracking.MODEL_NAME} v{version}: {'promoted' if decision.promote else 'not promoted'}\n\n"
        + metrics_table(result.evaluation.metrics, result.baseline_evaluation.metrics)
        + "\n\n" + "\n".join(f"- {r}" for r in decision.reasons),
        description="Holdout metrics of the retrained model and the gate's decision",
    )
    return {"version": version, "run_id": run_id, "promoted": decision.promote, "reasons": decision.reasons,
            "trigger": tags["aduana.trigger"],
            "counts": result.counts, "metrics": result.evaluation.metrics,
            "baseline_metrics": result.baseline_evaluation.metrics, "data_validated": validated,
            "validation_failures": failures}


@flow(name="customs-evaluate")
def customs_evaluate(train: str, test: str, mapping: str | None = None, iterations: int | None = None) -> dict:
    """Benchmark the pipeline on an explicit train/test split of the user's own labelled data (nothing registered)."""
    mapping_obj = load_mapping(Path(mapping) if mapping else None)
    parts = {}
    for name, path in (("train", train), ("test", test)):
        batch = prepare_batch(Path(path), "declarations", mapping_obj)
        if len(batch.rejected):
            progress(f"{name}: {len(batch.rejected):,} invalid rows left out ({batch.rejected['reason'].value_counts().to_dict()})")
        parts[name] = batch.valid.drop(columns=["row_number", "row_hash"])
    frame, split, history = explicit_split(parts["train"], parts["test"])
    result = train_and_evaluate(frame, FitConfig(iterations=iterations or get_settings().train_iterations), split, history)
    settings = get_settings()
    client = tracking.configure(settings)
    run_id, _ = tracking.log_training(client, result, f"evaluate-{Path(train).stem}", settings, flow_run.get_id())
    return {"run_id": run_id, "counts": result.counts, "metrics": result.evaluation.metrics,
            "baseline_metrics": result.baseline_evaluation.metrics, "behaviour": result.behaviour}
