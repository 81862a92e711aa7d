"""The MLflow UI in a real browser: `mlflow server` on a free loopback port, started and stopped by the test,
and headless Chromium (tests/browser.py) on the address the CLI gives for an experiment (training.runs)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.browser import _run, chromium, distinct_colours, screenshot
from training import runs

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def mlflow_server(db: Path, artifacts: Path, timeout: float = 90) -> Iterator[str]:
    """`mlflow server` on the store as the CLI's printout starts it; stopped (its whole process group) however the
    test ends."""
    port = _free_port()
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
