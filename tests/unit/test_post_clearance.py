"""Post-clearance audit ranking (serving/post_clearance.py) on hand-made frames."""
from __future__ import annotations

import pandas as pd
import pytest

from serving.entity_ratings import entity_counts
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
IMPORTERS = entity_counts(HISTORY, ["importer_id"])
TRADERS = pd.DataFrame({"importer_id": ["A", "B", "C"], "aeo_certified": [0, 1, 0], "prior_violations": [0, 0, 4],
                        "credit_rating": ["B", "AA", "C"]})


def test_enterprises_are_ranked_by_expected_unrecovered_revenue_adjusted_by_history():
    selected, evidence = audit_candidates(RELEASED, TRADERS, IMPORTERS, capacity=3)
    assert selected["expected_unrecovered"].tolist() == [1500.0, 2000.0, 500.0]
    # A: 1500 × (1 + its hit rate) beats B: 2000 × (1 + a low hit rate) × 0.7 for AEO status.
    assert selected["importer_id"].tolist() == ["A", "B", "C"]
    assert "AEO-certified" in selected.loc[1, "reasons"] and "4 prior violations" in selected.loc[2, "reasons"]
    assert "smoothed hit rate 50% over 10 controls" in selected.loc[0, "reasons"]
    assert evidence.groupby("importer_id").size().to_dict() == {"A": 2, "B": 1, "C": 3}
    assert evidence.loc[evidence["importer_id"] == "C", "declaration_id"].iloc[0] == "c3"


def test_the_audit_list_respects_capacity():
    selected, _ = audit_candidates(RELEASED, TRADERS, IMPORTERS, capacity=1)
    assert len(selected) == 1 and selected["rank"].tolist() == [1]


def test_without_revenue_the_duty_at_risk_stands_in():
    selected, _ = audit_candidates(RELEASED.assign(expected_revenue=None), TRADERS, IMPORTERS, capacity=3)
    assert selected.set_index("importer_id").loc["B", "expected_unrecovered"] == pytest.approx(9.0)


def test_one_control_is_said_in_the_singular():
    history = pd.DataFrame({"importer_id": ["A", "B"], "inspected": [1, 1], "fraud": [1, 0]})
    selected, _ = audit_candidates(RELEASED[RELEASED["importer_id"] == "A"], None, entity_counts(history, ["importer_id"]), capacity=1)
    assert selected.loc[0, "reasons"].endswith("over 1 control")
