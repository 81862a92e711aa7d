"""The run loggers: each training (the reference and the engineered model, each with its model), monitoring
check and backtest as an MLflow run of its experiment, with its metrics, tables and plots.

A training's two runs are open while the work is done (TrainingRuns): each starts as its work starts, samples
MLflow's system metrics (CPU, memory, disk) until it ends, and ends when its logging ends, or as FAILED."""
from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import mlflow
import pandas as pd
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags

from features.build import FeatureSet
from features.errors import UserError
from training import figures
from training.models import RiskModel, Split
from training.monitoring import MonitorReport
from training.pipeline import Evaluation, TrainingResult
from training.registry import MODEL_NAME
from training.store import log_model

if TYPE_CHECKING:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

REFERENCE_FILE = Path("monitoring/reference.parquet")  # on the training run: the drift reference sample


PLUMBING = {"thread_count", "verbose", "allow_writing_files"}  # how CatBoost ran, not what was fitted
# MLflow 3.17's UI decides between its GenAI overview and its runs table from the page's address (`/runs`, or
# `?workflowType=machine_learning`) or the browser's last choice; the kind tag is what MLflow's experiment list and
# its APIs read, and what the UI went by before 3.17.
KIND_TAG, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"
# The runs table's columns can only be chosen through a shared view: an experiment tag the UI reads when the address
# carries `viewStateShareKey` (experiment_path). Without it the table shows Source, Models and Dataset only.
VIEW_KEY = "aduana-headline"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
HEADLINE_METRICS = ("pr_auc", "precision_at_5pct", "recall_at_5pct", "revenue_at_5pct", "precision_at_1pct")
VIEW = json.dumps({"selectedColumns": ["attributes.`Models`", *(f"metrics.`{m}`" for m in HEADLINE_METRICS)],
                   "orderByKey": "attributes.start_time", "orderByAsc": False})
# MLflow samples every 10 s by default, which gives a 40 s fit four points; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL
# (seconds) overrides this.
SYSTEM_METRICS_INTERVAL_S = 2.0
RUN_NAMES = {"model": "catboost-risk-{stamp}", "reference": "reference-default-catboost-{stamp}"}

_logger = logging.getLogger(__name__)


def experiment_path(experiment_id: str) -> str:
    """The UI's address (after the server's root) of an experiment's runs table with the headline metric columns."""
    return f"#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"


def ensure_experiment(client: MlflowClient, name: str, artifacts: Path) -> str:
    """One experiment per dataset, with its artifacts under ADUANA_HOME (never ./mlruns) or, on a tracking server,
    where the server keeps them (served artifacts); marked as model development and carrying the runs table's
    headline columns (VIEW_TAG); an older experiment gets both here."""
    tags = {KIND_TAG: MODEL_DEVELOPMENT, VIEW_TAG: VIEW}
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        for key, value in tags.items():
            if existing.tags.get(key) != value:
                client.set_experiment_tag(existing.experiment_id, key, value)
        return existing.experiment_id
    if client.tracking_uri.startswith(("http://", "https://")):  # a tracking server stores and serves them itself
        return client.create_experiment(name, tags=tags)
    location = (artifacts / name.replace("/", "_")).as_uri()
    return client.create_experiment(name, artifact_location=location, tags=tags)


def _log_metrics(evaluation: Evaluation) -> None:
    mlflow.log_metrics({k: v for k, v in evaluation.metrics.items() if v is not None})
    absent = sorted(k for k, v in evaluation.metrics.items() if v is None)
    if absent:
        mlflow.set_tag("aduana.metrics_absent", ",".join(absent))
    for name, table in evaluation.segments.items():
        if len(table):
            mlflow.log_table(table, artifact_file=f"segments/precision_by_{name}.json")


def _log_inputs(fs: FeatureSet, split: Split, dataset: str) -> None:
    """The three parts of the time split as the run's dataset inputs (their schema, size and digest; MLflow keeps no
    copy of the rows): what was fitted on, what stopped and chose it, what judged it."""
    for context, rows in (("training", split.train), ("validation", split.valid), ("holdout", split.holdout)):
        part = fs.X.loc[rows]
        mlflow.log_input(mlflow.data.from_pandas(part, name=f"{dataset}-{context}-{fs.data_hash}",
                                                 digest=f"{fs.data_hash}-{context}"), context=context)


def _revenue_params(model: RiskModel) -> dict:
    """The revenue model's categorical statistics as training chose them (training/models.py `_fit_revenue`): 1,
    each categorical alone, or CatBoost's own combinations (`default`)."""
    if model.revenue_model is None:
        return {}
    return {"revenue_max_ctr_complexity": model.revenue_model.get_params().get("max_ctr_complexity", "default")}


def _log_candidate(model: RiskModel, evaluation: Evaluation, fs: FeatureSet, drift: pd.DataFrame, behaviour: dict,
                   predictions: dict[str, pd.DataFrame]) -> None:
    """What every candidate run holds: its features, metrics, behaviour, plots, model and drift reference (`drift`:
    the training's drift reference sample, TrainingResult.drift_reference)."""
    mlflow.log_params({k: v for k, v in model.params.items() if not isinstance(v, dict | list) and k not in PLUMBING}
                      | {"features": len(model.columns), "revenue_model": model.revenue_model is not None}
                      | _revenue_params(model))
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
    with tempfile.TemporaryDirectory() as tmp:  # the drift reference, which monitoring compares windows with
        path = Path(tmp) / REFERENCE_FILE.name
        drift[model.columns].to_parquet(path, index=False)
        mlflow.log_artifact(str(path), str(REFERENCE_FILE.parent))
    log_model(model, fs.X)


class TrainingRuns:
    """The reference's and the engineered model's runs of one training, opened as their work starts and ended when
    their logging ends: the run's duration in the UI is the training's, with system metrics over it. Use it as a
    context manager: an error inside ends every run still open as FAILED (and nothing is registered, as the gate
    comes after). A plain class, not a dataclass: Prefect hands it to tasks as it is."""

    def __init__(self, client: MlflowClient, dataset: str, artifacts: Path, flow_run_id: str | None = None,
                 tags: dict[str, str] | None = None):
        self.client, self.dataset = client, dataset
        self.experiment_id = ensure_experiment(client, f"aduana-{dataset}", artifacts)
        self.tags = {"aduana.dataset": dataset, "prefect.flow_run_id": flow_run_id or "", **(tags or {})}
        self.stamp = pd.Timestamp.now().strftime("%Y%m%d-%H%M%S")
        self.run_ids: dict[str, str] = {}  # role ("model", "reference") → run id, in the order they were opened
        self._monitors: dict[str, SystemMetricsMonitor] = {}
        self._logged: set[str] = set()  # roles whose logging ended well: a retried log() does not log them twice

    def __enter__(self) -> TrainingRuns:
        self.begin("model")  # the engineered model's work (features, ablation, tuning, its fit) starts now
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if error is not None:
            self.fail()

    def begin(self, role: str) -> None:
        """Open the run of `role` ("model" or "reference") now, once; train_and_evaluate calls this as each
        model's work starts."""
        if role in self.run_ids:
            return
        run = self.client.create_run(self.experiment_id, run_name=RUN_NAMES[role].format(stamp=self.stamp),
                                     tags=resolve_tags({**self.tags, "aduana.role": role}))  # source, user, git
        self.run_ids[role] = run.info.run_id
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor  # imports psutil

            monitor = SystemMetricsMonitor(run.info.run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S,
                                           tracking_uri=self.client.tracking_uri)
        except Exception as exc:  # noqa: BLE001 (psutil missing or a platform without its counters: train anyway)
            _logger.warning("no system metrics for run %s: %s", run.info.run_id, exc)
            return
        monitor.start()
        self._monitors[role] = monitor

    def _stop_metrics(self, role: str) -> None:
        """Stop the role's sampling thread, so that nothing samples after its run, and log its last samples (MLflow
        drops an interval cut short, which would leave a run shorter than one interval without any)."""
        monitor = self._monitors.pop(role, None)
        if monitor is None:
            return
        monitor.finish()  # joins the thread
        try:
            if last := monitor.aggregate_metrics():
                monitor.publish_metrics(last)
                monitor.mlflow_logger.flush()
        except MlflowException as exc:  # samples are a nicety; never the reason a training fails
            _logger.warning("the last system metrics of run %s not logged: %s", self.run_ids[role], exc)

    def fail(self) -> None:
        """End every run still open as FAILED: the training or its logging raised."""
        for role, run_id in self.run_ids.items():
            self._stop_metrics(role)
            try:
                if self.client.get_run(run_id).info.status == RunStatus.to_string(RunStatus.RUNNING):
                    self.client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
            except MlflowException as exc:  # the store itself failing: the training's own error matters more
                _logger.warning("could not mark run %s as failed: %s", run_id, exc)

    @contextmanager
    def _logging(self, role: str, description: str) -> Iterator[None]:
        """The role's run as MLflow's active run while it is logged; it ends FINISHED after, FAILED on an error."""
        with mlflow.start_run(run_id=self.run_ids[role], description=description, log_system_metrics=False):
            try:
                yield
            finally:
                self._stop_metrics(role)
        self._logged.add(role)

    def log(self, result: TrainingResult, warnings: list[str] | None = None) -> dict[str, str]:
        """Log the reference and the engineered model into their runs, each with its model, so either can be
        registered, and end both. Returns {"model": run id, "reference": run id}."""
        self.begin("reference")  # a result trained without telling these runs
        fs, split, dataset = result.features, result.split, self.dataset
        # data_hash: of the features the training read (its labelled rows and its drift reference sample)
        tags = {"aduana.data_hash": fs.data_hash, "aduana.validation_warnings": str(len(warnings or []))}
        common_params = {"valid_start": str(split.valid_start.date()), "holdout_start": str(split.holdout_start.date()),
                         **{"rows" if k == "rows" else f"rows_{k}": v for k, v in result.counts.items()},
                         "data_hash": fs.data_hash}
        predictions = {"model": result.evaluation.predictions,
                       "reference (default CatBoost)": result.reference_evaluation.predictions}
        rows = (f"{result.counts['train']:,} training, {result.counts.get('valid', 0):,} validation and "
                f"{result.counts['holdout']:,} holdout declarations of `{dataset}`")
        reference_id = self.run_ids["reference"]
        if "reference" not in self._logged:
            with self._logging("reference", f"The reference: a library-default CatBoost on the mapped columns, on "
                               f"{rows}. The engineered model must beat it to be put forward."):
                mlflow.set_tags(tags)
                mlflow.log_params(common_params)
                if "reference_fit_s" in result.timings:
                    mlflow.log_metric("reference_fit_seconds", result.timings["reference_fit_s"])
                _log_inputs(fs, split, dataset)
                _log_candidate(result.reference, result.reference_evaluation, fs, result.drift_reference,
                               result.reference_behaviour, predictions)
        with self._logging("model", f"The engineered risk model (feature groups kept: "
                           f"{', '.join(result.kept_groups) or 'none'}) on {rows}; its reference is the run "
                           f"{reference_id}."):
            mlflow.set_tags({**tags, "aduana.reference_run_id": reference_id})
            mlflow.log_params({**common_params, "feature_groups": ",".join(result.kept_groups) or "none"})
            _log_inputs(fs, split, dataset)
            for key, value in result.reference_evaluation.metrics.items():
                if value is not None:
                    mlflow.log_metric(f"reference_{key}", value)
            mlflow.log_dict({"groups": [asdict(g) for g in result.groups]}, "feature_groups.json")
            if result.blend is not None:  # the members, their weights and rounds, chosen on the validation window
                mlflow.log_dict({k: result.model.params[k] for k in ("blend", "blend_refit", "blend_note")},
                                "blend.json")
                mlflow.log_params({f"blend_weight_{m.name.replace(' ', '_')}": m.weight for m in result.blend.members})
                mlflow.log_metric("blend_validation_pr_auc", result.blend.validation_pr_auc)
            mlflow.log_metrics({f"group_delta_{g.group}": g.delta for g in result.groups if g.delta is not None}
                               | {k.removesuffix("_s") + "_seconds": v for k, v in result.timings.items()}
                               | {"fit_seconds_per_100k_labelled": result.fit_seconds_per_100k_labelled})
            _log_candidate(result.model, result.evaluation, fs, result.drift_reference, result.behaviour, predictions)
            for trial in result.trials:  # each Optuna trial as a nested run under the training run
                with mlflow.start_run(experiment_id=self.experiment_id, run_name=f"trial-{trial.number}", nested=True,
                                      tags={**self.tags, **tags, "aduana.role": "tuning-trial"}):
                    mlflow.log_params(trial.params)
                    mlflow.log_metrics({"validation_pr_auc": trial.value, "fit_seconds": trial.seconds})
        return {"model": self.run_ids["model"], "reference": reference_id}


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


def log_monitoring(client: MlflowClient, report: MonitorReport, artifacts: Path, flow_run_id: str | None) -> str:
    """One run of the `aduana-monitoring` experiment per check: PSI per feature, score drift, outcomes, alerts,
    and their plots (PSI per feature against the alert threshold, the score's distribution then and now)."""
    experiment_id = ensure_experiment(client, "aduana-monitoring", artifacts)
    name = f"monitor-v{report.model_version}-{report.window[1].date()}-{pd.Timestamp.now():%Y%m%dT%H%M%S}"
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
        for measure in ("fraud_rate", "revenue_at_stake"):  # the estimate among all declarations, released included
            found = (report.compliance or {}).get(measure) or {}
            metrics.update({f"compliance.{measure}.{k}": found.get(k) for k in ("estimate", "ci_low", "ci_high")})
        if found := report.audit_findings:  # fraud in the released goods the audit rankings leave out
            metrics.update({f"audit.fraud_rate.{k}": (found["fraud_rate"] or {}).get(k)
                            for k in ("estimate", "ci_low", "ci_high")})
            metrics.update({"audit.random_audited": found["random_audited"], "audit.examined": found["examined"]})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and pd.notna(v)})
        mlflow.log_table(report.features, artifact_file="monitoring/feature_drift.json")
        mlflow.log_dict({"payload": report.payload(), "outcomes": report.outcomes, "score": report.score,
                         "compliance": report.compliance, "audit_findings": report.audit_findings},
                        "monitoring/report.json")
        thresholds = report.thresholds
        for name, fig in (("feature_psi", figures.feature_psi(report.features, thresholds.psi)),
                          ("score_distribution", figures.score_distribution(
                              report.reference_scores, report.current_scores, report.score, thresholds.score_threshold))):
            mlflow.log_figure(fig, f"plots/{name}.png")
            figures.plt.close(fig)
    return run.info.run_id


def log_backtest(client: MlflowClient, result, artifacts: Path, flow_run_id: str | None = None) -> str:  # noqa: ANN001
    """Log a backtest as one run of the `aduana-backtest` experiment; returns the run id.

    `result` is a serving.backtest.BacktestResult, used by its fields only (training does not import serving):
    `params` (the configuration), `summary` (a BacktestSummary: per-policy cumulative and pre/post-drift figures) and `weekly`
    (one row per week and policy). Per-week metrics are logged with step = week of the replay.
    """
    from mlflow.entities import Metric, Param

    experiment_id = ensure_experiment(client, "aduana-backtest", artifacts)
    stamp = pd.Timestamp.now()
    run = client.create_run(experiment_id, run_name=f"backtest-{stamp:%Y%m%d-%H%M%S}",
                            tags={"prefect.flow_run_id": flow_run_id or "", "aduana.source": result.summary.source,
                                  "aduana.role": "backtest"})
    run_id = run.info.run_id
    millis = int(stamp.timestamp() * 1000)

    def metric(key: str, value: object, step: int = 0) -> list[Metric]:
        ok = isinstance(value, int | float) and value == value  # NaN and None are absent, not zero
        return [Metric(key, float(value), millis, step)] if ok else []

    params = [Param(k, str(v)[:500]) for k, v in result.params.items()]
    metrics: list[Metric] = []
    for policy, stats in result.summary.to_dict()["policies"].items():
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
    client.log_dict(run_id, result.summary.to_dict(), "backtest/summary.json")
    for name, fig in (("precision_recall_by_week", figures.backtest_weekly(result.weekly)),
                      ("cumulative_revenue_share", figures.backtest_cumulative(result.weekly))):
        client.log_figure(run_id, fig, f"plots/{name}.png")
        figures.plt.close(fig)
    client.set_terminated(run_id)
    return run_id
