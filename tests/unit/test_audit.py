"""Post-clearance audit ranking (serving/post_clearance.py), entity ratings (serving/entity_ratings.py) and audit
periods (serving/periods.py) on hand-made frames."""
from __future__ import annotations

import pandas as pd
import pytest

from serving.entity_ratings import entity_ratings, rate_entities
from serving.periods import latest_complete_month, parse_period
from serving.post_clearance import audit_candidates

RELEASED = pd.DataFrame({
    "declaration_id": ["a1", "a2", "b1", "c1", "c2", "c3"],
    "importer_id": ["A", "A", "B", "C", "C", "C"],
    "lane": ["green", "yellow", "green", "green", "green", "yellow"],
    "risk_score": [0.5, 0.4, 0.9, 0.1, 0.1, 0.2],
    "expected_revenue": [1000.0, 500.0, 2000.0, 100.0, 100.0, 300.0],
    "duty_paid": [10.0] * 6,
    "reasons": ["r"] * 6,
})
HISTORY = pd.DataFrame({"importer_id": ["A"] * 10 + ["B"] * 10 + ["C"] * 10,
                        "inspected": [1] * 30, "fraud": [1] * 5 + [0] * 5 + [0] * 10 + [1] * 10})
TRADERS = pd.DataFrame({"importer_id": ["A", "B", "C"], "aeo_certified": [0, 1, 0], "prior_violations": [0, 0, 4],
                        "credit_rating": ["B", "AA", "C"]})


def test_enterprises_are_ranked_by_expected_unrecovered_revenue_adjusted_by_history():
    selected, evidence = audit_candidates(RELEASED, TRADERS, HISTORY, capacity=3)
    assert selected["expected_unrecovered"].tolist() == [1500.0, 2000.0, 500.0]
    # A: 1500 × (1 + its hit rate) beats B: 2000 × (1 + a low hit rate) × 0.7 for AEO status.
    assert selected["importer_id"].tolist() == ["A", "B", "C"]
    assert "AEO-certified" in selected.loc[1, "reasons"] and "4 prior violations" in selected.loc[2, "reasons"]
    assert "smoothed hit rate 50% over 10 controls" in selected.loc[0, "reasons"]
    assert evidence.groupby("importer_id").size().to_dict() == {"A": 2, "B": 1, "C": 3}
    assert evidence.loc[evidence["importer_id"] == "C", "declaration_id"].iloc[0] == "c3"


def test_the_audit_list_respects_capacity():
    selected, _ = audit_candidates(RELEASED, TRADERS, HISTORY, capacity=1)
    assert len(selected) == 1 and selected["rank"].tolist() == [1]


def test_without_revenue_the_duty_at_risk_stands_in():
    selected, _ = audit_candidates(RELEASED.assign(expected_revenue=None), TRADERS, HISTORY, capacity=3)
    assert selected.set_index("importer_id").loc["B", "expected_unrecovered"] == pytest.approx(9.0)


def test_ratings_band_entities_with_an_interval():
    table = entity_ratings(HISTORY, "importer_id")
    assert table.index.tolist() == ["C", "A", "B"]
    assert table.loc["C", "band"] == "high" and table.loc["B", "band"] == "low"
    assert (table["interval_low"] < table["hit_rate"]).all() and (table["hit_rate"] < table["interval_high"]).all()
    assert "10 frauds in 10 controls" in table.loc["C", "why"]
    record = table.reset_index().to_dict("records")[0]  # as `ratings --json` prints it: counts are integers
    assert type(record["controls"]) is int and type(record["hits"]) is int and type(record["volume"]) is int


@pytest.mark.parametrize(("period", "start", "end"), [
    ("2024-11", "2024-11-01", "2024-11-30"), ("2024", "2024-01-01", "2024-12-31"),
    ("2024-10-05:2024-10-20", "2024-10-05", "2024-10-20"), ("2024-02", "2024-02-01", "2024-02-29"),
    ("2024-11-05", "2024-11-05", "2024-11-05")])
def test_periods(period, start, end):
    assert parse_period(period) == (pd.Timestamp(start), pd.Timestamp(end))


def test_a_bad_period_is_explained():
    from features.errors import UserError

    with pytest.raises(UserError, match="period"):
        parse_period("2024-12-01:2024-01-01")
    with pytest.raises(UserError, match="period"):
        parse_period("last week")
    with pytest.raises(UserError, match="a month"):
        parse_period("2024-13")


def test_the_default_audit_period_is_the_datas_latest_complete_month():
    assert latest_complete_month(pd.Timestamp("2025-01-02")) == "2024-12"  # the demo's data: January has begun
    assert latest_complete_month(pd.Timestamp("2024-12-31")) == "2024-12"
    assert latest_complete_month(pd.Timestamp("2024-03-01 00:00")) == "2024-02"


def test_one_control_is_said_in_the_singular():
    history = pd.DataFrame({"importer_id": ["A", "B"], "inspected": [1, 1], "fraud": [1, 0]})
    selected, _ = audit_candidates(RELEASED[RELEASED["importer_id"] == "A"], None, history, capacity=1)
    assert selected.loc[0, "reasons"].endswith("over 1 control")


def test_every_entity_is_rated_by_its_columns_with_hs_levels_cut_from_the_code():
    declarations = pd.DataFrame({"importer_id": ["A", "A", "B"], "hs_code": ["870323", "870324", "010121"],
                                 "origin_country": ["CN", "CN", "FR"], "office_id": ["O1", "O1", "O2"],
                                 "inspected": [1, 1, None], "fraud": [1, 0, None]})
    headings = rate_entities(declarations, "hs_heading")
    assert headings["hs_heading"].tolist() == ["8703", "0101"] and headings["controls"].tolist() == [2, 0]
    pairs = rate_entities(declarations, "importer_heading")
    assert set(zip(pairs["importer_id"], pairs["hs_heading"], strict=True)) == {("A", "8703"), ("B", "0101")}
    lanes = rate_entities(declarations, "lane", min_controls=1)
    assert lanes[["origin_country", "office_id"]].values.tolist() == [["CN", "O1"]]
