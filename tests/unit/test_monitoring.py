"""The monitor's verdicts (training/monitoring.py) on controlled samples: selection outcomes and drift."""
from __future__ import annotations

import pandas as pd
import pytest

from training.monitoring import MonitorThresholds, monitor, outcome_summary


def _outcomes(red_hits: int, red_n: int, red_expected: float, explored_hits: int, explored_n: int,
              explored_expected: float) -> pd.DataFrame:
    rows = [("red", "model", red_expected, float(i < red_hits)) for i in range(red_n)]
    rows += [("red", "exploration", explored_expected, float(i < explored_hits)) for i in range(explored_n)]
    frame = pd.DataFrame(rows, columns=["lane", "selected_by", "risk_score", "fraud"])
    return frame.assign(expected_revenue=100.0, revenue=frame["fraud"] * 50)


def test_outcomes_flag_a_red_lane_below_expectation_and_fraud_found_by_exploration():
    summary = outcome_summary(_outcomes(20, 100, 0.6, 12, 60, 0.05))
    assert summary["red_lane"]["hit_rate"] == pytest.approx(0.2)
    assert summary["red_lane"]["ci_high"] < 0.6
    assert summary["exploration"]["ci_low"] > 0.05
    assert summary["red_lane"]["revenue"] == pytest.approx(1000)


def test_monitor_alerts_on_shifted_inputs_and_outcomes_but_not_on_trending_profiles(trained):
    model = trained.model
    X = trained.features.X
    reference, current = X.iloc[:4000].copy(), X.iloc[4000:8000].copy()
    calm = monitor(model, "1", reference, current, _outcomes(55, 100, 0.6, 3, 60, 0.05), (pd.Timestamp("2024-01-01"),) * 2)
    assert not calm.drift_detected, calm.alerts

    drifted = current.copy()
    drifted["importer_days_known"] += 10_000  # a profile trends with time: reported, no alert
    drifted["log_declared_value"] -= 2.0  # undervaluation spree: an input shift
    report = monitor(model, "1", reference, drifted, _outcomes(20, 100, 0.6, 12, 60, 0.05),
                     (pd.Timestamp("2024-01-01"),) * 2, MonitorThresholds())
    assert report.drift_detected
    assert "log_declared_value" in report.drifted_features
    assert "importer_days_known" not in report.drifted_features
    assert report.features.set_index("feature").loc["importer_days_known", "psi"] > 1
    # What can alert leads, worst first; what only trends with time follows, apart.
    flags = report.features["alerting"].tolist()
    assert flags == sorted(flags, reverse=True) and report.features.loc[0, "feature"] == "log_declared_value"
    alerting = report.features[report.features["alerting"]]["psi"].tolist()
    assert alerting == sorted(alerting, reverse=True)
    assert calm.verdict().startswith(f"no drift: the largest PSI among the {int(calm.features['alerting'].sum())} "
                                     "features that can alert is ")
    assert "(threshold 0.25)" in calm.verdict() and "move by construction" in calm.verdict()
    assert report.verdict() == "DRIFT DETECTED"
    assert any("red-lane hit rate" in a for a in report.alerts)
    assert any("exploration draws" in a for a in report.alerts)
    payload = report.payload()
    assert payload["drifted_features"] == report.drifted_features and payload["psi"]["log_declared_value"] > 0.25

    few = monitor(model, "1", reference, drifted.head(50), _outcomes(0, 0, 0, 0, 0, 0), (pd.Timestamp("2024-01-01"),) * 2)
    assert not few.drift_detected  # too few rows for a verdict
    assert few.verdict() == "no drift verdict: 50 declarations in the window, fewer than the 200 a verdict needs"


def test_the_compliance_estimate_covers_the_true_fraud_rate_of_all_declarations():
    """A simulated period: the model's red picks are certain, the rest are drawn at random; only picks show their
    outcome. The estimate of fraud among all declarations (released included) must cover the truth."""
    import numpy as np

    from training.monitoring import compliance_summary

    rng = np.random.default_rng(3)
    n = 6000
    truth = rng.random(n) < np.where(np.arange(n) < 300, 0.6, 0.04)  # the first 300 are the model's red picks
    drawn = np.zeros(n, dtype=bool)
    drawn[300 + rng.choice(n - 300, 120, replace=False)] = True
    probability = np.where(np.arange(n) < 300, 1.0, 120 / (n - 300))
    controlled = (np.arange(n) < 300) | drawn
    design = pd.DataFrame({"declaration_id": [f"D{i}" for i in range(n)], "inclusion_probability": probability,
                           "fraud": np.where(controlled, truth, np.nan), "revenue": np.where(controlled, truth * 100.0, np.nan),
                           "hs_code": np.where(np.arange(n) % 2, "870323", "610910"),
                           "office_id": np.where(np.arange(n) % 3, "A", "B"), "importer_id": [f"I{i % 40}" for i in range(n)],
                           "lane": "green", "selected_by": ""})
    design.loc[0, "inclusion_probability"] = np.nan  # a validation failure: outside the design, counted
    found = compliance_summary(design)
    rate = found["fraud_rate"]
    assert found["outside_design"] == 1 and rate["population"] == n - 1
    assert rate["ci_low"] <= truth[1:].mean() <= rate["ci_high"]
    assert controlled[1:][truth[1:]].sum() / (n - 1) < rate["estimate"]  # more than the frauds found: released ones too
    assert set(found["groups"]) == {"HS chapter", "office", "importer size band"}
    assert set(found["groups"]["HS chapter"]) == {"61", "87"}
