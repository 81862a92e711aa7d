"""The second embedded world end to end, as a user with a foreign export would run it: its own layout and one
mapping file for all of its files, nothing written for it. Ingest keeps every valid row, training promotes a
champion; the arriving declarations (the test rows without their label columns) are ingested unlabelled through
the same mapping, and `aduana score` and the API started with that mapping (fed the arrivals' own rows) agree on
every row; the controls' outcomes (the test file, read as outcomes) then label the arrivals."""
from __future__ import annotations

import csv

import pytest
from fastapi.testclient import TestClient

from features.intake.mapping import load_mapping
from features.simulator import simulate_islas, write_islas
from features.simulator.islas import LABEL_COLUMNS
from flows.ingest import customs_ingest
from flows.orchestration.runtime import Runtime
from flows.retrain import customs_retrain
from flows.score import customs_score
from flows.settings import Settings
from serving.api import create_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def islas(tmp_path_factory):
    world = simulate_islas(4_000, seed=5)
    return world, write_islas(world, tmp_path_factory.mktemp("islas"))


def test_a_foreign_export_ingests_trains_promotes_and_scores_alike_in_batch_and_api(prefect_api, home, islas,
                                                                                    monkeypatch, tmp_path):
    world, paths = islas
    monkeypatch.setenv("ADUANA_TRAIN_ITERATIONS", "80")
    [summary] = customs_ingest([str(paths["train"])], mapping=str(paths["mapping"]))
    injected = world.bad_rows[world.bad_rows["file"] == paths["train"].name]
    assert summary["quarantined"] == len(injected) and summary["stored"] == summary["read"] - len(injected)
    assert summary["reasons"] == injected["reason"].value_counts().to_dict()
    assert any("tax_rate: percent" in c for c in summary["conversions"])

    trained = customs_retrain(dataset="islas")
    assert trained["promoted"], trained["reasons"]
    assert trained["reference_metrics"]["pr_auc"] is not None

    # The arrivals, in the export's layout without its label columns, through the same mapping
    bad = world.bad_rows[(world.bad_rows["file"] == paths["test"].name) & ~world.bad_rows["column"].isin(LABEL_COLUMNS)]
    [arrived] = customs_ingest([str(paths["arrivals"])], mapping=str(paths["mapping"]))
    assert arrived["reconciles"] and (arrived["stored"], arrived["quarantined"]) == (len(world.test) - len(bad), len(bad))
    assert len(arrived["notes"]) == 1 and "'Fraud'" in arrived["notes"][0] and "unlabelled" in arrived["notes"][0]
    rt = Runtime(Settings(reload_seconds=0))
    warehouse = rt.warehouse
    arrival_ids = world.test["Declaration ID"].tolist()
    labels = warehouse.read("SELECT inspected, fraud, critical FROM declarations WHERE declaration_id IN "
                            "(SELECT unnest(?))", [arrival_ids])
    assert len(labels) == arrived["stored"] and labels.isna().all().all()  # unlabelled, never "controlled, no fraud"

    out = tmp_path / "scores.csv"
    scored = customs_score(str(paths["arrivals"]), str(out), str(paths["mapping"]))
    assert scored["read"] == len(world.test) and scored["invalid"] == len(bad)
    with out.open(newline="") as fh:
        batch = {r["declaration_id"]: r for r in csv.DictReader(fh)}
    with paths["arrivals"].open(newline="") as fh:
        rows = list(csv.DictReader(fh))  # the file's own rows, every value as the text the file holds
    assert not set(LABEL_COLUMNS) & set(rows[0])
    bad_ids = set(bad["row_number"] - 1)
    valid = [r for i, r in enumerate(rows) if i not in bad_ids]
    assert all(batch[rows[i]["Declaration ID"]]["selected_by"] == "validation" for i in bad_ids)

    scorer = rt.scorer()
    # This small world's batch is under the default threshold_min_rows: the lane policy lets it set the thresholds.
    scorer.policy = scorer.policy.model_copy(update={"threshold_min_rows": scored["read"] - len(bad)})
    with TestClient(create_app(scorer, max_items=100, api_key="", mapping=load_mapping(paths["mapping"]))) as client:
        client.app.state.service.refresh()  # the champion, and thresholds from the batch just scored
        assert client.app.state.service.thresholds_source["from"] == "scoring batch"
        answers = []
        for start in range(0, len(valid), 100):
            response = client.post("/v1/score", json=valid[start:start + 100])
            assert response.status_code == 200, response.text[:500]
            answers += response.json()
        assert len(answers) == len(valid)
        for answer in answers:
            expected = batch[answer["declaration_id"]]
            assert answer["risk_score"] == pytest.approx(float(expected["risk_score"]), rel=1e-9)
            assert answer["lane"] == expected["lane"], answer
        one = client.post("/v1/score", json=valid[0])
        assert one.status_code == 200 and one.json()["lane"] == batch[valid[0]["Declaration ID"]]["lane"]
        for i in list(bad_ids)[:3]:
            assert client.post("/v1/score", json=rows[i]).status_code == 422

    # (the app has stopped: its decision-log copier no longer writes the warehouse from another thread)
    # Later, the controls' outcomes: the test file (the export's layout, labels included) read as outcomes
    [outcomes] = customs_ingest([str(paths["test"])], kind="outcomes", mapping=str(paths["mapping"]))
    assert outcomes["kind"] == "outcomes" and outcomes["reconciles"] and outcomes["notes"] == []
    assert outcomes["updated"] == outcomes["stored"] > 0 and outcomes["unknown_columns"] == []
    unlabelled = warehouse.read("SELECT count(*) AS n FROM declarations WHERE fraud IS NULL AND declaration_id IN "
                                "(SELECT unnest(?))", [arrival_ids])["n"].iloc[0]
    assert unlabelled == arrived["stored"] - outcomes["updated"]  # only an outcome that failed its checks left one
