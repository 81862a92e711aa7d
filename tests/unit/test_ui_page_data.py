"""serving/ui/page_data.py: a scoring batch as the analysts' page summarises it, on tiny frames."""
from __future__ import annotations

import pandas as pd

from serving.ui.page_data import NOT_STORED, summarise_batch


def batch_rows(stored: list[bool]) -> pd.DataFrame:
    """Decisions as `latest_scoring_batch` reads them: office and date only where the warehouse holds the
    declaration."""
    n = len(stored)
    lanes = ["red", "green", "yellow", "red", "green", "red"] * (n // 6 + 1)
    return pd.DataFrame({
        "batch_id": "score-x", "decided_at": pd.Timestamp("2025-01-02 09:30"), "position": range(n),
        "declaration_id": [f"D{i}" for i in range(n)], "risk_score": [0.1 * (i % 9) + 0.05 for i in range(n)],
        "expected_revenue": None, "lane": lanes[:n], "selected_by": ["model" if lane != "green" else None
                                                                   for lane in lanes[:n]],
        "model_version": "3", "policy_hash": "p",
        "office_id": [f"OFF{i % 2}" if s else None for i, s in enumerate(stored)],
        "declaration_date": [pd.Timestamp(f"2025-01-0{1 + i % 2}") if s else pd.NaT for i, s in enumerate(stored)],
    })


def test_offices_and_days_count_only_the_declarations_the_warehouse_holds():
    view = summarise_batch(batch_rows([True, True, True, True, False, False]), "expected_revenue", 0)
    assert view.not_stored == 2 and sum(view.lanes.values()) == 6  # the lanes count the whole batch
    assert NOT_STORED not in view.by_office.index and NOT_STORED not in view.by_day.index
    assert view.by_office["total"].sum() == 4 and view.by_day["total"].sum() == 4
    assert list(view.by_day.index) == ["2025-01-01", "2025-01-02"]


def test_a_batch_the_warehouse_does_not_hold_has_no_office_or_day():
    view = summarise_batch(batch_rows([False] * 6), "expected_revenue", 0)
    assert view.not_stored == 6 and view.by_office.empty and view.by_day.empty
    assert sum(view.lanes.values()) == 6 and sum(int(c.sum()) for c in view.counts.values()) == 6


def test_the_red_declarations_are_listed_highest_risk_first_stored_or_not():
    rows = batch_rows([True, True, True, True, True, False])
    view = summarise_batch(rows, "expected_revenue", 0)
    red = rows[rows["lane"] == "red"].sort_values("risk_score", ascending=False)
    assert list(view.red["declaration_id"]) == list(red["declaration_id"])
    assert view.red.set_index("declaration_id").loc["D5", "office"] == NOT_STORED
    assert view.red.set_index("declaration_id").loc["D0", "office"] == "OFF0"
