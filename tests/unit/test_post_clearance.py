"""Post-clearance audit ranking (serving/post_clearance.py) on hand-made frames."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.entity_ratings import entity_counts
from serving.post_clearance import audit_candidates, random_draw

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


def _many_importers(n: int = 50) -> tuple[pd.DataFrame, pd.DataFrame]:
    released = pd.DataFrame({"declaration_id": [f"d{i}" for i in range(n)], "importer_id": [f"I{i:02d}" for i in range(n)],
                             "lane": "green", "risk_score": 0.1, "expected_revenue": [float(1000 - i) for i in range(n)],
                             "duty_paid": 1.0, "reasons": "r"})
    history = pd.DataFrame({"importer_id": released["importer_id"], "inspected": 1, "fraud": 0})
    return released, entity_counts(history, ["importer_id"])


def test_a_random_share_of_the_capacity_is_drawn_from_the_enterprises_the_ranking_leaves_out():
    released, importers = _many_importers()
    ranked, _ = audit_candidates(released, None, importers, capacity=10)
    assert set(ranked["selected_by"]) == {"priority"} and (ranked["inclusion_probability"] == 1).all()
    selected, evidence = audit_candidates(released, None, importers, capacity=10, random_share=0.2, seed="2024-11")
    priority, drawn = selected[selected["selected_by"] == "priority"], selected[selected["selected_by"] == "random"]
    assert priority["importer_id"].tolist() == ranked["importer_id"].head(8).tolist()  # the ranking's first 8
    assert len(drawn) == 2 and not set(drawn["importer_id"]) & set(ranked["importer_id"].head(8))
    assert drawn["inclusion_probability"].tolist() == [2 / 42] * 2
    assert selected["rank"].tolist() == list(range(1, 11))
    assert all(r.startswith("drawn at random (2 of the 42 enterprises") for r in drawn["reasons"])
    assert set(evidence["importer_id"]) == set(selected["importer_id"])
    # Over every enterprise, listed or not, the inclusion probabilities sum to the capacity.
    assert len(priority) + (50 - 8) * drawn["inclusion_probability"].iloc[0] == pytest.approx(10)
    again, _ = audit_candidates(released, None, importers, capacity=10, random_share=0.2, seed="2024-11")
    assert again["importer_id"].tolist() == selected["importer_id"].tolist()  # a period's list is reproducible


def test_the_draw_gives_every_left_out_enterprise_its_stated_probability():
    periods = 5000
    counts = np.zeros(10)
    for period in range(periods):
        drawn = random_draw(10, 2, str(period))
        assert len(set(drawn.tolist())) == 2
        counts[drawn] += 1
    # Each of the 10 is drawn with probability 2/10: 1000 of 5000, within 4 binomial standard deviations.
    assert (np.abs(counts - periods * 0.2) < 4 * (periods * 0.2 * 0.8) ** 0.5).all(), counts
    assert random_draw(3, 5, "x").tolist() == [0, 1, 2]


def test_a_small_capacity_rounds_the_random_share_half_up_and_never_beyond_the_capacity():
    released, importers = _many_importers()
    assert (audit_candidates(released, None, importers, capacity=5, random_share=0.1)[0]["selected_by"] == "random").sum() == 1
    assert (audit_candidates(released, None, importers, capacity=4, random_share=0.1)[0]["selected_by"] == "random").sum() == 0
    every, _ = audit_candidates(released, None, importers, capacity=3, random_share=1.0)
    assert (every["selected_by"] == "random").all() and (every["inclusion_probability"] == 3 / 50).all()
