"""Metric formulas (training/metrics.py) against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from training.metrics import pr_auc, precision_by_segment, selection_metrics, top_share

FRAUD = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1] * 10)  # 100 rows, 30 frauds
SCORES = np.linspace(1, 0, 100)  # rank = position
REVENUE = np.where(FRAUD == 1, np.arange(100, dtype=float), 0.0)


def test_top_share_rounds_up():
    assert top_share(SCORES, 1).sum() == 1
    assert top_share(np.arange(150.0), 1).sum() == 2  # ⌈1.5⌉
    assert top_share(SCORES, 5).tolist()[:6] == [True] * 5 + [False]


def test_ties_are_broken_deterministically():
    assert top_share(np.ones(10), 20).tolist() == [True, True] + [False] * 8


def test_selection_metrics_by_hand():
    m = selection_metrics(FRAUD, SCORES, REVENUE)
    # top 5 rows: fraud pattern 1,0,1,0,0 → 2 frauds; their revenue 0 + 2 = 2 out of sum of fraud indices.
    assert m["precision_at_5pct"] == pytest.approx(2 / 5)
    assert m["recall_at_5pct"] == pytest.approx(2 / 30)
    assert m["revenue_at_5pct"] == pytest.approx(2 / REVENUE.sum())
    # top 10 rows: 3 frauds (positions 0, 2, 9) with revenue 0 + 2 + 9.
    assert m["precision_at_10pct"] == pytest.approx(0.3)
    assert m["revenue_at_10pct"] == pytest.approx(11 / REVENUE.sum())
    assert m["precision_at_1pct"] == 1.0


def test_a_perfect_ranking_has_pr_auc_one():
    fraud = np.array([1, 1, 0, 0, 0])
    assert selection_metrics(fraud, np.array([0.9, 0.8, 0.3, 0.2, 0.1]))["pr_auc"] == pytest.approx(1.0)


def test_revenue_metrics_are_absent_without_revenue_not_zero():
    m = selection_metrics(FRAUD, SCORES, None)
    assert m["revenue_at_5pct"] is None and m["precision_at_5pct"] is not None
    assert selection_metrics(FRAUD, SCORES, np.full(100, np.nan))["revenue_at_5pct"] is None


def test_precision_by_segment_ranks_within_each_segment():
    import pandas as pd

    segment = pd.Series(["a"] * 50 + ["b"] * 50)
    table = precision_by_segment(FRAUD, SCORES, segment, percent=10, min_rows=10).set_index("segment")
    assert table.loc["a", "precision_at_10pct"] == pytest.approx(2 / 5)  # rows 0-4 of segment a: 1,0,1,0,0
    assert table.loc["b", "base_rate"] == pytest.approx(FRAUD[50:].mean())


@pytest.mark.parametrize("seed", range(40))
def test_pr_auc_is_scikit_learns_average_precision(seed):
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    fraud = (rng.random(n) < rng.uniform(0.01, 0.6)).astype(float)
    fraud[rng.integers(n)], fraud[rng.integers(n)] = 1.0, 0.0  # both classes, mostly
    scores = rng.random(n) if seed % 2 else rng.integers(0, 5, n) / 4  # ties in every other case
    expected = average_precision_score(fraud, scores) if 0 < fraud.sum() < n else float("nan")
    assert pr_auc(fraud, scores) == pytest.approx(expected, rel=1e-12, abs=1e-15, nan_ok=True)
