"""Every MLflow call lives here: the tracking store, runs, the pyfunc model, the registry and its aliases."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

import mlflow
import pandas as pd
from catboost import CatBoostClassifier, CatBoostRegressor
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from features.build import FeatureSet
from features.errors import UserError
from features.prices import PriceBands
from features.settings import Settings
from training import figures
from training.drift import reference_sample
from training.gate import GateDecision
from training.models import RiskModel, Split
from training.monitoring import MonitorReport
from training.pipeline import Evaluation, TrainingResult

MODEL_NAME = "customs-risk"
CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "aduana.champion_history"
MODEL_URI_TAG = "aduana.model_uri"  # on the registered model: JSON list of past champion versions
REFERENCE_FILE = Path("monitoring/reference.parquet")  # on the training run: the drift reference sample
PIP_REQUIREMENTS = ["catboost==1.2.10", "pandas", "numpy", "pyarrow"]


_URIS_WE_SET: set[str] = set()  # mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI; ours is not the user's


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at the user's MLFLOW_TRACKING_URI, or at the sqlite store under ADUANA_HOME."""
    user_uri = os.environ.get("MLFLOW_TRACKING_URI")
    uri = user_uri if user_uri and user_uri not in _URIS_WE_SET else f"sqlite:///{settings.mlflow_db}"
    _URIS_WE_SET.add(uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(client: MlflowClient, name: str, settings: Settings) -> str:
    """One experiment per dataset, with its artifacts under ADUANA_HOME (never ./mlruns)."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    location = (settings.mlflow_artifacts / name.replace("/", "_")).as_uri()
    return client.create_experiment(name, artifact_location=location)


PYFUNC_CODE = Path(__file__).with_name("risk_pyfunc.py")  # logged as code, never pickled
CHECKSUM_TAG = "aduana.artifact_sha256"  # on the run, then on the registry version: JSON {file name: sha256}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_risk_model(model: RiskModel, directory: Path) -> dict[str, str]:
    """Write the model's parts; returns the pyfunc artifacts mapping."""
    directory.mkdir(parents=True, exist_ok=True)
    artifacts = {"classifier": str(directory / "classifier.cbm"), "spec": str(directory / "spec.json"),
                 "price_bands": str(directory / "price_bands.parquet")}
    model.classifier.save_model(artifacts["classifier"])
    if model.revenue_model is not None:
        artifacts["revenue"] = str(directory / "revenue.cbm")
        model.revenue_model.save_model(artifacts["revenue"])
    spec = {"categorical": model.categorical, "numeric": model.numeric, "revenue_smearing": model.revenue_smearing}
    Path(artifacts["spec"]).write_text(json.dumps(spec, indent=2))
    model.price_bands.table.to_parquet(artifacts["price_bands"], index=False)
    return artifacts


def load_risk_model(artifacts: dict[str, str]) -> RiskModel:
    spec = json.loads(Path(artifacts["spec"]).read_text())
    classifier = CatBoostClassifier()
    classifier.load_model(artifacts["classifier"])
    revenue = None
    if "revenue" in artifacts:
        revenue = CatBoostRegressor()
        revenue.load_model(artifacts["revenue"])
    model = RiskModel(classifier=classifier, categorical=spec["categorical"], numeric=spec["numeric"],
                      revenue_model=revenue, revenue_smearing=spec["revenue_smearing"])
    model.price_bands = PriceBands(pd.read_parquet(artifacts["price_bands"]))
    return model


def _log_metrics(evaluation: Evaluation) -> None:
    mlflow.log_metrics({k: v for k, v in evaluation.metrics.items() if v is not None})
    absent = sorted(k for k, v in evaluation.metrics.items() if v is None)
    if absent:
        mlflow.set_tag("aduana.metrics_absent", ",".join(absent))
    for name, table in evaluation.segments.items():
        if len(table):
            mlflow.log_table(table, artifact_file=f"segments/precision_by_{name}.json")


def _log_model(model: RiskModel, X: pd.DataFrame, reference: pd.DataFrame) -> None:
    example = X[model.columns].head(5)
    signature = infer_signature(example, model.predict(example))
    with tempfile.TemporaryDirectory() as tmp:
        reference[model.columns].to_parquet(Path(tmp) / REFERENCE_FILE.name, index=False)
        mlflow.log_artifact(str(Path(tmp) / REFERENCE_FILE.name), str(REFERENCE_FILE.parent))
        artifacts = save_risk_model(model, Path(tmp) / "model")
        checksums = {Path(p).name: _sha256(p) for p in artifacts.values()}
        info = mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_CODE), artifacts=artifacts,
                                       signature=signature, input_example=example, pip_requirements=PIP_REQUIREMENTS)
    mlflow.set_tags({MODEL_URI_TAG: info.model_uri,  # MLflow 3 keeps models apart from run artifacts
                     CHECKSUM_TAG: json.dumps(checksums, sort_keys=True)})


def _log_candidate(model: RiskModel, evaluation: Evaluation, fs: FeatureSet, split: Split, behaviour: dict,
                   predictions: dict[str, pd.DataFrame]) -> None:
    """What every candidate run holds: its features, metrics, behaviour, plots, model and drift reference."""
    mlflow.log_params({k: v for k, v in model.params.items() if not isinstance(v, dict | list)}
                      | {"features": len(model.columns), "revenue_model": model.revenue_model is not None})
    mlflow.log_dict({"categorical": model.categorical, "numeric": model.numeric,
                     "monotone_constraints": model.params.get("monotone_constraints", {})}, "features.json")
    _log_metrics(evaluation)
    mlflow.log_dict(behaviour, "behaviour_checks.json")
    importance = pd.Series(model.classifier.get_feature_importance(), index=model.columns)
    for name, fig in (("precision_revenue_at_k", figures.selection_curves(predictions)),
                      ("pr_curve", figures.pr_curve(predictions)),
                      ("feature_importance", figures.feature_importance(importance)),
                      ("calibration", figures.calibration(evaluation.predictions))):
        mlflow.log_figure(fig, f"plots/{name}.png")
        figures.plt.close(fig)
    _log_model(model, fs.X, reference_sample(fs.X, fs.meta["declaration_date"], split.valid_start))


def log_training(client: MlflowClient, result: TrainingResult, dataset: str, settings: Settings,
                 flow_run_id: str | None = None, warnings: list[str] | None = None,
                 tags: dict[str, str] | None = None) -> dict[str, str]:
    """Log the reference and the engineered model as two runs of the dataset's experiment, each with its model,
    so either can be registered. Returns {"model": run id, "reference": run id}."""
    experiment_id = ensure_experiment(client, f"aduana-{dataset}", settings)
    fs, split = result.features, result.split
    common_tags = {"aduana.dataset": dataset, "prefect.flow_run_id": flow_run_id or "", "aduana.data_hash": fs.data_hash,
                   "aduana.validation_warnings": str(len(warnings or [])), **(tags or {})}
    common_params = {"valid_start": str(split.valid_start.date()), "holdout_start": str(split.holdout_start.date()),
                     **{f"rows_{k}": v for k, v in result.counts.items()}, "data_hash": fs.data_hash}
    predictions = {"model": result.evaluation.predictions,
                   "reference (default CatBoost)": result.reference_evaluation.predictions}
    stamp = pd.Timestamp.now().strftime("%Y%m%d-%H%M%S")
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"reference-default-catboost-{stamp}",
                          tags={**common_tags, "aduana.role": "reference"}) as reference_run:
        mlflow.log_params(common_params)
        _log_candidate(result.reference, result.reference_evaluation, fs, split, result.reference_behaviour, predictions)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"catboost-risk-{stamp}",
                          tags={**common_tags, "aduana.role": "model",
                                "aduana.reference_run_id": reference_run.info.run_id}) as run:
        mlflow.log_params({**common_params, "feature_groups": ",".join(result.kept_groups) or "none"})
        mlflow.log_input(mlflow.data.from_pandas(fs.X.loc[split.train | split.valid].head(100_000),
                                                 name=f"{dataset}-features-{fs.data_hash}", digest=fs.data_hash),
                         context="training")
        for key, value in result.reference_evaluation.metrics.items():
            if value is not None:
                mlflow.log_metric(f"reference_{key}", value)
        mlflow.log_dict({"groups": [asdict(g) for g in result.groups]}, "feature_groups.json")
        mlflow.log_metrics({f"group_delta_{g.group}": g.delta for g in result.groups if g.delta is not None}
                           | {k.removesuffix("_s") + "_seconds": v for k, v in result.timings.items()})
        _log_candidate(result.model, result.evaluation, fs, split, result.behaviour, predictions)
        for trial in result.trials:  # each Optuna trial as a nested run under the training run
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"trial-{trial.number}", nested=True,
                                  tags={**common_tags, "aduana.role": "tuning-trial"}):
                mlflow.log_params(trial.params)
                mlflow.log_metrics({"validation_pr_auc": trial.value, "fit_seconds": trial.seconds})
    return {"model": run.info.run_id, "reference": reference_run.info.run_id}


def load_reference(client: MlflowClient, version: str) -> pd.DataFrame:
    """The drift reference sample logged with a registry version's training run."""
    run_id = client.get_model_version(MODEL_NAME, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, str(REFERENCE_FILE), tmp)
        except (MlflowException, OSError) as exc:
            raise UserError(f"{MODEL_NAME} v{version} has no drift reference ({REFERENCE_FILE}): "
                            "it was trained before monitoring existed; retrain it") from exc
        return pd.read_parquet(path)


def log_monitoring(client: MlflowClient, report: MonitorReport, settings: Settings, flow_run_id: str | None) -> str:
    """One run of the `aduana-monitoring` experiment per check: PSI per feature, score drift, outcomes, alerts."""
    experiment_id = ensure_experiment(client, "aduana-monitoring", settings)
    name = f"monitor-v{report.model_version}-{report.window[1].date()}"
    tags = {"aduana.model_version": report.model_version, "aduana.drift_detected": str(report.drift_detected).lower(),
            "prefect.flow_run_id": flow_run_id or ""}
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags) as run:
        mlflow.log_params({"window_start": str(report.window[0].date()), "window_end": str(report.window[1].date()),
                           "rows": report.rows, "reference_rows": report.reference_rows})
        metrics = {f"psi.{row.feature}": row.psi for row in report.features.itertuples()}
        metrics.update({f"missing.{row.feature}": row.missing_current for row in report.features.itertuples()})
        metrics.update({"score_psi": report.score["psi"], "score_ks": report.score["statistic"],
                        "drifted_features": len(report.drifted_features), "alerts": len(report.alerts)})
        for stratum, figures_ in report.outcomes.items():
            metrics.update({f"{stratum}.{k}": v for k, v in figures_.items() if isinstance(v, int | float)})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and pd.notna(v)})
        mlflow.log_table(report.features, artifact_file="monitoring/feature_drift.json")
        mlflow.log_dict({"payload": report.payload(), "outcomes": report.outcomes, "score": report.score},
                        "monitoring/report.json")
    return run.info.run_id


def register_challenger(client: MlflowClient, run_id: str) -> str:
    """Register the run's model as a new version of customs-risk and point @challenger at it."""
    try:
        client.get_registered_model(MODEL_NAME)
    except MlflowException:
        client.create_registered_model(MODEL_NAME, description="P(fraud) and expected revenue per declaration.")
    tags = client.get_run(run_id).data.tags
    version = client.create_model_version(MODEL_NAME, tags[MODEL_URI_TAG], run_id=run_id,
                                          tags={"artifact_sha256": tags[CHECKSUM_TAG]})
    client.set_registered_model_alias(MODEL_NAME, CHALLENGER, version.version)
    return str(version.version)


def alias_version(client: MlflowClient, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(MODEL_NAME, alias).version)
    except MlflowException:
        return None


def load_version(version: str) -> RiskModel:
    """The RiskModel behind a registry version, read from its CatBoost files after checking them against the
    checksums recorded at registration. Nothing is unpickled and no code from the store runs."""
    client = MlflowClient()
    try:
        recorded = json.loads(client.get_model_version(MODEL_NAME, version).tags["artifact_sha256"])
    except KeyError as exc:
        raise UserError(f"{MODEL_NAME} v{version} has no recorded artifact checksums: it was registered before "
                        "checksums existed; retrain or re-register it") from exc
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{MODEL_NAME}/{version}", dst_path=tmp))
        files = {p.name: p for p in (local / "artifacts").iterdir() if p.is_file()}
        if set(files) != set(recorded) or any(_sha256(files[n]) != digest for n, digest in recorded.items()):
            raise UserError(f"{MODEL_NAME} v{version}: its artifacts do not match the checksums recorded at "
                            "registration; refusing to serve a model that was changed in the store")
        parts = {"classifier": "classifier.cbm", "revenue": "revenue.cbm", "spec": "spec.json",
                 "price_bands": "price_bands.parquet"}
        return load_risk_model({key: str(files[name]) for key, name in parts.items() if name in files})


def append_promotion(log: Path | None, record: dict) -> None:
    """Append one line to the promotions log (JSON lines, never rewritten)."""
    if log is None:
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(json.dumps({"at": pd.Timestamp.now(tz="UTC").isoformat(), **record}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_promotions(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []


def _move_champion(client: MlflowClient, version: str) -> str | None:
    """Point @champion at `version`, remembering the previous champion for rollback; returns the previous one."""
    current = alias_version(client, CHAMPION)
    if current is not None and current != version:
        history = _history(client)
        history.append(current)
        client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    return current


def record_decision(client: MlflowClient, run_id: str, version: str, decision: GateDecision,
                    compared_with: str | None = None, log: Path | None = None) -> None:
    """Log the gate's decision on the run and as tags on the version; move @champion when it promotes.

    `compared_with`: the champion the challenger was measured against. If @champion has moved since (another
    retrain promoted meanwhile), the promotion is refused: the comparison no longer holds."""
    current = alias_version(client, CHAMPION)
    if decision.promote and current != compared_with:
        decision.promote = False
        decision.reasons.append(f"@{CHAMPION} moved from {'v' + compared_with if compared_with else 'none'} to "
                                f"v{current} during this evaluation: not promoted; retrain to compare with v{current}")
    text = "\n".join(decision.reasons)
    verdict = "promoted" if decision.promote else "refused"
    client.set_tag(run_id, "aduana.gate", verdict)
    client.log_text(run_id, json.dumps(asdict(decision), indent=2), "gate_decision.json")
    for key, value in (("gate", verdict), ("gate_reference", decision.reference), ("gate_reasons", text[:5000]),
                       ("candidate", decision.candidate)):
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    if decision.promote:
        previous = _move_champion(client, version)
        append_promotion(log, {"action": "promote", "version": version, "previous": previous, "by": "gate",
                               "reason": text[:2000]})


def promote_by_hand(client: MlflowClient, version: str, reason: str, who: str, log: Path | None) -> str | None:
    """Move @champion to `version` by a person's decision, with the reason, who and when on the version's tags and
    in the promotions log. Returns the previous champion."""
    if not reason.strip():
        raise UserError("promote --version needs --reason: say why this version should serve")
    try:
        client.get_model_version(MODEL_NAME, version)
    except MlflowException as exc:
        raise UserError(f"{MODEL_NAME} has no version {version}") from exc
    when = pd.Timestamp.now(tz="UTC").isoformat()
    for key, value in (("promoted_by", who), ("promoted_at", when), ("promotion_reason", reason[:5000])):
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    previous = _move_champion(client, version)
    append_promotion(log, {"action": "promote", "version": version, "previous": previous, "by": who, "reason": reason})
    return previous


def _history(client: MlflowClient) -> list[str]:
    tags = client.get_registered_model(MODEL_NAME).tags
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def rollback(client: MlflowClient, log: Path | None = None, who: str = "") -> tuple[str, str]:
    """Restore the previous champion. Returns (version demoted, version restored)."""
    current = alias_version(client, CHAMPION)
    history = _history(client) if current is not None else []
    if current is None or not history:
        raise UserError("no previous champion to roll back to")
    restored = history.pop()
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, restored)
    client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(MODEL_NAME, current, "rolled_back", pd.Timestamp.now().isoformat())
    append_promotion(log, {"action": "rollback", "version": restored, "previous": current, "by": who or "unknown",
                           "reason": "rollback"})
    return current, restored


def log_backtest(client: MlflowClient, result, settings: Settings, flow_run_id: str | None = None) -> str:  # noqa: ANN001
    """Log a backtest as one run of the `aduana-backtest` experiment; returns the run id.

    `result` is a serving.backtest.BacktestResult, used by its fields only (training does not import serving):
    `params` (the configuration), `summary` (per-policy cumulative and pre/post-drift figures) and `weekly`
    (one row per week and policy). Per-week metrics are logged with step = week of the replay.
    """
    from mlflow.entities import Metric, Param

    experiment_id = ensure_experiment(client, "aduana-backtest", settings)
    stamp = pd.Timestamp.now()
    run = client.create_run(experiment_id, run_name=f"backtest-{stamp:%Y%m%d-%H%M%S}",
                            tags={"prefect.flow_run_id": flow_run_id or "", "aduana.source": result.summary["source"],
                                  "aduana.role": "backtest"})
    run_id = run.info.run_id
    millis = int(stamp.timestamp() * 1000)

    def metric(key: str, value: object, step: int = 0) -> list[Metric]:
        ok = isinstance(value, int | float) and value == value  # NaN and None are absent, not zero
        return [Metric(key, float(value), millis, step)] if ok else []

    params = [Param(k, str(v)[:500]) for k, v in result.params.items()]
    metrics: list[Metric] = []
    for policy, stats in result.summary["policies"].items():
        for name in ("precision", "recall", "revenue_share", "exploration_hit_rate"):
            metrics += metric(f"{policy}_{name}", stats.get(name))
            for period in ("pre_drift", "post_drift"):
                metrics += metric(f"{policy}_{period}_{name}", (stats.get(period) or {}).get(name))
    for row in result.weekly.itertuples(index=False):
        for name in ("precision", "recall", "revenue_share", "cum_precision", "cum_recall", "cum_revenue_share"):
            metrics += metric(f"{row.policy}_week_{name}", getattr(row, name), int(row.week))
    for start in range(0, max(len(params), 1), 100):
        client.log_batch(run_id, params=params[start:start + 100])
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    client.log_text(run_id, result.weekly.to_csv(index=False), "backtest/weekly.csv")
    client.log_dict(run_id, result.summary, "backtest/summary.json")
    for name, fig in (("precision_recall_by_week", figures.backtest_weekly(result.weekly)),
                      ("cumulative_revenue_share", figures.backtest_cumulative(result.weekly))):
        client.log_figure(run_id, fig, f"plots/{name}.png")
        figures.plt.close(fig)
    client.set_terminated(run_id)
    return run_id
