"""The second embedded world end to end, as a user with a foreign export would run it: its own layout and mapping
file, nothing written for it. Ingest keeps every valid row, training promotes a champion, and `aduana score` and
the API started with the world's mapping (fed the file's own rows) agree on every row of the arriving
declarations (ingested first, as arrivals are, so both see the same warehouse)."""
from __future__ import annotations

import csv

import pytest
from fastapi.testclient import TestClient

from features.intake.mapping import load_mapping
from features.simulator import simulate_islas, write_islas
from flows.ingest import customs_ingest
from flows.retrain import customs_retrain
from flows.runtime import Runtime
from flows.score import customs_score
from flows.settings import get_settings
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

    customs_ingest([str(paths["test"])], mapping=str(paths["mapping"]))  # arriving declarations, as the demo does
    out = tmp_path / "scores.csv"
    scored = customs_score(str(paths["test"]), str(out), str(paths["mapping"]))
    assert scored["read"] == len(world.test)
    with out.open(newline="") as fh:
        batch = {r["declaration_id"]: r for r in csv.DictReader(fh)}
    with paths["test"].open(newline="") as fh:
        rows = list(csv.DictReader(fh))  # the file's own rows, every value as the text the file holds
    bad_ids = set(world.bad_rows.loc[world.bad_rows["file"] == paths["test"].name, "row_number"] - 1)
    valid = [r for i, r in enumerate(rows) if i not in bad_ids]
    assert all(batch[rows[i]["Declaration ID"]]["selected_by"] == "validation" for i in bad_ids)

    rt = Runtime(get_settings(reload_seconds=0))
    scorer = rt.scorer()
    client = TestClient(create_app(scorer, max_items=100, api_key="", mapping=load_mapping(paths["mapping"])))
    client.app.state.service.refresh()  # the champion, and thresholds from the batch just scored
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
