"""flows/audit.py on a real Prefect API: the audit flow publishes its list in the warehouse and takes its default
period from the data; ratings are kept in the warehouse whenever they are computed, by `aduana ratings` (the
customs-ratings flow) and by the audit flow, beside its list; each list appended, the latest of each entity kind
readable."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from features.intake.prepared import prepare_batch
from features.warehouse import Warehouse
from flows.audit import customs_audit, customs_ratings
from flows.orchestration.runtime import current
from flows.render import audit_text
from serving.periods import parse_period
from tests.conftest import write_csv

pytestmark = pytest.mark.integration


def test_the_audit_list_is_kept_in_the_warehouse_and_defaults_to_the_datas_latest_month(prefect_api, loaded_home,
                                                                                        world, tmp_path):
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
    # The default random share (0.1 of 5, rounded half up): the fifth is drawn from the enterprises left out.
    start, end = (pd.Timestamp(day) for day in parse_period(expected))
    in_period = declarations[declarations["declaration_date"].between(start, end)]
    others = in_period["importer_id"].nunique() - 4
    assert stored["selected_by"].tolist() == ["priority"] * 4 + ["random"]
    assert stored["inclusion_probability"].tolist() == pytest.approx([1.0] * 4 + [1 / others])
    assert result["random_share"] == 0.1 and result["selected"][4]["reasons"].startswith("drawn at random (1 of the")

    # The drawn enterprise's audit reports back: every released declaration of the period examined, one fraud
    drawn = stored["importer_id"].iloc[4]
    mine = in_period[in_period["importer_id"] == drawn]
    control = (end + pd.Timedelta(days=30)).date()
    findings = pd.DataFrame({"declaration_id": mine["declaration_id"], "inspected": 1, "control_date": control,
                             "fraud": [1] + [0] * (len(mine) - 1), "revenue": [250.0] + [0.0] * (len(mine) - 1),
                             "critical": 0})
    summary = warehouse.store(prepare_batch(write_csv(tmp_path / "findings.csv", findings), kind="outcomes"))
    assert summary.stored == len(mine)
    found = customs_audit(period=expected, capacity=5)["released_compliance"]
    assert found["periods"] == [expected] and (found["random_drawn"], found["random_audited"]) == (1, 1)
    assert (found["examined"], found["frauds_found"]) == (len(mine), 1)
    assert found["fraud_rate"]["estimate"] == pytest.approx(1 / len(mine)) and found["fraud_rate"]["ci_low"] is None
    assert found["revenue_per_declaration"]["estimate"] == pytest.approx(250 / len(mine))
    assert "1 of 1 drawn enterprises reported findings" in audit_text({**result, "released_compliance": found})

    again = customs_audit(period=expected, capacity=3, random_share=0.0)  # a later list is the latest; all kept
    latest = warehouse.audits.latest()
    assert latest["list_id"].unique().tolist() == [again["list_id"]] and set(latest["selected_by"]) == {"priority"}
    assert warehouse.counts()["audit_lists"] == 13
    assert again["released_compliance"] is None  # the period's latest list drew none


def test_a_warehouse_whose_audit_lists_predate_the_random_share_gains_its_columns(tmp_path):
    import duckdb

    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:  # the table as 0.16 wrote it, with one list
        con.execute("CREATE TABLE audit_lists (list_id VARCHAR NOT NULL, period VARCHAR NOT NULL, capacity BIGINT "
                    "NOT NULL, selected_at TIMESTAMP NOT NULL, rank BIGINT NOT NULL, importer_id VARCHAR NOT NULL, "
                    "audit_priority DOUBLE, expected_unrecovered DOUBLE, reasons VARCHAR)")
        con.execute("INSERT INTO audit_lists VALUES ('old', '2024-11', 1, TIMESTAMP '2024-12-01', 1, 'I1', 5, 5, 'r')")
    warehouse = Warehouse(path)
    assert warehouse.audits.latest()["list_id"].tolist() == ["old"]  # read as it is
    warehouse.audits.record(pd.DataFrame({"rank": [1], "importer_id": ["I2"], "selected_by": ["random"],
                                          "inclusion_probability": [0.25]}), "2024-12", 1)
    assert warehouse.audits.latest()[["selected_by", "inclusion_probability"]].values.tolist() == [["random", 0.25]]
    with warehouse.connect(read_only=True) as con:
        assert con.execute("SELECT selected_by, inclusion_probability FROM audit_lists WHERE list_id = 'old'"
                           ).fetchall() == [(None, None)]


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
