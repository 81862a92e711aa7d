"""customs-retrain on a warehouse holding more declarations than ADUANA_TRAINING_MEMORY_ROWS: it trains from the
warehouse's snapshot through DuckDB (training/snapshot_training.py) and fits the model the in-memory path fits, and
leaves no snapshot behind; on a Dask LocalCluster (prefect-dask), with its features built in partitions by the
workers (training/feature_partitions.py), it fits the same model again."""
from __future__ import annotations

import pytest

from flows.retrain import customs_retrain, with_dask
from flows.settings import Settings

pytestmark = pytest.mark.integration


@pytest.mark.filterwarnings("ignore:Sending large graph")
def test_a_retrain_from_the_snapshot_in_this_process_or_on_dask_fits_the_same_model(prefect_api, loaded_home,
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

    monkeypatch.delenv("ADUANA_TRAINING_MEMORY_ROWS")  # on the cluster, the snapshot whatever the size
    monkeypatch.setenv("ADUANA_SCORE_PARTITION_ROWS", "1500")  # the featured rows in several partitions
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # the workers report their task runs to the same API
    on_dask = with_dask("local", 2)(dataset="test", cluster=True)
    assert on_dask["counts"] == in_memory["counts"] and on_dask["metrics"] == in_memory["metrics"]
    assert on_dask["reference_metrics"] == in_memory["reference_metrics"] and on_dask["version"] == "3"
    assert not any(work.glob("*"))  # the snapshot and the feature partitions are removed
