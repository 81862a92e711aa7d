"""Post-clearance audit (PCA) selection.

Enterprises are ranked by the expected revenue left unrecovered in the goods they had released (green or yellow)
during a period, adjusted by their compliance history and registry attributes. Each selected enterprise comes
with its reasons and its riskiest released declarations as evidence.

A share of the capacity (`random_share`, rounded half up) is drawn at random, uniformly, from the period's other
enterprises with released goods, as tax and customs administrations keep random audits to measure compliance:
what a ranked list finds says nothing of the enterprises it never picks. Each listed enterprise carries its
`selected_by` ("priority" or "random") and its `inclusion_probability` (1 for the ranked ones; k of the M others
for the drawn ones), so that audit findings can weigh each audited enterprise by 1/probability (Horvitz-Thompson).
The draw is seeded by the period: an audit list rerun for a period draws the same enterprises.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd

from serving.entity_ratings import ratings_of

EVIDENCE_ROWS = 5


def audit_candidates(released: pd.DataFrame, traders: pd.DataFrame | None, importers: pd.DataFrame,
                     capacity: int = 20, random_share: float = 0.0, seed: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rank importers for PCA. `released`: decisions of the period's green/yellow declarations joined to them
    (declaration_id, importer_id, risk_score, expected_revenue, duty_paid, reasons); `importers`: the history's
    controls per importer (serving/entity_ratings.py `entity_counts` by importer_id); `random_share` of the
    capacity drawn at random from the rest (module docstring), with `seed` (the period) seeding the draw. Returns
    (audit list, evidence)."""
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
    ranked = per_importer.sort_values("audit_priority", ascending=False, kind="stable")
    drawn = min(math.floor(capacity * random_share + 0.5), capacity)
    priority, rest = ranked.iloc[:capacity - drawn], ranked.iloc[capacity - drawn:]
    picked = rest.iloc[random_draw(len(rest), drawn, seed)]
    selected = pd.concat([priority.assign(selected_by="priority", inclusion_probability=1.0),
                          picked.assign(selected_by="random", inclusion_probability=len(picked) / max(len(rest), 1))]
                         ).reset_index()
    selected.insert(0, "rank", np.arange(1, len(selected) + 1))
    selected["reasons"] = [_audit_reasons(r, len(picked), len(rest)) for r in selected.itertuples()]
    evidence = (released[released["importer_id"].isin(selected["importer_id"])]
                .sort_values("residual_revenue", ascending=False).groupby("importer_id").head(EVIDENCE_ROWS)
                [["importer_id", "declaration_id", "lane", "risk_score", "residual_revenue", "reasons"]])
    return selected, evidence.reset_index(drop=True)


def random_draw(population: int, size: int, seed: str) -> np.ndarray:
    """`size` positions of `population` (all of them when fewer), drawn uniformly without replacement, in order;
    the same for the same `seed`."""
    rng = np.random.default_rng(zlib.crc32(f"audit {seed}".encode()))
    return np.sort(rng.choice(population, size=min(size, population), replace=False))


def _audit_reasons(r, picked: int, others: int) -> str:  # noqa: ANN001 - a namedtuple row
    parts = [f"drawn at random ({picked} of the {others:,} enterprises with released goods outside the priority list, "
             f"probability {r.inclusion_probability:.2%}) to measure compliance where the ranking does not look"] \
        if r.selected_by == "random" else []
    parts.append(f"expected unrecovered revenue {r.expected_unrecovered:,.0f} in {r.released_declarations} released declarations")
    if not pd.isna(r.hit_rate) and r.controls:
        parts.append(f"smoothed hit rate {r.hit_rate:.0%} over {int(r.controls)} control{'s' if r.controls != 1 else ''}")
    if not pd.isna(r.prior_violations) and r.prior_violations > 0:
        parts.append(f"{int(r.prior_violations)} prior violation{'s' if r.prior_violations != 1 else ''}")
    if r.aeo_certified == 1:
        parts.append("AEO-certified (priority lowered)")
    return "; ".join(parts)
