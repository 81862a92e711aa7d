"""Model monitoring: a recent window of declarations against the champion's reference, plus selection outcomes.

- Feature drift: PSI per feature (KS or chi-square beside it), the missing-value rate.
- Score drift: PSI and KS of the champion's risk score, reference vs window.
- Outcomes, once controls report back: the red lane's hit rate and revenue against what the model expected, and
  the exploration stratum's hit rate (a random draw, so an unbiased estimate of fraud among goods the model would
  have released) with a Wilson interval.
- Compliance: a Horvitz-Thompson estimate of the fraud rate and of the revenue at stake among ALL declarations
  decided in the window, released ones included, from the controlled ones and their inclusion probabilities
  (training/compliance.py), overall and per HS chapter, office and importer size band.
Crossing a threshold raises an alert; the flow turns alerts into the `aduana.drift.detected` event.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.build import build_features, integrate
from features.catalogue import alerts
from features.errors import UserError
from features.warehouse import Tables
from training.compliance import by_group, fraud_rate, revenue_at_stake
from training.drift import feature_drift, numeric_drift, wilson
from training.models import RiskModel
from training.user_policies import MonitorThresholds


@dataclass
class MonitorReport:
    model_version: str
    window: tuple[pd.Timestamp, pd.Timestamp]
    rows: int
    reference_rows: int
    features: pd.DataFrame  # per feature: those that can alert first (worst first), then those only reported
    score: dict
    outcomes: dict
    drifted_features: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    thresholds: MonitorThresholds = field(default_factory=MonitorThresholds)  # what the alerts were judged on
    # The champion's risk scores on the reference and on the window, for the score-distribution plot.
    compliance: dict | None = None  # `compliance_summary` of the window's decisions
    audit_findings: dict | None = None  # the random audits' estimate of fraud in released goods (serving/post_clearance.py)
    reference_scores: pd.Series = field(default_factory=lambda: pd.Series(dtype="float64"))
    current_scores: pd.Series = field(default_factory=lambda: pd.Series(dtype="float64"))

    @property
    def drift_detected(self) -> bool:
        return bool(self.alerts)

    def verdict(self) -> str:
        """The verdict in one line; beside "no drift", why: the largest PSI among the features that can alert
        against the threshold, and how many features were reported only (the catalogue's `alerts=False`: profiles and
        ages trend with time by construction, and new traders' ids arrive all the time)."""
        if self.drift_detected:
            return "DRIFT DETECTED"
        if self.rows < self.thresholds.min_rows:
            return (f"no drift verdict: {self.rows:,} declarations in the window, fewer than the "
                    f"{self.thresholds.min_rows:,} a verdict needs")
        alerting = self.features[self.features["alerting"]]
        reported = len(self.features) - len(alerting)
        told = (f"the largest PSI among the {len(alerting)} features that can alert is "
                f"{alerting['psi'].max():.3f} (threshold {self.thresholds.psi:g})" if len(alerting)
                else "no feature of this model can alert")
        return (f"no drift: {told}; {reported} feature{'s' if reported != 1 else ''} that move by construction "
                "(trends with time, new traders' ids) " + ("are" if reported != 1 else "is") + " reported, not alerted on")

    def payload(self) -> dict:
        """The event payload: what drifted, by how much, and where to look."""
        psi = self.features.set_index("feature")["psi"]
        return {"model_version": self.model_version, "window_start": str(self.window[0].date()),
                "window_end": str(self.window[1].date()), "rows": self.rows,
                "drifted_features": self.drifted_features,
                "psi": {f: round(float(psi[f]), 4) for f in self.drifted_features},
                "score_psi": round(self.score["psi"], 4), "alerts": self.alerts, "verdict": self.verdict(),
                "compliance": self.compliance}


def window_bounds(newest: pd.Timestamp, as_of: pd.Timestamp | None, days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The `days` up to `as_of` (default: the newest declaration in the warehouse), both ends included."""
    end = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(newest)
    return end - pd.Timedelta(days=days - 1), end


def window_features(tables: Tables, model: RiskModel, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The model's features for the declarations filed in [start, end], built as scoring builds them."""
    history = integrate(tables.declarations, tables.manifests, tables.traders)
    dates = history["declaration_date"]
    window = history[(dates >= start) & (dates <= end)]
    if window.empty:
        return pd.DataFrame(columns=model.columns)
    features = build_features(window, history=history, bands=model.price_bands)
    return features.X.reindex(columns=model.columns)


def outcome_summary(outcomes: pd.DataFrame) -> dict:
    """Red-lane (model) and exploration-stratum results for the decisions whose controls have reported."""
    summary = {}
    for name, rows in (("red_lane", outcomes["lane"].eq("red") & outcomes["selected_by"].eq("model")),
                       ("exploration", outcomes["selected_by"].eq("exploration"))):
        part = outcomes[rows]
        n, hits = len(part), int(part["fraud"].sum())
        low, high = wilson(hits, n)
        summary[name] = {"controlled": n, "frauds": hits, "hit_rate": hits / n if n else None,
                         "ci_low": None if np.isnan(low) else low, "ci_high": None if np.isnan(high) else high,
                         "expected_hit_rate": float(part["risk_score"].mean()) if n else None,
                         "revenue": float(part["revenue"].sum()) if n and part["revenue"].notna().any() else None,
                         "expected_revenue": float(part["expected_revenue"].sum())
                         if n and part["expected_revenue"].notna().any() else None}
    return summary


GROUPS = {"hs_chapter": "HS chapter", "office_id": "office", "importer_band": "importer size band"}


def importer_bands(importer: pd.Series) -> pd.Series:
    """Each declaration's importer by its volume in the window: small, medium or large, cut at the terciles of
    declarations per importer (so each band holds about a third of the importers)."""
    volume = importer.map(importer.value_counts())
    cuts = importer.value_counts().quantile([1 / 3, 2 / 3]).to_numpy()
    band = np.where(volume <= cuts[0], "small", np.where(volume <= cuts[1], "medium", "large"))
    return pd.Series(band, index=importer.index).where(importer.notna(), "unknown")


def compliance_summary(design: pd.DataFrame, level: float = 0.90, min_rows: int = 30) -> dict | None:
    """The estimate of fraud among all the window's decided declarations (`Decisions.selection_design`): the rate
    and the revenue at stake, overall and per group (groups with fewer than `min_rows` declarations are left out).

    Declarations without a probability (validation failures, real-time answers before any batch set an exploration
    cut-off) are outside the design: they are counted, not estimated. None when nothing is left."""
    if design.empty:
        return None
    probability = design["inclusion_probability"].astype("float64")
    inside = design[(probability > 0) & (probability <= 1)].copy()
    if inside.empty:
        return None
    inside["fraud"] = inside["fraud"].astype("float64")
    inside["revenue"] = inside["revenue"].astype("float64")
    inside["hs_chapter"] = inside["hs_code"].astype("str").str[:2]
    inside["importer_band"] = importer_bands(inside["importer_id"])
    p = inside["inclusion_probability"].to_numpy(dtype="float64")
    out = {"declarations": len(design), "outside_design": len(design) - len(inside), "level": level,
           "fraud_rate": fraud_rate(inside["fraud"].to_numpy(), p, level).to_dict(),
           "revenue_at_stake": revenue_at_stake(inside["revenue"].to_numpy(), p, level).to_dict()
           if inside["revenue"].notna().any() else None, "groups": {}}
    for column, name in GROUPS.items():
        sizes = inside[column].value_counts()
        kept = inside[inside[column].isin(sizes.index[sizes >= min_rows])]
        found = by_group(kept, column, "fraud", "inclusion_probability", level) if len(kept) else {}
        out["groups"][name] = {k: v.to_dict() for k, v in sorted(found.items()) if v.estimate is not None}
    return out


def _outcome_alerts(summary: dict, thresholds: MonitorThresholds) -> list[str]:
    """Alert when the 95 % interval of a stratum's hit rate lies beyond the model's expectation ± the tolerance."""
    alerts, tolerance = [], thresholds.hit_rate_tolerance
    red, explored = summary["red_lane"], summary["exploration"]
    if red["controlled"] >= thresholds.min_outcomes and red["ci_high"] < red["expected_hit_rate"] * (1 - tolerance):
        alerts.append(f"red-lane hit rate {red['hit_rate']:.1%} (95% CI up to {red['ci_high']:.1%}) is below the "
                      f"{red['expected_hit_rate']:.1%} the model expected, beyond the {tolerance:.0%} tolerance")
    if explored["controlled"] >= thresholds.min_outcomes and explored["ci_low"] > explored["expected_hit_rate"] * (1 + tolerance):
        alerts.append(f"exploration draws found fraud at {explored['hit_rate']:.1%} (95% CI from "
                      f"{explored['ci_low']:.1%}) where the model expected {explored['expected_hit_rate']:.1%}: "
                      "fraud the model does not see")
    return alerts


def monitor(model: RiskModel, version: str, reference: pd.DataFrame, current: pd.DataFrame,
            outcomes: pd.DataFrame, window: tuple[pd.Timestamp, pd.Timestamp],
            thresholds: MonitorThresholds = MonitorThresholds(), design: pd.DataFrame | None = None) -> MonitorReport:
    """Compare the window with the reference and raise alerts where thresholds are crossed."""
    if len(reference) == 0:
        raise UserError(f"champion v{version} has an empty drift reference")
    inputs = [c for c in model.columns if c in reference.columns]  # only what this model reads
    table = feature_drift(reference[inputs], current[[c for c in inputs if c in current.columns]], model.categorical)
    table["alerting"] = table["feature"].map(alerts).astype(bool)  # the catalogue says which features may alert
    # What can alert first, worst first; then what is only reported (it trends with time by construction).
    table = table.sort_values(["alerting", "psi"], ascending=[False, False], kind="stable").reset_index(drop=True)
    scores_ref = pd.Series(model.risk(reference))
    scores_cur = pd.Series(model.risk(current)) if len(current) else pd.Series(dtype="float64")
    score = {**numeric_drift(scores_ref, scores_cur), "mean_reference": float(scores_ref.mean()),
             "mean_current": float(scores_cur.mean()) if len(scores_cur) else None}
    report = MonitorReport(model_version=version, window=window, rows=len(current), reference_rows=len(reference),
                           features=table, score=score, outcomes=outcome_summary(outcomes), thresholds=thresholds,
                           reference_scores=scores_ref, current_scores=scores_cur,
                           compliance=compliance_summary(design) if design is not None else None)
    report.alerts += _outcome_alerts(report.outcomes, thresholds)
    if len(current) < thresholds.min_rows:
        return report  # too few declarations for a drift verdict; outcome alerts still stand
    alerting = table[table["alerting"]]
    shifted = alerting["psi"] >= thresholds.psi
    emptier = (alerting["missing_current"] - alerting["missing_reference"]) >= thresholds.missing_increase
    report.drifted_features = alerting.loc[shifted | emptier, "feature"].tolist()
    for row in alerting[shifted].itertuples():
        report.alerts.append(f"feature {row.feature}: PSI {row.psi:.2f} ≥ {thresholds.psi:g}")
    for row in alerting[emptier].itertuples():
        report.alerts.append(f"feature {row.feature}: missing rate {row.missing_reference:.1%} → {row.missing_current:.1%}")
    if score["psi"] >= thresholds.score_threshold:
        report.alerts.append(f"risk score distribution: PSI {score['psi']:.2f} ≥ {thresholds.score_threshold:g} "
                             f"(mean {score['mean_reference']:.3f} → {score['mean_current']:.3f})")
    return report
