"""Post-clearance audit ranking (serving/post_clearance.py) on hand-made frames."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.entity_ratings import entity_counts
from serving.post_clearance import audit_candidates, random_draw, released_compliance

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
    ids = [f"I{i}" for i in range(10)]
    for period in range(periods):
        drawn = random_draw(ids, 2, str(period))
        assert len(set(drawn.tolist())) == 2
        counts[drawn] += 1
    # Each of the 10 is drawn with probability 2/10: 1000 of 5000, within 4 binomial standard deviations.
    assert (np.abs(counts - periods * 0.2) < 4 * (periods * 0.2 * 0.8) ** 0.5).all(), counts
    assert random_draw(ids[:3], 5, "x").tolist() == [0, 1, 2]
    # The same ids are drawn whatever their order, and whichever others leave
    chosen = {ids[i] for i in random_draw(ids, 3, "2025-01")}
    assert {ids[::-1][i] for i in random_draw(ids[::-1], 3, "2025-01")} == chosen
    kept = [i for i in ids if i in chosen or i != ids[0]]
    assert {kept[i] for i in random_draw(kept, 3, "2025-01")} == chosen


def test_a_small_capacity_rounds_the_random_share_half_up_and_never_beyond_the_capacity():
    released, importers = _many_importers()
    assert (audit_candidates(released, None, importers, capacity=5, random_share=0.1)[0]["selected_by"] == "random").sum() == 1
    assert (audit_candidates(released, None, importers, capacity=4, random_share=0.1)[0]["selected_by"] == "random").sum() == 0
    every, _ = audit_candidates(released, None, importers, capacity=3, random_share=1.0)
    assert (every["selected_by"] == "random").all() and (every["inclusion_probability"] == 3 / 50).all()


def _population(rng: np.random.Generator, enterprises: int = 200) -> pd.DataFrame:
    """Released declarations of many enterprises, each with its own fraud rate and volume: a known truth."""
    sizes = rng.integers(5, 60, enterprises)
    rates = rng.beta(0.6, 8, enterprises)
    importer = np.repeat([f"E{i:03d}" for i in range(enterprises)], sizes)
    fraud = (rng.random(len(importer)) < np.repeat(rates, sizes)).astype(float)
    return pd.DataFrame({"period": "2025-01", "importer_id": importer, "fraud": fraud,
                         "revenue": fraud * rng.gamma(2, 500, len(importer))})


def test_the_random_audits_estimate_fraud_in_released_goods_outside_the_ranking_with_its_stated_coverage():
    rng = np.random.default_rng(3)
    truth_population = _population(rng)
    enterprises = truth_population["importer_id"].unique()
    priority = enterprises[:10]  # ranked first: the estimate is about the others
    rest = enterprises[10:]
    outside = truth_population[~truth_population["importer_id"].isin(priority)]
    truth = outside["fraud"].mean()
    covered, estimates = 0, []
    for period in range(300):
        drawn = rest[random_draw(list(rest), 12, str(period))]
        lists = pd.DataFrame({"period": "2025-01", "importer_id": [*priority, *drawn],
                              "selected_by": ["priority"] * 10 + ["random"] * 12,
                              "inclusion_probability": [1.0] * 10 + [12 / len(rest)] * 12})
        audited = truth_population["importer_id"].isin(lists["importer_id"])  # findings on every listed one
        released = truth_population.assign(fraud=truth_population["fraud"].where(audited),
                                           revenue=truth_population["revenue"].where(audited))
        found = released_compliance(lists, released)
        rate = found["fraud_rate"]
        estimates.append(rate["estimate"])
        covered += rate["ci_low"] <= truth <= rate["ci_high"]
    assert found["released_outside_priority"] == len(outside) and found["random_audited"] == 12
    assert found["priority_audited"] == 10 and found["priority_examined"] == truth_population["importer_id"].isin(priority).sum()
    assert abs(np.mean(estimates) - truth) < 0.1 * truth  # nearly unbiased over the draws
    assert covered / 300 >= 0.85, covered  # the 90 % interval's coverage, within sampling noise


def test_the_estimate_says_nothing_before_findings_and_gives_no_interval_from_one_audited_draw():
    released = pd.DataFrame({"period": "2025-01", "importer_id": ["A", "A", "B", "C"], "fraud": [None] * 4,
                             "revenue": [None] * 4})
    lists = pd.DataFrame({"period": "2025-01", "importer_id": ["A", "B"], "selected_by": ["priority", "random"],
                          "inclusion_probability": [1.0, 0.5]})
    assert released_compliance(lists, released) is None
    found = released_compliance(lists, released.assign(fraud=[None, None, 1.0, None], revenue=[None, None, 80.0, None]))
    assert found["fraud_rate"]["estimate"] == 1.0 and found["fraud_rate"]["ci_low"] is None
    assert found["released_outside_priority"] == 2 and found["revenue_per_declaration"]["released_total"] == 160.0
    assert found["priority_hit_rate"] is None
