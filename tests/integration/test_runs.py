"""training/runs.py: MLflow as a data scientist reads it: training runs that span the training they record, with
system metrics; a reference run as complete as the model's; monitoring runs with drift plots; a failed training's
runs FAILED. And the MLflow UI in a real browser: `mlflow server` on a free loopback port, started and stopped by
the test, and headless Chromium (tests/browser.py) on the address the CLI gives for an experiment."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from flows.monitor import customs_monitor
from flows.orchestration.runtime import current
from flows.retrain import customs_retrain
from flows.settings import Settings
from tests.browser import _run, chromium, distinct_colours, screenshot
from tests.conftest import free_port
from training import figures, pipeline, runs, store

pytestmark = pytest.mark.integration
MS = 0.002  # run times are whole milliseconds (truncated); fit times are perf_counter seconds


def _client() -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{Settings().mlflow_db}")


def _seconds(run) -> float:  # noqa: ANN001
    return (run.info.end_time - run.info.start_time) / 1000


def _sampling_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor" and t.is_alive()]


def test_training_runs_span_their_fits_with_system_metrics_and_monitoring_has_plots(prefect_api, loaded_home,
                                                                                    monkeypatch, world):
    monkeypatch.setenv("ADUANA_TRAIN_ITERATIONS", "60")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")  # a short test training: sample often
    summary = customs_retrain(dataset="test")
    client = _client()
    model, reference = client.get_run(summary["model_run_id"]), client.get_run(summary["reference_run_id"])
    fit = model.data.metrics  # the pipeline's own measurements of each fit
    assert model.info.status == reference.info.status == "FINISHED"

    # Given the pipeline's fit times, each run spans its own work: the model's from before its fit until after
    # the reference's; the reference's opens only once the model's fit is done, and spans its own fit.
    assert _seconds(model) >= fit["model_fit_seconds"] + fit["reference_fit_seconds"] - MS
    assert (reference.info.start_time - model.info.start_time) / 1000 >= fit["model_fit_seconds"] - MS
    assert _seconds(reference) >= fit["reference_fit_seconds"] - MS
    assert reference.data.metrics["reference_fit_seconds"] == fit["reference_fit_seconds"]

    # System metrics on both runs, sampled while the model trained (before the reference run opened, so before
    # any logging), and no sampling thread left behind.
    for run in (model, reference):
        assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(run.data.metrics)
    cpu = client.get_metric_history(model.info.run_id, "system/cpu_utilization_percentage")
    assert len(cpu) >= 2 and min(m.timestamp for m in cpu) < reference.info.start_time
    assert not _sampling_threads()

    # The reference run is as complete as the model's: plots, its own logged model, the split's three parts.
    plots = {a.path for a in client.list_artifacts(model.info.run_id, "plots")}
    assert "plots/pr_curve.png" in plots
    assert {a.path for a in client.list_artifacts(reference.info.run_id, "plots")} == plots
    for run in (model, reference):
        found = client.search_logged_models([run.info.experiment_id],
                                            filter_string=f"source_run_id = '{run.info.run_id}'")
        logged = [m for m in found if m.name == "model"]
        # the training run also holds the anomaly model (customs-anomaly), the reference run nothing else
        assert sorted(m.name for m in found) == (["anomaly_model", "model"] if run is model else ["model"])
        assert run.data.tags[store.MODEL_URI_TAG] == f"models:/{logged[0].model_id}"
        contexts = [t.value for i in run.inputs.dataset_inputs for t in i.tags if t.key == "mlflow.data.context"]
        assert sorted(contexts) == ["holdout", "training", "validation"]
    experiment = client.get_experiment(model.info.experiment_id)  # the UI shows its runs, with the headline metrics
    assert experiment.tags[runs.KIND_TAG] == runs.MODEL_DEVELOPMENT and experiment.tags[runs.VIEW_TAG] == runs.VIEW
    versions = client.search_model_versions("name = 'customs-risk'")
    assert [v.run_id for v in versions] == [summary["run_id"]]  # only the candidate put forward is registered

    # A random audit whose findings are in: the newest month's released goods of one drawn importer
    declarations = world.declarations
    month = str(pd.Timestamp(declarations["declaration_date"].max()).to_period("M"))
    in_month = declarations[declarations["declaration_date"].dt.to_period("M").astype(str) == month]
    importer = in_month.loc[in_month["inspected"] == 1, "importer_id"].iloc[0]
    mine = in_month[in_month["importer_id"] == importer]
    warehouse = current().warehouse
    warehouse.decisions.append_batch(pd.DataFrame({
        "declaration_id": mine["declaration_id"].to_numpy(), "position": np.arange(len(mine)), "risk_score": 0.1,
        "expected_revenue": 10.0, "lane": "green", "selected_by": "", "reasons": "", "model_version": "1",
        "policy_hash": "test"}), pd.DataFrame(), "score-test", "test", datetime(2025, 1, 1))
    warehouse.audits.record(pd.DataFrame({"rank": [1], "importer_id": [importer], "selected_by": ["random"],
                                          "inclusion_probability": [0.1]}), month, 1)

    monitored = customs_monitor(window_days=30)
    monitoring = client.get_run(monitored["mlflow_run_id"])
    examined = int((mine["inspected"] == 1).sum())
    assert monitored["released_compliance"]["examined"] == examined  # the findings' estimate, tracked in MLflow
    assert monitoring.data.metrics["audit.examined"] == examined
    assert monitoring.data.metrics["audit.fraud_rate.estimate"] == pytest.approx(
        mine.loc[mine["inspected"] == 1, "fraud"].mean())
    artifacts = {a.path: a.file_size for a in client.list_artifacts(monitoring.info.run_id, "plots")}
    assert set(artifacts) == {"plots/feature_psi.png", "plots/score_distribution.png"}
    assert all(size > 10_000 for size in artifacts.values())  # drawn figures, not empty canvases


def _crash_reference_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("worker lost during the reference fit")

    monkeypatch.setattr(pipeline, "fit_reference", crash)


def _crash_model_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("artifact store full")

    monkeypatch.setattr(runs, "log_model", crash)


@pytest.mark.parametrize("break_it", [_crash_reference_fit, _crash_model_logging], ids=["in-training", "in-logging"])
def test_a_training_that_fails_leaves_its_runs_failed_and_nothing_registered(prefect_api, loaded_home, monkeypatch,
                                                                            break_it):
    monkeypatch.setenv("ADUANA_TRAIN_ITERATIONS", "30")
    break_it(monkeypatch)
    state = customs_retrain(dataset="test", return_state=True)
    assert state.is_failed()
    client = _client()
    found = client.search_runs([client.get_experiment_by_name("aduana-test").experiment_id])
    assert sorted((r.data.tags["aduana.role"], r.info.status) for r in found) == [
        ("model", "FAILED"), ("reference", "FAILED")]
    assert all(r.info.end_time for r in found)
    assert client.search_model_versions("name = 'customs-risk'") == []
    assert not _sampling_threads()


def test_an_experiment_made_before_the_tags_gets_them_when_a_run_is_logged(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    old = client.create_experiment("aduana-old", artifact_location=(tmp_path / "old").as_uri())
    assert runs.ensure_experiment(client, "aduana-old", tmp_path) == old
    new = runs.ensure_experiment(client, "aduana-new", tmp_path)
    for experiment_id in (old, new):
        tags = client.get_experiment(experiment_id).tags
        assert tags[runs.KIND_TAG] == "custom_model_development" and tags[runs.VIEW_TAG] == runs.VIEW
    assert runs.experiment_path(new) == (f"#/experiments/{new}/runs?workflowType=machine_learning"
                                         f"&viewStateShareKey={runs.VIEW_KEY}")


def test_the_psi_plot_shows_what_can_alert_first_and_what_is_only_reported_apart():
    table = pd.DataFrame({"feature": ["importer_days_known", "log_declared_value", "hs_chapter", "company_age_days"],
                          "psi": [8.3, 0.6, 0.05, 2.0], "alerting": [False, True, True, False]})
    fig = figures.feature_psi(table, threshold=0.25)
    try:
        alerting, reported = fig.axes[0], fig.axes[1]
        assert [line.get_xdata()[0] for line in alerting.lines] == [0.25]
        assert [t.get_text() for t in alerting.get_yticklabels()] == ["hs_chapter", "log_declared_value"]  # worst on top
        assert alerting.get_title() == "Features that can alert: 2"
        assert [t.get_text() for t in reported.get_yticklabels()] == ["company_age_days", "importer_days_known"]
        assert reported.get_title().startswith("Reported, not alerted on") and not reported.lines
    finally:
        figures.plt.close(fig)


pytestmark = pytest.mark.integration



@contextmanager
def mlflow_server(db: Path, artifacts: Path, timeout: float = 90) -> Iterator[str]:
    """`mlflow server` on the store as the CLI's printout starts it; stopped (its whole process group) however the
    test ends."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}",
               "--default-artifact-root", artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start on port {port}")
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_an_experiment_opens_on_its_runs_table_with_the_headline_metrics(tmp_path):
    chromium()  # no browser: skip (fail under CI) before starting anything
    db, artifacts = tmp_path / "mlflow.db", tmp_path / "artifacts"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment_id = runs.ensure_experiment(client, "aduana-browser", artifacts)
    run = client.create_run(experiment_id, run_name="catboost-risk-browser")
    for key, value in zip(runs.HEADLINE_METRICS, (0.4321, 0.61, 0.22, 0.35, 0.7), strict=True):
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    with mlflow_server(db, artifacts) as url:
        page = f"{url}/{runs.experiment_path(experiment_id)}"
        # A wide window: the grid draws only the columns in view.
        dom = _run(page, "--dump-dom", "--window-size=2400,1000", budget_ms=20_000).stdout
        assert "catboost-risk-browser" in dom and "Detect Issues" not in dom  # the runs table, not GenAI's overview
        assert all(f'col-id="metrics.`{m}`"' in dom for m in runs.HEADLINE_METRICS[:3]), dom[-3000:]
        assert "0.4321" in dom
        shot = screenshot(page, "mlflow-experiment", size="2000,900", budget_ms=20_000)
        assert distinct_colours(shot) > 40
