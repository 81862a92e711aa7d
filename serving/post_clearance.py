"""Post-clearance audit (PCA) selection.

Enterprises are ranked by the expected revenue left unrecovered in the goods they had released (green or yellow)
during a period, adjusted by their compliance history and registry attributes. Each selected enterprise comes
with its reasons and its riskiest released declarations as evidence.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from serving.entity_ratings import ratings_of

EVIDENCE_ROWS = 5


def audit_candidates(released: pd.DataFrame, traders: pd.DataFrame | None, importers: pd.DataFrame,
                     capacity: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rank importers for PCA. `released`: decisions of the period's green/yellow declarations joined to them
    (declaration_id, importer_id, risk_score, expected_revenue, duty_paid, reasons); `importers`: the history's
    controls per importer (serving/entity_ratings.py `entity_counts` by importer_id). Returns (audit list,
    evidence)."""
    if released.empty:
        return pd.DataFrame(), pd.DataFrame()
    residual = released["expected_revenue"].astype("float64")
    proxy = released["risk_score"] * released.get("duty_paid", pd.Series(0.0, index=released.index)).fillna(0)
    released = released.assign(residual_revenue=residual.fillna(proxy))
    per_importer = released.groupby("importer_id").agg(
        released_declarations=("declaration_id", "size"), expected_unrecovered=("residual_revenue", "sum"),
        mean_risk=("risk_score", "mean"))
    per_importer = per_importer.join(ratings_of(importers)[["controls", "hit_rate"]], how="left")
    if traders is not None and len(traders):
        per_importer = per_importer.join(traders.set_index("importer_id")[["aeo_certified", "prior_violations", "credit_rating"]],
                                         how="left")
    for column in ("aeo_certified", "prior_violations", "hit_rate", "controls"):
        if column not in per_importer:
            per_importer[column] = np.nan
    # A transparent adjustment: history and registry move the priority, revenue at stake sets its scale.
    history_factor = 1 + per_importer["hit_rate"].fillna(0)
    violations_factor = 1 + 0.25 * np.log1p(per_importer["prior_violations"].fillna(0))
    aeo_factor = np.where(per_importer["aeo_certified"] == 1, 0.7, 1.0)
    per_importer["audit_priority"] = per_importer["expected_unrecovered"] * history_factor * violations_factor * aeo_factor
    selected = per_importer.sort_values("audit_priority", ascending=False).head(capacity).reset_index()
    selected.insert(0, "rank", np.arange(1, len(selected) + 1))
    selected["reasons"] = [_audit_reasons(r) for r in selected.itertuples()]
    evidence = (released[released["importer_id"].isin(selected["importer_id"])]
                .sort_values("residual_revenue", ascending=False).groupby("importer_id").head(EVIDENCE_ROWS)
                [["importer_id", "declaration_id", "lane", "risk_score", "residual_revenue", "reasons"]])
    return selected, evidence.reset_index(drop=True)


def _audit_reasons(r) -> str:  # noqa: ANN001 - a namedtuple row
    parts = [f"expected unrecovered revenue {r.expected_unrecovered:,.0f} in {r.released_declarations} released declarations"]
    if not pd.isna(r.hit_rate) and r.controls:
        parts.append(f"smoothed hit rate {r.hit_rate:.0%} over {int(r.controls)} control{'s' if r.controls != 1 else ''}")
    if not pd.isna(r.prior_violations) and r.prior_violations > 0:
        parts.append(f"{int(r.prior_violations)} prior violation{'s' if r.prior_violations != 1 else ''}")
    if r.aeo_certified == 1:
        parts.append("AEO-certified (priority lowered)")
    return "; ".join(parts)
