"""Figures a data scientist wants to see in the MLflow UI (training, monitoring and backtest runs). Matplotlib only;
the tracking module logs them."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402

from training.metrics import top_share  # noqa: E402

CURVE_RATES = np.array([0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30])


def selection_curves(predictions: dict[str, pd.DataFrame]) -> plt.Figure:
    """Precision and revenue captured against the inspection rate, one line per model."""
    fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(11, 4))
    for name, p in predictions.items():
        fraud = p["fraud"].astype(float).to_numpy()
        scores = p["risk_score"].to_numpy()
        ax_p.plot(CURVE_RATES, [fraud[top_share(scores, r)].mean() for r in CURVE_RATES], marker="o", label=name)
        if "revenue" in p and p["revenue"].fillna(0).sum() > 0:
            revenue = p["revenue"].fillna(0).to_numpy()
            ax_r.plot(CURVE_RATES, [revenue[top_share(scores, r)].sum() / revenue.sum() for r in CURVE_RATES], marker="o", label=name)
    ax_p.axhline(p["fraud"].astype(float).mean(), color="grey", linestyle=":", label="random")
    ax_p.set(xlabel="inspection rate (%)", ylabel="precision", title="Precision at k")
    ax_r.set(xlabel="inspection rate (%)", ylabel="share of revenue", title="Revenue at k")
    if not ax_r.lines:
        ax_r.text(0.5, 0.5, "no revenue in this dataset", ha="center", transform=ax_r.transAxes)
    for ax in (ax_p, ax_r):
        if ax.lines:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def pr_curve(predictions: dict[str, pd.DataFrame]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, p in predictions.items():
        precision, recall, _ = precision_recall_curve(p["fraud"].astype(int), p["risk_score"])
        ax.plot(recall, precision, label=name)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (holdout)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def feature_importance(importance: pd.Series, top: int = 25) -> plt.Figure:
    shown = importance.sort_values().tail(top)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(shown) + 1))
    ax.barh(shown.index, shown.to_numpy())
    ax.set(xlabel="CatBoost importance (PredictionValuesChange)", title="Feature importance")
    fig.tight_layout()
    return fig


def calibration(predictions: pd.DataFrame, bins: int = 10) -> plt.Figure:
    observed, predicted = calibration_curve(predictions["fraud"].astype(int), predictions["risk_score"], n_bins=bins,
                                            strategy="quantile")
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    ax.plot(predicted, observed, marker="o", label="model")
    ax.set(xlabel="predicted P(fraud)", ylabel="observed fraud rate", title="Calibration (holdout)")
    ax.legend()
    fig.tight_layout()
    return fig


def _finish_weekly(ax: plt.Axes, weekly: pd.DataFrame) -> None:
    """A dashed line where the drift starts, a 0–1 axis, a grid and the legend."""
    after = weekly.loc[weekly["after_drift"].astype(bool), "week"]
    if len(after):
        ax.axvline(after.min() - 0.5, color="grey", linestyle="--", label="drift")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()


def backtest_weekly(weekly: pd.DataFrame, window: int = 4) -> plt.Figure:
    """Precision and recall per week and policy (a `window`-week rolling ratio, as single weeks are noisy)."""
    fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(12, 4.2), sharex=True)
    for policy, rows in weekly.groupby("policy", sort=False):
        rows = rows.sort_values("week")
        rolled = rows[["frauds_found", "selected", "frauds_total"]].rolling(window, min_periods=1).sum()
        ax_p.plot(rows["week"], rolled["frauds_found"] / rolled["selected"].where(rolled["selected"] > 0), label=policy)
        ax_r.plot(rows["week"], rolled["frauds_found"] / rolled["frauds_total"].where(rolled["frauds_total"] > 0),
                  label=policy)
    ax_p.set(xlabel="week of the replay", ylabel="precision", title=f"Precision ({window}-week rolling)")
    ax_r.set(xlabel="week of the replay", ylabel="recall", title=f"Recall ({window}-week rolling)")
    for ax in (ax_p, ax_r):
        _finish_weekly(ax, weekly)
    fig.tight_layout()
    return fig


def backtest_cumulative(weekly: pd.DataFrame) -> plt.Figure:
    """Cumulative revenue share (or, without revenue, cumulative recall) per policy."""
    column = "cum_revenue_share" if weekly["cum_revenue_share"].notna().any() else "cum_recall"
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for policy, rows in weekly.groupby("policy", sort=False):
        rows = rows.sort_values("week")
        ax.plot(rows["week"], rows[column], label=policy)
    title = "Cumulative revenue share" if column == "cum_revenue_share" else "Cumulative recall (no revenue in the data)"
    ax.set(xlabel="week of the replay", ylabel=column.removeprefix("cum_").replace("_", " "), title=title)
    _finish_weekly(ax, weekly)
    fig.tight_layout()
    return fig


def feature_psi(features: pd.DataFrame, threshold: float, top: int = 30) -> plt.Figure:
    """PSI per feature against the alert threshold, in two parts: above, the features that can alert (the `top`
    largest, worst on top; red where they cross the threshold); below, on their own scale, the features the
    catalogue only reports, as they trend with time by construction (a PSI of 8 there must not squash the rest)."""
    can_alert = features["alerting"].astype(bool) if "alerting" in features else pd.Series(True, index=features.index)
    parts = [(features[can_alert], "Features that can alert"),
             (features[~can_alert], "Reported, not alerted on (they trend with time by construction)")]
    parts = [(p.sort_values("psi", ascending=False, kind="stable").head(top).iloc[::-1], title)
             for p, title in parts if len(p) or title.startswith("Features")]
    heights = [max(len(p), 1) for p, _ in parts]
    fig, axes = plt.subplots(len(parts), 1, figsize=(7.5, 0.28 * sum(heights) + 1.4 * len(parts)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, (shown, title) in zip(axes[:, 0], parts, strict=True):
        alerting = title.startswith("Features")
        colours = (np.where(shown["psi"] >= threshold, "tab:red", "tab:blue") if alerting
                   else np.full(len(shown), "grey"))
        ax.barh(shown["feature"], shown["psi"], color=colours)
        ax.set(xlabel="PSI, reference → window", title=f"{title}: {len(shown)}")
        ax.grid(axis="x", alpha=0.3)
        if not alerting:
            continue
        ax.axvline(threshold, color="tab:red", linestyle="--")
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in ("tab:red", "tab:blue")]
        handles.append(plt.Line2D([], [], color="tab:red", linestyle="--"))
        ax.legend(handles, ["over the threshold", "within it", f"alert threshold (PSI {threshold:g})"],
                  loc="lower right", fontsize="small")
        if shown.empty:
            ax.text(0.5, 0.5, "no feature that can alert in both samples", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def score_distribution(reference: pd.Series, current: pd.Series, score: dict, threshold: float,
                       bins: int = 40) -> plt.Figure:
    """The risk score on the reference and on the window: shares per bin and the cumulative distributions (the KS
    statistic is their largest vertical gap)."""
    ref = reference.to_numpy(dtype="float64")
    cur = current.to_numpy(dtype="float64")
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    top = max([1e-6, *(np.quantile(v, 0.995) for v in (ref, cur) if len(v))])  # a few extreme scores squash the rest
    edges = np.linspace(0, top, bins + 1)
    fig, (ax_h, ax_c) = plt.subplots(1, 2, figsize=(11, 4))
    for name, values in (("reference", ref), ("window", cur)):
        if not len(values):
            continue
        counts, _ = np.histogram(np.clip(values, 0, top), edges)
        ax_h.stairs(counts / len(values), edges, label=f"{name} ({len(values):,})", fill=name == "reference",
                    alpha=0.4 if name == "reference" else 1.0)
        ordered = np.sort(values)
        ax_c.plot(ordered, np.arange(1, len(ordered) + 1) / len(ordered), label=name)
    if not len(cur):
        ax_h.text(0.5, 0.5, "no declarations in the window", ha="center", transform=ax_h.transAxes)
    ax_h.set(xlabel="risk score", ylabel="share of declarations", title="Risk score distribution")
    ax_c.set(xlabel="risk score", ylabel="cumulative share", title="Cumulative distribution", xlim=(0, top))
    psi, ks = score.get("psi"), score.get("statistic")
    verdict = f"PSI {psi:.3f} (alert at {threshold:g})" if psi is not None and np.isfinite(psi) else "PSI n/a"
    fig.suptitle(verdict + (f", KS {ks:.3f}" if ks is not None and np.isfinite(ks) else ""))
    for ax in (ax_h, ax_c):
        if ax.lines or ax.patches:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
