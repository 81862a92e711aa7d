"""Entity profiles use only what was known before each declaration's date."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.profiles import PRIOR_WEIGHT, ProfileIndex


def _history() -> pd.DataFrame:
    """Importer A: controls on 1 Jan (clean) and 5 Feb (fraud); a query on 1 Mar; B never controlled."""
    return pd.DataFrame({
        "declaration_id": ["d1", "d2", "d3", "d4", "d5"],
        "declaration_date": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", "2024-03-01", "2024-01-15"]),
        "importer_id": ["A", "A", "A", "B", "B"],
        "hs_code": ["870323"] * 5,
        "origin_country": ["JP"] * 5,
        "office_id": ["CO-CTG"] * 5,
        "inspected": pd.array([1, 1, 0, 0, 1], dtype="Int8"),
        "fraud": pd.array([0, 1, pd.NA, pd.NA, 0], dtype="Int8"),
        "revenue": [0.0, 500.0, np.nan, np.nan, 0.0],
        "control_date": pd.to_datetime(["2024-01-03", "2024-02-05", None, None, "2024-01-20"]),
    })


def test_only_controls_finished_before_the_date_count():
    h = _history()
    p = ProfileIndex(h).lookup(h).set_index(h["declaration_id"])
    assert p.loc["d1", "importer_inspections"] == 0
    assert p.loc["d2", "importer_inspections"] == 1  # d1's control ended on 3 Jan, before 1 Feb
    assert p.loc["d3", "importer_inspections"] == 2
    assert p.loc["d3", "importer_hit_rate"] > p.loc["d2", "importer_hit_rate"]


def test_a_label_known_after_the_date_does_not_change_the_feature():
    h = _history()
    before = ProfileIndex(h).lookup(h)
    late = h.copy()
    late.loc[1, "control_date"] = pd.Timestamp("2024-03-10")  # d2's fraud now comes to light after d3 is filed
    after = ProfileIndex(late).lookup(late)
    assert after.loc[2, "importer_inspections"] == 1
    assert after.loc[2, "importer_hit_rate"] < before.loc[2, "importer_hit_rate"]
    flipped = late.copy()
    flipped.loc[1, "fraud"] = 0  # and whatever it says cannot move the feature
    pd.testing.assert_series_equal(ProfileIndex(flipped).lookup(flipped)["importer_hit_rate"], after["importer_hit_rate"])


def test_a_control_ending_on_the_filing_day_is_not_yet_known():
    h = _history()
    h.loc[1, "control_date"] = pd.Timestamp("2024-03-01")
    assert ProfileIndex(h).lookup(h).loc[2, "importer_inspections"] == 1


def test_rates_are_smoothed_towards_the_prior():
    h = _history()
    p = ProfileIndex(h).lookup(h)
    # d3: importer A has 1 fraud in 2 controls; global prior as of 1 Mar is 1 fraud in 3 controls.
    expected = (1 + PRIOR_WEIGHT * (1 / 3)) / (2 + PRIOR_WEIGHT)
    assert p.loc[2, "importer_hit_rate"] == pytest.approx(expected)
    assert 0 < p.loc[3, "importer_hit_rate"] < 1  # B's d4 has one clean control: below the prior
    assert p.loc[3, "importer_hit_rate"] < p.loc[2, "importer_hit_rate"]


def test_volume_and_first_seen_count_earlier_filings_only():
    h = _history()
    p = ProfileIndex(h).lookup(h)
    assert p["importer_volume"].tolist() == [0, 1, 2, 1, 0]
    assert p.loc[2, "importer_days_known"] == 60
    assert p.loc[0, "importer_days_known"] == 0


def test_the_recent_window_forgets_old_controls():
    h = _history()
    query = h.iloc[[2]].assign(declaration_date=pd.Timestamp("2024-04-20"))  # 3 Jan is > 90 days back; 5 Feb is not
    p = ProfileIndex(h).lookup(query)
    assert p.iloc[0]["importer_inspections"] == 2
    recent_prior = p.iloc[0]["importer_hit_rate_90d"]
    assert recent_prior > p.iloc[0]["importer_hit_rate"]


def test_scoring_queries_use_the_history_not_their_own_labels():
    h = _history()
    new = h.iloc[[2]].assign(declaration_id="new", inspected=1, fraud=1, control_date=pd.Timestamp("2024-03-02"))
    p = ProfileIndex(h).lookup(new)
    assert p.iloc[0]["importer_inspections"] == 2
