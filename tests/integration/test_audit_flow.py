"""The audit flow publishes its list in the warehouse, and takes its default period from the data."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from flows.audit import customs_audit
from flows.orchestration.runtime import current

pytestmark = pytest.mark.integration


def test_the_audit_list_is_kept_in_the_warehouse_and_defaults_to_the_datas_latest_month(prefect_api, loaded_home,
                                                                                        world):
    warehouse = current().warehouse
    declarations = world.declarations
    newest = declarations["declaration_date"].max()
    released = pd.DataFrame({  # every declaration released green, as a scoring batch would have logged it
        "declaration_id": declarations["declaration_id"].to_numpy(), "position": np.arange(len(declarations)),
        "risk_score": np.linspace(0.01, 0.9, len(declarations)), "expected_revenue": 100.0, "lane": "green",
        "selected_by": "", "reasons": "", "model_version": "1", "policy_hash": "test"})
    warehouse.decisions.append_batch(released, pd.DataFrame(), "score-test", "test", datetime(2025, 1, 1))
    assert warehouse.audits.latest().empty

    result = customs_audit(capacity=5)
    month = pd.Timestamp(newest).to_period("M")
    expected = str(month if pd.Timestamp(newest) == month.end_time.normalize() else month - 1)
    assert result["period"] == expected  # the data's latest complete month, not the wall clock's
    stored = warehouse.audits.latest()
    assert result["list_id"] and set(stored["list_id"]) == {result["list_id"]}
    assert stored["importer_id"].tolist() == [r["importer_id"] for r in result["selected"]] and len(stored) == 5
    assert stored["rank"].tolist() == [1, 2, 3, 4, 5] and stored["period"].eq(expected).all()

    again = customs_audit(period=expected, capacity=3)  # a later list replaces it as the latest; both are kept
    assert warehouse.audits.latest()["list_id"].unique().tolist() == [again["list_id"]]
    assert warehouse.counts()["audit_lists"] == 8
