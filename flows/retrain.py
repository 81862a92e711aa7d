"""customs-retrain: features → train → evaluate → register → gate, tracked in MLflow."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from features.build import integrate
from features.errors import UserError
from features.intake.batch import prepare_batch
from features.intake.mapping import load_mapping
from features.settings import get_settings
from features.warehouse import Warehouse
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
        raise UserError("the warehouse holds no declarations: run 'aduana ingest' first")
    frame = integrate(declarations, warehouse.table("manifests"), warehouse.table("traders"))
    progress(f"loaded {len(frame):,} declarations ({int((frame['inspected'] == 1).sum()):,} controlled)")
    return frame, warehouse.validation_failures()


def fit_config(iterations: int | None = None) -> FitConfig:
    """The training configuration the settings ask for."""
    settings = get_settings()
    return FitConfig(iterations=iterations or settings.train_iterations, ablation=settings.train_ablation,
                     reference_iterations=settings.train_reference_iterations)


@task(name="train_model", cache_policy=NO_CACHE)
def train_model(frame: pd.DataFrame, iterations: int, tune_seconds: float | None = None) -> TrainingResult:
    progress("building features, choosing feature groups, training the risk model and the reference…")
    if tune_seconds:
        progress(f"searching hyperparameters with Optuna for {tune_seconds:.0f} s (validation window only)…")
    config = fit_config(iterations)
    result = train_and_evaluate(frame, config, tune_seconds=tune_seconds)
    if result.trials:
        best = max(result.trials, key=lambda t: t.value)
        progress(f"{len(result.trials)} trials; best validation PR-AUC {best.value:.4f} with {best.params}")
    progress(f"trained on {result.counts['train']:,} controlled rows; holdout {result.counts['holdout']:,} rows")
    return result


@task(name="log_model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def log_model(result: TrainingResult, dataset: str, warnings: list[str], tags: dict[str, str]) -> dict[str, str]:
    settings = get_settings()
    client = tracking.configure(settings)
    return tracking.log_training(client, result, dataset, settings, flow_run.get_id(), warnings, tags)


def gate_policy() -> GatePolicy:
    settings = get_settings()
    return GatePolicy(metric=settings.gate_metric, confidence=settings.gate_confidence, margin=settings.gate_margin,
                      block_on_warnings=settings.gate_block_on_warnings)


@task(name="promote_model", cache_policy=NO_CACHE)
def promote_model(result: TrainingResult, runs: dict[str, str], warnings: list[str]) -> tuple[str, GateDecision]:
    settings = get_settings()
    version, decision = gate_challenger(tracking.configure(settings), result, runs, warnings, gate_policy(),
                                        lock=settings.root / "locks" / "promotion.lock",
                                        log=settings.promotions_log)
    progress(f"registered {tracking.MODEL_NAME} v{version} ({decision.candidate}) as @{tracking.CHALLENGER}")
    verdict = f"promoted v{version} to @{tracking.CHAMPION}" if decision.promote else f"kept v{version} as challenger"
    progress(f"gate: {verdict}")
    return version, decision


def metrics_table(model: dict, reference: dict) -> str:
    keys = [f"{m}_at_{n}pct" for m in ("precision", "recall", "revenue") for n in RATES] + ["pr_auc"]
    rows = ["| metric | model | reference (default CatBoost) |", "|---|---:|---:|"]
    fmt = lambda v: "absent" if v is None else f"{v:.3f}"  # noqa: E731
    rows += [f"| {label(k)} | {fmt(model.get(k))} | {fmt(reference.get(k))} |" for k in keys]
    return "\n".join(rows)


def groups_summary(result: TrainingResult) -> list[dict]:
    return [{"group": g.group, "kept": g.kept, "delta": g.delta, "note": g.note} for g in result.groups]


def trigger_tags(drift: dict | None) -> dict[str, str]:
    """Run tags saying why this retrain happened (schedule or hand, or which drift event)."""
    if not drift:
        return {"aduana.trigger": "schedule-or-manual"}
    return {"aduana.trigger": "drift", "aduana.drift_model_version": str(drift.get("model_version", "")),
            "aduana.drift_features": ",".join(drift.get("drifted_features", []))[:5000],
            "aduana.drift_monitor_run_id": str(drift.get("mlflow_run_id", ""))}


@flow(name="customs-retrain")
def customs_retrain(dataset: str = "warehouse", iterations: int | None = None, drift: dict | None = None,
                    tune_seconds: float | None = None) -> dict:
    """Retrain on the warehouse's controlled declarations and let the promotion gate decide.

    `drift`: the payload of the aduana.drift.detected event that triggered this run, if one did."""
    if drift:
        progress(f"triggered by drift on v{drift.get('model_version')}: {', '.join(drift.get('drifted_features', [])) or 'outcomes'}")
    frame, warnings = load_training_data()
    result = train_model(frame, iterations or get_settings().train_iterations, tune_seconds)
    tags = trigger_tags(drift)
    runs = log_model(result, dataset, warnings, tags)
    version, decision = promote_model(result, runs, warnings)
    create_markdown_artifact(
        key="customs-retrain-report",
        markdown=f"## {tracking.MODEL_NAME} v{version} ({decision.candidate}): "
        f"{'promoted' if decision.promote else 'not promoted'}\n\n"
        + metrics_table(result.evaluation.metrics, result.reference_evaluation.metrics)
        + "\n\n" + "\n".join(f"- {r}" for r in decision.reasons),
        description="Holdout metrics of the retrained model and the reference, and the gate's decision",
    )
    return {"version": version, "candidate": decision.candidate, "run_id": runs[decision.candidate],
            "model_run_id": runs["model"], "reference_run_id": runs["reference"], "promoted": decision.promote,
            "reasons": decision.reasons, "trigger": tags["aduana.trigger"], "counts": result.counts,
            "metrics": result.evaluation.metrics, "reference_metrics": result.reference_evaluation.metrics,
            "feature_groups": groups_summary(result), "validation_warnings": warnings}


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
    config = fit_config(iterations)
    result = train_and_evaluate(frame, config, split, history)
    progress("feature groups: " + ", ".join(f"{g.group} {'kept' if g.kept else 'left out'}" for g in result.groups))
    settings = get_settings()
    client = tracking.configure(settings)
    runs = tracking.log_training(client, result, f"evaluate-{Path(train).stem}", settings, flow_run.get_id())
    return {"run_id": runs["model"], "reference_run_id": runs["reference"], "counts": result.counts,
            "metrics": result.evaluation.metrics, "reference_metrics": result.reference_evaluation.metrics,
            "feature_groups": groups_summary(result), "behaviour": result.behaviour}
