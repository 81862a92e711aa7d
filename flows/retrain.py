"""customs-retrain: features → train → evaluate → register → gate, tracked in MLflow."""
from __future__ import annotations

import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import pandas as pd
from prefect import Flow, flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from features.build import integrate
from features.errors import UserError
from features.intake.mapping import load_mapping
from features.intake.prepared import prepare_batch
from features.warehouse import read_tables
from flows import bars
from flows.orchestration import runtime
from flows.orchestration.dask import with_dask as on_dask
from flows.orchestration.runtime import Runtime, progress
from flows.render import train_markdown
from training import registry, runs
from training.anomaly import ANOMALY_MODEL_NAME, fit_anomaly, log_anomaly_model, register_anomaly
from training.feature_partitions import FeaturePartitions, build_part
from training.gate import GateDecision
from training.models import FitConfig
from training.pipeline import (
    Featured,
    TrainingResult,
    describe_blend,
    explicit_split,
    fit_and_evaluate,
    train_and_evaluate,
)
from training.promotion import gate_challenger
from training.snapshot_training import featured_from_snapshot, train_from_snapshot

# The history training reads: the integrated declarations in pandas, or, beyond `training_memory_rows` declarations
# (or on a Dask cluster), the warehouse's snapshot as Parquet files (table → path) that training reads through
# DuckDB; on a cluster, the featured rows' features built there (`Featured`).
TrainingData = pd.DataFrame | dict[str, str] | Featured


@task(name="load_training_data", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def load_training_data(rt: Runtime, snapshot: bool = False) -> tuple[TrainingData, list[str]]:
    """The history (see TrainingData); `snapshot`: the snapshot whatever the warehouse's size."""
    stored = rt.warehouse.counts()["declarations"]
    if not stored:
        raise UserError("the warehouse holds no declarations: run 'aduana ingest' first")
    warnings = rt.warehouse.validation_failures()
    if snapshot or stored > rt.settings.training_memory_rows:  # the flow removes it once training has read it
        exported = rt.warehouse.export_tables(rt.settings.work_dir / f"train-{uuid.uuid4().hex[:12]}")
        why = ("on the Dask cluster" if snapshot else
               f"{stored:,} declarations, more than training_memory_rows ({rt.settings.training_memory_rows:,})")
        progress(f"{why}: training reads the warehouse's snapshot through DuckDB (its labelled rows and drift "
                 "reference only)")
        return exported, warnings
    tables = read_tables(rt.warehouse)
    frame = integrate(tables.declarations, tables.manifests, tables.traders)
    progress(f"loaded {len(frame):,} declarations ({int((frame['inspected'] == 1).sum()):,} controlled)")
    return frame, warnings


def remove_snapshot(data: TrainingData) -> None:
    """The snapshot's folder, once training has read it."""
    if isinstance(data, dict):
        shutil.rmtree(Path(data["declarations"]).parent, ignore_errors=True)


@task(name="build_feature_partition", cache_policy=NO_CACHE, retries=1)
def build_feature_partition(folder: str, i: int) -> int:
    """On a Dask worker: partition i's features, from the run folder's Parquet files and the snapshot
    (training/feature_partitions.py)."""
    return build_part(folder, i)


def featured_on_cluster(rt: Runtime, snapshot: dict[str, str]) -> Featured:
    """The featured rows' features built as tasks on the flow's task runner (a Dask cluster), a partition of
    `score_partition_rows` rows each; the rest of the feature work (split, bands, bills) in this process."""
    folder = rt.settings.work_dir / f"features-{uuid.uuid4().hex[:12]}"

    def each(parts: list[int]) -> list[int]:
        return [future.result() for future in [build_feature_partition.submit(str(folder), i) for i in parts]]

    partitions = FeaturePartitions(folder, snapshot, rt.settings.score_memory_limit, rt.settings.score_partition_rows,
                                   each)
    try:
        return featured_from_snapshot(snapshot, progress, partitions=partitions)
    finally:
        partitions.remove()


def fit_config(rt: Runtime, iterations: int | None = None) -> FitConfig:
    """The settings' training configuration, with the run's own number of iterations if it gives one."""
    return replace(rt.settings.train, iterations=iterations) if iterations else rt.settings.train


@task(name="train_model", cache_policy=NO_CACHE)
def train_model(data: TrainingData, config: FitConfig, tune_seconds: float | None = None,
                training_runs: runs.TrainingRuns | None = None) -> TrainingResult:
    """Fit and evaluate; `training_runs` opens each model's MLflow run as its work starts."""
    if tune_seconds:
        progress(f"searching hyperparameters with Optuna for {tune_seconds:.0f} s (validation window only)…")
    starting = training_runs.begin if training_runs is not None else (lambda role: None)
    train = (fit_and_evaluate if isinstance(data, Featured) else train_from_snapshot if isinstance(data, dict)
             else train_and_evaluate)
    result = train(data, config, tune_seconds=tune_seconds, report=progress, starting=starting, advance=bars.advance)
    if result.trials:
        best = max(result.trials, key=lambda t: t.value)
        progress(f"{len(result.trials)} trials; best validation PR-AUC {best.value:.4f} with {best.params}")
    progress(f"trained on {result.counts['train']:,} controlled rows; holdout {result.counts['holdout']:,} rows; "
             f"{result.fit_seconds_per_100k_labelled:.0f} s of fitting per 100k labelled rows")
    return result


@task(name="track_training", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def track_training(training_runs: runs.TrainingRuns, result: TrainingResult, warnings: list[str]) -> dict[str, str]:
    return training_runs.log(result, warnings)


@task(name="track_anomaly_model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def track_anomaly_model(rt: Runtime, result: TrainingResult, run_id: str) -> str:
    """The unsupervised assessment model: fitted on every featured declaration (the labelled ones and the drift
    reference sample of all declarations, labelled or not), logged in the training run and registered as
    customs-anomaly@champion, which targeted exploration reads (an unsupervised model has no labelled gate)."""
    model = fit_anomaly(result.features)
    log_anomaly_model(rt.client, model, run_id=run_id, X=result.features.X)
    version = register_anomaly(rt.client, run_id)
    progress(f"registered {ANOMALY_MODEL_NAME} v{version} as @champion ({len(model.used)} columns, "
             f"{model.rows_fitted:,} declarations)")
    return version


@task(name="promote_model", cache_policy=NO_CACHE)
def promote_model(rt: Runtime, result: TrainingResult, logged: dict[str, str],
                  warnings: list[str]) -> tuple[str, GateDecision]:
    settings = rt.settings
    version, decision = gate_challenger(rt.client, result, logged, warnings, settings.gate,
                                        lock=settings.locks_dir / "promotion.lock",
                                        log=settings.promotions_log)
    progress(f"registered {registry.MODEL_NAME} v{version} ({decision.candidate}) as @{registry.CHALLENGER}")
    verdict = f"promoted v{version} to @{registry.CHAMPION}" if decision.promote else f"kept v{version} as challenger"
    progress(f"gate: {verdict}")
    return version, decision


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
                    tune_seconds: float | None = None, cluster: bool = False) -> dict:
    """Retrain on the warehouse's controlled declarations and let the promotion gate decide.

    `drift`: the payload of the aduana.drift.detected event that triggered this run, if one did. `cluster`: build
    the features as tasks on the flow's task runner (a Dask cluster: `with_dask`), from the warehouse's snapshot."""
    if drift:
        progress(f"triggered by drift on v{drift.get('model_version')}: {', '.join(drift.get('drifted_features', [])) or 'outcomes'}")
    rt = runtime.current()
    data, warnings = load_training_data(rt, snapshot=cluster)
    tags = trigger_tags(drift)
    # The runs open before the training and end after their logging (FAILED if either raises), so that their
    # duration and system metrics are the training's.
    try:
        with runs.TrainingRuns(rt.client, dataset, rt.artifacts, flow_run.get_id(), tags) as training_runs:
            if cluster:  # the feature tasks go to the cluster from the flow itself
                training_runs.begin("model")
                snapshot = data
                data = featured_on_cluster(rt, snapshot)
                remove_snapshot(snapshot)
            result = train_model(data, fit_config(rt, iterations), tune_seconds, training_runs)
            logged = track_training(training_runs, result, warnings)
    finally:
        remove_snapshot(data)
    anomaly_version = track_anomaly_model(rt, result, logged["model"])
    version, decision = promote_model(rt, result, logged, warnings)
    summary = {"version": version, "candidate": decision.candidate, "run_id": logged[decision.candidate],
            "model_run_id": logged["model"], "reference_run_id": logged["reference"], "promoted": decision.promote,
            "reasons": decision.reasons, "trigger": tags["aduana.trigger"], "counts": result.counts,
            "fit_seconds_per_100k_labelled": result.fit_seconds_per_100k_labelled,
            "metrics": result.evaluation.metrics, "reference_metrics": result.reference_evaluation.metrics,
            "feature_groups": groups_summary(result), "blend": describe_blend(result.blend),
            "validation_warnings": warnings, "experiment_id": training_runs.experiment_id,
            "anomaly_model_version": anomaly_version,
            "tracking_uri": rt.client.tracking_uri}
    create_markdown_artifact(key="customs-retrain-report", markdown=train_markdown(summary),
                             description="Holdout metrics of the retrained model and the reference, and the gate's decision")
    return summary


def with_dask(address: str, workers: int | None = None) -> Flow:
    """customs-retrain on a Dask cluster (flows/orchestration/dask.py)."""
    return on_dask(customs_retrain, address, workers)


@flow(name="customs-evaluate")
def customs_evaluate(train: str, test: str, mapping: str | None = None, iterations: int | None = None) -> dict:
    """Benchmark the pipeline on an explicit train/test split of the user's own labelled data (nothing registered)."""
    rt = runtime.current()
    mapping_obj = load_mapping(Path(mapping) if mapping else None)
    parts = {}
    for name, path in (("train", train), ("test", test)):
        batch = prepare_batch(Path(path), "declarations", mapping_obj)
        if len(batch.rejected):
            progress(f"{name}: {len(batch.rejected):,} invalid rows left out ({batch.rejected['reason'].value_counts().to_dict()})")
        parts[name] = batch.rows
    frame, split, history = explicit_split(parts["train"], parts["test"])
    with runs.TrainingRuns(rt.client, f"evaluate-{Path(train).stem}", rt.artifacts, flow_run.get_id()) as training_runs:
        result = train_and_evaluate(frame, fit_config(rt, iterations), split, history, report=progress,
                                    starting=training_runs.begin, advance=bars.advance)
        logged = training_runs.log(result)
    return {"run_id": logged["model"], "reference_run_id": logged["reference"], "counts": result.counts,
            "fit_seconds_per_100k_labelled": result.fit_seconds_per_100k_labelled,
            "metrics": result.evaluation.metrics, "reference_metrics": result.reference_evaluation.metrics,
            "feature_groups": groups_summary(result), "blend": describe_blend(result.blend),
            "behaviour": result.behaviour, "experiment_id": training_runs.experiment_id}
