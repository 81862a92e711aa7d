"""The decision log (features/warehouse/decisions.py): append-only, idempotent on retries (a copy of the operational
log's answers included), and read back by the latest scoring batch (real-time answers aside) with its lists intact. Other decisions tests, through the scorer or
the API, are in tests/integration/test_scorer.py, test_api.py and test_ui.py."""
from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from features.warehouse import Warehouse
from features.warehouse.oplog import PG_COLUMNS, Journal, journal_folder

pytestmark = pytest.mark.integration
AT = datetime(2026, 1, 1)


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


def _decisions(n: int, model_version: str = "3", policy_hash: str = "p1") -> pd.DataFrame:
    return pd.DataFrame({
        "position": range(n), "declaration_id": [f"D{i}" for i in range(n)], "risk_score": 0.1, "expected_revenue": 5.0,
        "lane": "green", "selected_by": "model", "reasons": "a; b", "model_version": model_version,
        "policy_hash": policy_hash, "reason_list": [["a", "b"]] * n,
        "contributions": [[{"feature": "f", "family": "price", "value": "1", "contribution": 0.5}]] * n,
        "contribution_base": -2.0})


def _answers(n: int, batch_id: str = "rt-1") -> pd.DataFrame:
    return _decisions(n).assign(batch_id=batch_id, request_id="req-1", decided_at=AT + timedelta(hours=1),
                                thresholds_batch_id="b1", source="api")


def _copy(warehouse: Warehouse, answers: pd.DataFrame) -> int:
    """Real-time answers as the API leaves them: in a journal beside the warehouse, then copied into it."""
    journal = Journal(journal_folder(warehouse.path))
    journal.append(answers.to_dict("records"))
    return warehouse.decisions.sync(journal)


def test_a_retried_scoring_batch_appends_nothing(warehouse):
    assert warehouse.decisions.append_batch(_decisions(4), pd.DataFrame(), "b1", "test", AT) == 0
    warehouse.decisions.append_batch(_decisions(4), pd.DataFrame(), "b1", "test", AT)
    assert warehouse.counts()["decisions"] == 4


def test_answers_journalled_twice_are_copied_once(warehouse):
    assert _copy(warehouse, _answers(3)) == 3
    assert _copy(warehouse, _answers(3)) == 0  # the same batch ids and positions: a retried commit
    assert warehouse.counts()["decisions"] == 3


def test_the_latest_batch_is_of_the_model_and_policy_with_enough_rows_real_time_answers_aside(warehouse):
    decisions = warehouse.decisions
    decisions.append_batch(_decisions(10), pd.DataFrame(), "full", "test", AT)
    decisions.append_batch(_decisions(2), pd.DataFrame(), "small", "test", AT + timedelta(minutes=1))
    decisions.append_batch(_decisions(10, policy_hash="p2"), pd.DataFrame(), "other-policy", "test",
                           AT + timedelta(minutes=2))
    _copy(warehouse, _answers(20))
    assert decisions.latest_batch_id("3", "p1", min_rows=5) == "full"
    assert decisions.latest_batch_id("3", "p1") == "small"
    assert decisions.latest_batch_id("3", None, min_rows=5) == "other-policy"
    assert decisions.latest_batch_id("4", "p1") is None
    assert set(decisions.latest_batch("3", "p1", min_rows=5)["batch_id"]) == {"full"}
    assert decisions.latest_scoring_batch()["batch_id"].unique().tolist() == ["other-policy"]


def test_a_declarations_latest_decision_keeps_its_reasons_and_contributions_as_lists(warehouse):
    warehouse.decisions.append_batch(_decisions(2), pd.DataFrame(), "b1", "test", AT)
    _copy(warehouse, _answers(1))
    record, count = warehouse.decisions.latest_for("D0")
    assert count == 2 and record["batch_id"] == "rt-1"
    assert record["reason_list"] == ["a", "b"]
    assert record["contributions"] == [{"feature": "f", "family": "price", "value": "1", "contribution": 0.5}]
    assert warehouse.decisions.latest_for("unknown") == (None, 0)


def test_an_empty_home_has_no_decisions_to_read(warehouse):
    assert warehouse.decisions.latest_batch("3").empty and warehouse.decisions.latest_scoring_batch().empty
    assert warehouse.decisions.latest_batch_id("3") is None and warehouse.decisions.latest_for("D0") == (None, 0)


def test_every_column_a_real_time_answer_is_logged_with_is_a_column_of_the_table(warehouse):
    warehouse.decisions.append_batch(_decisions(1), pd.DataFrame(), "b1", "test", AT)
    assert set(PG_COLUMNS) <= set(warehouse.read("SELECT * FROM decisions").columns)


def test_a_periods_reads_take_each_declaration_filed_in_it_with_its_latest_decision(warehouse):
    # Given six declarations, three filed in January and three in February, two of each controlled
    dates = pd.to_datetime(["2026-01-05", "2026-01-20", "2026-01-31", "2026-02-01", "2026-02-10", "2026-02-28"])
    warehouse.append("declarations", pd.DataFrame({
        "declaration_id": [f"D{i}" for i in range(6)], "declaration_date": dates.date, "importer_id": "I1",
        "duty_paid": 10.0, "inspected": [1, 1, 0, 1, 1, 0], "fraud": [1.0, 0.0, None, 0.0, 1.0, None],
        "revenue": [50.0, 0.0, None, 0.0, 20.0, None]}))
    # scored green in a batch, then D0 and D4 red in a second batch and D1 yellow by a later real-time answer
    warehouse.decisions.append_batch(_decisions(6), pd.DataFrame(), "first", "test", AT)
    again = _decisions(5).iloc[[0, 4]].assign(lane="red", risk_score=0.9)
    warehouse.decisions.append_batch(again, pd.DataFrame(), "second", "test", AT + timedelta(minutes=1))
    _copy(warehouse, _answers(2).iloc[[1]].assign(lane="yellow", position=0))
    january = pd.Timestamp("2026-01-01"), pd.Timestamp("2026-01-31")
    # When January's released declarations and controlled outcomes are read
    released = warehouse.decisions.released(*january)
    outcomes = warehouse.decisions.controlled_outcomes(*january)
    # Then each January declaration counts once, as last decided; February's never appear
    assert released[["declaration_id", "lane"]].values.tolist() == [["D1", "yellow"], ["D2", "green"]]
    assert released["importer_id"].eq("I1").all() and released["duty_paid"].eq(10.0).all()
    assert outcomes[["declaration_id", "lane", "fraud", "risk_score"]].values.tolist() == [
        ["D0", "red", 1.0, 0.9], ["D1", "yellow", 0.0, 0.1]]
    february = warehouse.decisions.controlled_outcomes(pd.Timestamp("2026-02-01"), pd.Timestamp("2026-02-28"))
    assert february[["declaration_id", "lane"]].values.tolist() == [["D3", "green"], ["D4", "red"]]
    # The released declarations carry their outcomes (an audit's findings); the red-lane design only the red lane's
    assert released["fraud"].tolist()[:1] == [0.0] and released["fraud"].isna().tolist() == [False, True]
    design = warehouse.decisions.selection_design(*january)
    assert design[["declaration_id", "lane"]].values.tolist() == [["D0", "red"], ["D1", "yellow"], ["D2", "green"]]
    assert design["fraud"].tolist()[0] == 1.0 and design["fraud"].isna().tolist() == [False, True, True]
    assert design["revenue"].tolist()[0] == 50.0 and "inspected" not in design
