"""customs-retrain on a warehouse holding more declarations than ADUANA_TRAINING_MEMORY_ROWS: it trains from the
warehouse's snapshot through DuckDB (training/snapshot_training.py) and fits the model the in-memory path fits, and
leaves no snapshot behind."""
from __future__ import annotations

import pytest

from flows.retrain import customs_retrain
from flows.settings import Settings

pytestmark = pytest.mark.integration


def test_a_retrain_beyond_train_memory_rows_reads_the_snapshot_and_fits_the_same_model(prefect_api, loaded_home,
                                                                                       monkeypatch):
    monkeypatch.setenv("ADUANA_TRAIN_ITERATIONS", "40")
    in_memory = customs_retrain(dataset="test")
    monkeypatch.setenv("ADUANA_TRAINING_MEMORY_ROWS", "5000")  # the small world's 20,000 declarations are beyond it
    monkeypatch.setenv("ADUANA_GATE_MARGIN", "-1")  # the same model again: promoted all the same
    from_snapshot = customs_retrain(dataset="test")
    assert from_snapshot["counts"] == in_memory["counts"] and from_snapshot["counts"]["rows"] == 20_000
    assert from_snapshot["metrics"] == in_memory["metrics"]
    assert from_snapshot["reference_metrics"] == in_memory["reference_metrics"]
    assert from_snapshot["promoted"] and from_snapshot["version"] == "2"
    work = Settings().work_dir
    assert not (work.exists() and any(work.glob("train-*")))  # the snapshot is removed once read
