"""The latest scoring batch as the analysts' page shows it (`BatchView`: lanes by office and by day, the score
histogram and the lanes' cut-offs, the red declarations), and everything the overview reads from the warehouse
(`PageData`).

The decision log keeps no office or filing date: they come from the stored declaration (features/warehouse/
decisions.py `latest_scoring_batch` joins them). A batch scored from a file that was never ingested has neither, so
the lanes by office and by day count only the declarations the warehouse holds, and the others are counted apart
(`not_stored`), never drawn as an office or a day of their own."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from serving.selection import GREEN, RED, YELLOW, Thresholds
from training.monitoring import compliance_summary

LANES = (RED, YELLOW, GREEN)
HISTOGRAM_BINS = 40
NOT_STORED = "(not in the warehouse)"  # a scored declaration the warehouse does not hold: office and day unknown


@dataclass(frozen=True)
class BatchView:
    """The latest scoring batch, summarised."""

    batch_id: str
    decided_at: pd.Timestamp
    model_versions: list[str]
    lanes: dict[str, int]
    by_office: pd.DataFrame  # office × lane counts (and total), busiest first; stored declarations only
    by_day: pd.DataFrame  # filing day × lane counts (and total), by day; stored declarations only
    edges: np.ndarray  # histogram bin edges of the risk score
    counts: dict[str, np.ndarray]  # lane → declarations per bin
    cut_offs: dict[str, float]  # lane → the lowest risk score the model put in it (when lanes rank by risk)
    not_stored: int  # scored declarations the warehouse does not hold (in no office or day above)
    red: pd.DataFrame  # declaration_id, risk_score, selected_by, office, day of each red one; highest risk first
    compliance: dict | None = None  # training/monitoring.py `compliance_summary` of the batch's declarations


def lane_table(rows: pd.DataFrame, by: str) -> pd.DataFrame:
    """Declarations per `by` value and lane, with a total column."""
    table = pd.crosstab(rows[by], rows["lane"]).reindex(columns=list(LANES), fill_value=0)
    return table.assign(total=table.sum(axis=1)).astype("int64")


def summarise_batch(rows: pd.DataFrame, rank_by: str, seed: int) -> BatchView | None:
    """A scoring batch's decisions (features/warehouse/decisions.py `latest_scoring_batch`) as the page shows them."""
    if rows.empty:
        return None
    stored = rows["declaration_date"].notna()  # a stored declaration always has its (required) date
    rows = rows.assign(office=rows["office_id"].astype("object").fillna("(none)").where(stored, NOT_STORED),
                       day=pd.to_datetime(rows["declaration_date"]).dt.strftime("%Y-%m-%d").where(stored, NOT_STORED))
    held = rows[stored]
    by_office = lane_table(held, "office").sort_values(["total"], ascending=False, kind="stable")
    scored = rows[rows["risk_score"].notna()]
    top = float(scored["risk_score"].max()) if len(scored) else 1.0
    edges = np.linspace(0.0, min(1.0, max(math.ceil(top * 20) / 20, 0.05)), HISTOGRAM_BINS + 1)
    counts = {lane: np.histogram(scored.loc[scored["lane"] == lane, "risk_score"], bins=edges)[0] for lane in LANES}
    cut_offs = {}
    if rank_by == "risk_score" and len(scored):
        learned = Thresholds.from_decisions(scored, rank_by, seed)
        cut_offs = {lane: value for lane, value in ((RED, learned.red), (YELLOW, learned.yellow))
                    if math.isfinite(value)}
    return BatchView(batch_id=str(rows["batch_id"].iloc[0]), decided_at=pd.Timestamp(rows["decided_at"].max()),
                     model_versions=sorted({str(v) for v in rows["model_version"].dropna()}),
                     lanes={lane: int((rows["lane"] == lane).sum()) for lane in LANES}, by_office=by_office,
                     by_day=lane_table(held, "day").sort_index(), edges=edges, counts=counts, cut_offs=cut_offs,
                     not_stored=int((~stored).sum()), red=red_declarations(rows),
                     compliance=compliance_summary(rows) if "inclusion_probability" in rows else None)


def red_declarations(rows: pd.DataFrame) -> pd.DataFrame:
    """The batch's red declarations, highest risk first (unscored ones last, in batch order)."""
    wanted = ["declaration_id", "risk_score", "selected_by", "stratum", "office", "day", "inclusion_probability"]
    red = rows.loc[rows["lane"] == RED, [c for c in wanted if c in rows]]
    return red.sort_values("risk_score", ascending=False, kind="stable", na_position="last").reset_index(drop=True)


@dataclass(frozen=True)
class PageData:
    batch: BatchView | None
    audit: pd.DataFrame
    ratings: pd.DataFrame
    read_at: datetime
    audit_findings: dict | None = None  # serving/post_clearance.py `audit_findings`

