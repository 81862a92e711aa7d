"""flows/audit.py on a real Prefect API: the audit flow publishes its list in the warehouse and takes its default
period from the data; ratings are kept in the warehouse whenever they are computed, by `aduana ratings` (the
customs-ratings flow) and by the audit flow, beside its list; each list appended, the latest of each entity kind
readable."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from flows.audit import customs_audit, customs_ratings
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


pytestmark = pytest.mark.integration


def test_ratings_lists_are_stored_by_the_ratings_and_audit_flows(prefect_api, loaded_home, world):
    warehouse = current().warehouse
    assert warehouse.ratings.latest().empty

    rows = customs_ratings("lane", top=4, min_controls=0)
    stored = warehouse.ratings.latest()
    assert stored["entity"].unique().tolist() == ["lane"] and stored["rank"].tolist() == [1, 2, 3, 4]
    assert stored["entity_key"].tolist() == [f"{r['origin_country']} → {r['office_id']}" for r in rows]
    assert stored["band"].tolist() == [r["band"] for r in rows] and stored["audit_list_id"].isna().all()
    assert stored["hit_rate"].to_numpy() == pytest.approx([r["hit_rate"] for r in rows])

    declarations = world.declarations
    released = pd.DataFrame({  # every declaration released green, as a scoring batch would have logged it
        "declaration_id": declarations["declaration_id"].to_numpy(), "position": np.arange(len(declarations)),
        "risk_score": np.linspace(0.01, 0.9, len(declarations)), "expected_revenue": 100.0, "lane": "green",
        "selected_by": "", "reasons": "", "model_version": "1", "policy_hash": "test"})
    warehouse.decisions.append_batch(released, pd.DataFrame(), "score-test", "test", datetime(2025, 1, 1))
    audit = customs_audit(capacity=3)
    assert set(audit["ratings"]) == {"importer", "declarant"}
    latest = warehouse.ratings.latest()
    assert set(latest["entity"]) == {"lane", "importer", "declarant"}  # the latest list of each kind
    enterprises = latest[latest["entity"] != "lane"]
    assert set(enterprises["audit_list_id"]) == {audit["list_id"]}
    assert set(enterprises["list_id"]) == {audit["ratings"]["importer"], audit["ratings"]["declarant"]}
    assert (enterprises["controls"] >= 5).all()

    again = customs_ratings("importer", top=2, min_controls=5)  # a newer importer list is the latest; all are kept
    latest = warehouse.ratings.latest()
    importers = latest[latest["entity"] == "importer"]
    assert importers["entity_key"].tolist() == [r["importer_id"] for r in again] and importers["audit_list_id"].isna().all()
    assert warehouse.counts()["ratings"] == 4 + len(enterprises) + 2
