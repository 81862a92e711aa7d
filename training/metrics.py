"""Selection metrics: for an inspection rate n %, the top ⌈n %·N⌉ rows by score are selected."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

RATES = (1, 2, 5, 10)


def pr_auc(fraud: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (PR-AUC), or NaN where the rows do not hold both frauds and the rest: scikit-learn's
    `average_precision_score` (tied scores one threshold; each threshold's precision weighted by the recall it
    adds) in numpy, without its input checks, which cost ~1 ms a call: the gate's bootstrap calls it 2,000 times
    per comparison (tests/unit/test_metrics.py holds the two equal)."""
    fraud = np.asarray(fraud, dtype="float64")
    scores = np.asarray(scores, dtype="float64")
    if not 0 < fraud.sum() < len(fraud):
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    ranked = scores[order]
    if np.isnan(ranked).any():
        raise ValueError("pr_auc: scores hold NaN")
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # each distinct score's last row
    found = np.cumsum(fraud[order])[last]
    precision = found / (last + 1)
    return float(np.sum(np.diff(found, prepend=0.0) / found[-1] * precision))


def top_share(scores: np.ndarray, percent: float) -> np.ndarray:
    """Boolean mask of the top ⌈percent·N/100⌉ scores (ties broken by position, deterministically)."""
    scores = np.asarray(scores, dtype="float64")
    k = math.ceil(percent / 100 * len(scores))
    mask = np.zeros(len(scores), dtype=bool)
    mask[np.argsort(-scores, kind="stable")[:k]] = True
    return mask


def selection_metrics(fraud: np.ndarray, scores: np.ndarray, revenue: np.ndarray | None = None,
                      rates: tuple[float, ...] = RATES) -> dict[str, float | None]:
    """precision@n, recall@n and revenue@n for each rate, and PR-AUC. Revenue metrics are None without revenue."""
    fraud = np.asarray(fraud, dtype="float64")
    total_fraud = fraud.sum()
    has_revenue = revenue is not None and not np.all(np.isnan(np.asarray(revenue, dtype="float64")))
    revenue = np.nan_to_num(np.asarray(revenue, dtype="float64")) if has_revenue else None
    out: dict[str, float | None] = {}
    for n in rates:
        selected = top_share(scores, n)
        k = selected.sum()
        out[f"precision_at_{n}pct"] = float(fraud[selected].sum() / k) if k else 0.0
        out[f"recall_at_{n}pct"] = float(fraud[selected].sum() / total_fraud) if total_fraud else None
        out[f"revenue_at_{n}pct"] = float(revenue[selected].sum() / revenue.sum()) if has_revenue and revenue.sum() > 0 else None
    out["pr_auc"] = pr_auc(fraud, scores) if 0 < total_fraud < len(fraud) else None
    out["positive_share"] = float(total_fraud / len(fraud)) if len(fraud) else None  # precision@n% ≤ share / n%
    return out


def precision_ceiling(metrics: dict, rate: float) -> float | None:
    """The highest precision@rate% any ranking can reach on these rows (below 1 where frauds are rarer than rate %:
    a rare label), or None when unknown."""
    share = metrics.get("positive_share")
    return None if share is None else min(1.0, share / (rate / 100))


def precision_by_segment(fraud: np.ndarray, scores: np.ndarray, segment: pd.Series, percent: float = 5,
                         min_rows: int = 50) -> pd.DataFrame:
    """precision@percent within each segment that has at least `min_rows` rows, with the segment's base rate."""
    frame = pd.DataFrame({"fraud": np.asarray(fraud, dtype="float64"), "score": np.asarray(scores), "segment": segment.to_numpy()})
    rows = []
    for name, part in frame.groupby("segment", sort=True):
        if len(part) < min_rows:
            continue
        selected = top_share(part["score"].to_numpy(), percent)
        rows.append({"segment": name, "rows": len(part), "base_rate": part["fraud"].mean(),
                     f"precision_at_{percent:g}pct": part["fraud"].to_numpy()[selected].mean()})
    return pd.DataFrame(rows)


def label(metric: str) -> str:
    """precision_at_5pct → precision@5% (for people; MLflow metric names cannot hold @ or %)."""
    return metric.replace("_at_", "@").replace("pct", "%")
