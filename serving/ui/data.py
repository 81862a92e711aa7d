"""The latest scoring batch as the analysts' page shows it (`BatchView`: lanes by office and by day, the score
histogram and the lanes' cut-offs), and everything the overview reads from the warehouse (`PageData`)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from serving.selection import GREEN, RED, YELLOW, Thresholds

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
    by_office: pd.DataFrame  # office × lane counts (and total), busiest first
    by_day: pd.DataFrame  # filing day × lane counts (and total), by day
    edges: np.ndarray  # histogram bin edges of the risk score
    counts: dict[str, np.ndarray]  # lane → declarations per bin
    cut_offs: dict[str, float]  # lane → the lowest risk score the model put in it (when lanes rank by risk)
    not_stored: int  # scored declarations the warehouse does not hold


def lane_table(rows: pd.DataFrame, by: str) -> pd.DataFrame:
    """Declarations per `by` value and lane, with a total column."""
    table = pd.crosstab(rows[by], rows["lane"]).reindex(columns=list(LANES), fill_value=0)
    return table.assign(total=table.sum(axis=1)).astype("int64")


def summarise_batch(rows: pd.DataFrame, rank_by: str, seed: int) -> BatchView | None:
    """A scoring batch's decisions (features/warehouse/decisions.py `latest_scoring_batch`) as the page shows them."""
    if rows.empty:
        return None
    stored = rows["declaration_date"].notna()
    rows = rows.assign(office=rows["office_id"].astype("object").where(stored, NOT_STORED).fillna("(none)"),
                       day=pd.to_datetime(rows["declaration_date"]).dt.strftime("%Y-%m-%d").where(stored, NOT_STORED))
    by_office = lane_table(rows, "office").sort_values(["total"], ascending=False, kind="stable")
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
                     by_day=lane_table(rows, "day").sort_index(), edges=edges, counts=counts, cut_offs=cut_offs,
                     not_stored=int((~stored).sum()))


@dataclass(frozen=True)
class PageData:
    batch: BatchView | None
    audit: pd.DataFrame
    ratings: pd.DataFrame
    read_at: datetime

