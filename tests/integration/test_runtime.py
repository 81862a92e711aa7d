"""flows/orchestration/runtime.py: progress lines appear once: on a worker (Prefect's console handler on) as the run
log's line only; under the CLI, which silences that handler (`configure`), as the printed line. Without --debug,
`aduana train` and `aduana score` print Aduana's own lines only: none of the libraries' notes, warnings or progress
bars, and each of the gate's reasons once."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest
from prefect import flow

from features.simulator import simulate
from flows.orchestration.runtime import progress
from tests.conftest import write_csv

pytestmark = pytest.mark.integration


@flow(name="test-progress")
def _say(message: str) -> None:
    progress(message)


def test_a_progress_line_on_a_worker_is_shown_once(prefect_api, capfd, caplog):
    """The tests' process logs to the console as a worker does (the CLI's own path is covered by its tests): the line
    is one run-log record and is not printed besides. (Prefect's console handler writes to the stderr it found when
    logging was set up, which is this test's only when this test set it up: hence at most once there.)"""
    message = "progress-line-once"
    with caplog.at_level("INFO"):
        _say(message)
    out, err = capfd.readouterr()
    assert [r.getMessage() for r in caplog.records].count(message) == 1
    assert message not in out and err.count(message) <= 1, out + err


pytestmark = pytest.mark.integration

# What MLflow, tqdm and Python's warnings print when nobody quiets them (casefolded substrings).
NOISE = {
    "creating initial mlflow database tables": "MLflow's store migration note",
    "alembic": "the store migration's log",
    "cloudpickle": "MLflow's CloudPickle warning",
    "validating input example": "MLflow's input-example note",
    "downloading artifacts": "MLflow's artifact progress bars",
    "it/s]": "a tqdm progress bar",
    "warning:": "a library's warning",
}


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def _noise(output: str) -> list[str]:
    return [f"{what}: {line!r}" for line in output.splitlines() for needle, what in NOISE.items()
            if needle in line.casefold()]


def test_train_and_score_print_no_library_noise(prefect_api, home, tmp_path):
    from features.intake.prepared import prepare_batch
    from features.warehouse import Warehouse
    from flows.settings import Settings

    world = simulate(3_000, seed=5)
    warehouse = Warehouse(Settings().warehouse_path)  # a fresh home: train creates its MLflow store
    for kind in ("traders", "manifests", "declarations"):
        warehouse.store(prepare_batch(write_csv(tmp_path / f"{kind}.csv", getattr(world, kind))))
    to_score = write_csv(tmp_path / "to-score.csv", world.declarations.tail(200))
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "ADUANA_HOME": str(home)}

    train = _cli("train", "--iterations", "20", env=env)
    assert train.returncode == 0, train.stderr
    score = _cli("score", str(to_score), "--out", str(tmp_path / "scores.csv"), env=env)
    assert score.returncode == 0, score.stderr

    for result in (train, score):
        assert _noise(result.stdout + result.stderr) == []
    reasons = [line for line in train.stdout.splitlines() if line.startswith("  - ")]
    assert reasons, train.stdout
    said = Counter((train.stdout + train.stderr).splitlines())
    assert [r for r in reasons if said[r] > 1] == []
