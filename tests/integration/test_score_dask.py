"""`aduana score` on a Dask cluster through prefect-dask: the same output file, byte for byte, and the same logged
decisions as scoring in this process, whole or in partitions."""
from __future__ import annotations

import pytest

from flows import score as score_flow
from flows.settings import Settings
from serving.model_source import FixedSource
from serving.scorer import Scorer
from tests.conftest import write_csv

pytestmark = pytest.mark.integration


@pytest.fixture
def champion_home(stored_scorer, monkeypatch):
    """A home holding 17,000 declarations whose champion is the session's model (no registry needed: the flow's
    scorer is given; the workers read the champion from the run folder)."""
    model, lanes = stored_scorer.model, stored_scorer.policy

    def champion(rt, policy=None) -> Scorer:  # the flow goes to the workers with this: nothing that holds a lock
        scorer = Scorer(rt.warehouse, lanes, source=FixedSource({"7": model}, "7"), reload_seconds=0)
        scorer.refresh_model(force=True)
        return scorer
    monkeypatch.setattr(score_flow, "make_scorer", champion)
    return stored_scorer.warehouse


# The flow is sent to the workers with its globals, here the fixture's scorer and its model (a user's flow names
# module functions only): Dask says the graph is large.
@pytest.mark.filterwarnings("ignore:Sending large graph")
def test_the_dask_path_writes_the_bytes_of_the_single_process_path(prefect_api, champion_home, world, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # the workers report their task runs to the same API
    path = write_csv(tmp_path / "batch.csv", world.declarations.iloc[16_500:20_000])
    whole = score_flow.customs_score(str(path), str(tmp_path / "whole.csv"))
    parts = score_flow.customs_score(str(path), str(tmp_path / "parts.csv"), partition_rows=800)
    dask = score_flow.with_dask("local", 2)(str(path), str(tmp_path / "dask.csv"), partition_rows=800, cluster=True)
    expected = (tmp_path / "whole.csv").read_bytes()
    assert (tmp_path / "parts.csv").read_bytes() == expected
    assert (tmp_path / "dask.csv").read_bytes() == expected
    assert whole["lanes"] == parts["lanes"] == dask["lanes"] and dask["lanes"]["red"] == 175
    logged = champion_home.read(  # the lists as text: the partitions hand them to the log in Arrow, whole as Python
        "SELECT batch_id, risk_score, lane, selected_by, reasons, CAST(reason_list AS VARCHAR) AS reason_list, "
        "CAST(contributions AS VARCHAR) AS contributions FROM decisions ORDER BY batch_id, position")
    by_batch = {b: rows.drop(columns="batch_id").reset_index(drop=True) for b, rows in logged.groupby("batch_id")}
    assert by_batch[whole["batch_id"]]["reason_list"].str.len().gt(2).sum() > 400  # reasons listed, not empty lists
    for batch in (parts, dask):
        assert by_batch[batch["batch_id"]].equals(by_batch[whole["batch_id"]])
    assert not list((Settings().work_dir).glob("*"))  # the run folder is removed


def test_a_small_file_against_a_history_beyond_training_memory_rows_goes_through_the_snapshot(
        prefect_api, champion_home, world, tmp_path, monkeypatch):
    """A file of one partition is scored whole, the history held in pandas, while the warehouse holds at most
    training_memory_rows declarations; beyond, in partitions, the history read through its snapshot in DuckDB (as a
    retrain reads it): the same output file."""
    taken = []
    real = score_flow.score_source
    monkeypatch.setattr(score_flow, "score_source",
                        lambda *a, **k: taken.append(k["snapshot"]) or real(*a, **k))
    path = write_csv(tmp_path / "batch.csv", world.declarations.iloc[16_500:17_500])
    score_flow.customs_score(str(path), str(tmp_path / "whole.csv"))
    monkeypatch.setenv("ADUANA_TRAINING_MEMORY_ROWS", "10000")  # the home holds 17,000
    score_flow.customs_score(str(path), str(tmp_path / "snapshot.csv"))
    assert taken == [False, True]
    assert (tmp_path / "snapshot.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
