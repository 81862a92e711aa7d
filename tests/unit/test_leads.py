"""Leads (features/leads.py) and the novelty of an established importer's new relationships (features/novelty.py):
the two sources that follow a new scheme from its first filings and its first unexpected finds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.leads import lead_keys, lead_scores, residuals, strongest_leads
from features.novelty import NEW_DAYS, NoveltyIndex
from serving.reasons import entity_named


def _rows(**columns: list) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"importer_id": ["I1"] * n, "exporter_id": ["E1"] * n, "declarant_id": ["D1"] * n, "office_id": ["O1"] * n,
            "hs_code": ["610910"] * n, "origin_country": ["CN"] * n}
    return pd.DataFrame({**base, **columns})


def test_a_relationship_where_controls_found_fraud_the_model_did_not_expect_is_a_lead():
    evidence = _rows(exporter_id=["NEW", "NEW", "OLD", "OLD", "QUIET"], importer_id=["A", "A", "B", "B", "C"],
                     hs_code=["9701", "9701", "6109", "6109", "8471"], origin_country=["TH", "TH", "CN", "CN", "DE"],
                     declarant_id=["DA", "DA", "DB", "DB", "DC"], office_id=["OA", "OA", "OB", "OB", "OC"])
    fraud = np.array([1, 1, 1, 0, 0])
    risk = np.array([0.1, 0.2, 0.9, 0.9, 0.1])  # OLD found less than the model expected; QUIET nothing
    found = residuals(lead_keys(evidence), fraud, risk)
    assert found["exporter"].to_dict() == pytest.approx({"NEW": (0.9 + 0.8) / 3})
    queries = _rows(exporter_id=["NEW", "OLD", "QUIET", "UNSEEN", "NEW"], importer_id=["Z", "B", "C", "A", "A"],
                    hs_code=["0101", "6109", "8471", "0101", "9701"], origin_country=["US", "CN", "DE", "US", "TH"],
                    declarant_id=["DZ", "DB", "DC", "DZ", "DA"], office_id=["OZ", "OB", "OC", "OZ", "OA"])
    score = lead_scores(found, lead_keys(queries), len(queries))
    assert score[0] == pytest.approx(found["exporter"]["NEW"])  # the seller alone
    assert np.isnan(score[1]) and np.isnan(score[2]) and np.isnan(score[3])  # as expected, clean, never controlled
    assert score[4] == pytest.approx(4 * found["exporter"]["NEW"])  # seller, importer × heading, seller × origin, broker


def test_a_lead_names_the_relationship_with_the_largest_residual():
    evidence = _rows(exporter_id=["E1", "E1", "E1", "E2"], importer_id=["A", "B", "C", "D"],
                     declarant_id=["DA", "DB", "DC", "DD"], origin_country=["TH", "VN", "MY", "CN"])
    found = residuals(lead_keys(evidence), np.ones(4), np.zeros(4))  # E1: 3 finds; each importer × heading: 1
    queries = _rows(exporter_id=["E1", "E9", "E9"], importer_id=["Z", "A", "Z"], origin_country=["US", "US", "US"],
                    declarant_id=["DZ", "DZ", "DZ"])
    named = strongest_leads(found, lead_keys(queries), len(queries))
    assert named.tolist() == ["exporter", "importer_heading", ""]  # the seller; importer A with the heading; none
    row = queries.iloc[1].to_dict()
    assert entity_named(named[1], row) == "importer A with HS heading 6109"
    assert entity_named("exporter_origin", {**row, "exporter_id": np.nan}) == "exporter ? from US"


def test_one_unexpected_find_counts_less_than_several():
    keys = lead_keys(_rows(exporter_id=["ONE", "MANY", "MANY", "MANY"]))
    found = residuals({"exporter": keys["exporter"]}, np.array([1, 1, 1, 1]), np.zeros(4))
    assert found["exporter"]["MANY"] > found["exporter"]["ONE"] == pytest.approx(0.5)


def test_new_relationships_mark_an_established_importers_new_seller_and_goods_not_a_newcomer():
    day = pd.Timestamp("2024-01-01")
    dates = [day + pd.Timedelta(days=d) for d in range(0, 200, 5)]
    history = _rows(declaration_date=dates, importer_id=["OLD"] * len(dates))
    novelty = NoveltyIndex(pd.concat([history, _rows(declaration_date=[day + pd.Timedelta(days=200)],
                                                     importer_id=["OLD"], exporter_id=["E9"], hs_code=["970110"])]))
    at = day + pd.Timedelta(days=200 + NEW_DAYS // 3)
    queries = _rows(declaration_date=[at] * 4, importer_id=["OLD", "OLD", "NEWCOMER", "OLD"],
                    exporter_id=["E9", "E1", "E9", "E9"], hs_code=["970110", "610910", "970110", "970110"])
    queries.loc[3, "declaration_date"] = at + pd.Timedelta(days=NEW_DAYS)
    found = novelty.lookup(queries)["new_relationships"].to_numpy()
    assert found[0] == pytest.approx(2 / 5 * (1 - 1 / 3))  # seller and heading taken up 30 days ago, of 5 pairs
    assert found[1] == 0  # its usual seller and goods
    assert found[2] == 0  # a newcomer: all its pairs are new, and none of them is a change
    assert found[3] == 0  # the same relationships once NEW_DAYS old


def test_a_declarant_that_suddenly_files_for_importers_new_to_it_shifts_one_that_always_takes_clients_on_does_not():
    """`declarant_client_shift`: established importers all moving to one broker at once shift that broker; a broker
    whose clients come and go at the same rate as before does not; no declarant given, no shift."""
    day = pd.Timestamp("2024-01-01")
    steady_days = range(0, 240, 4)  # BUSY takes on a new client every 4 days, all along
    history = [_rows(declaration_date=[day + pd.Timedelta(days=d) for d in steady_days], declarant_id=["BUSY"] * 60,
                     importer_id=[f"C{d}" for d in steady_days])]
    quiet_days = range(0, 240, 10)  # QUIET files for one client, then for five established importers at once
    history.append(_rows(declaration_date=[day + pd.Timedelta(days=d) for d in quiet_days], declarant_id=["QUIET"] * 24,
                         importer_id=["Q0"] * 24))
    movers = [f"M{i}" for i in range(5)]
    for importer in movers:  # each established with another broker before
        history.append(_rows(declaration_date=[day + pd.Timedelta(days=d) for d in range(0, 225, 15)],
                             importer_id=[importer] * 15, declarant_id=["OTHER"] * 15))
        history.append(_rows(declaration_date=[day + pd.Timedelta(days=d) for d in (230, 233, 236)],
                             importer_id=[importer] * 3, declarant_id=["QUIET"] * 3))
    novelty = NoveltyIndex(pd.concat(history, ignore_index=True))
    at = day + pd.Timedelta(days=240)
    queries = _rows(declaration_date=[at] * 3, declarant_id=["QUIET", "BUSY", None], importer_id=["M0", "C999", "M1"])
    found = novelty.lookup(queries)["declarant_client_shift"].to_numpy()
    assert found[0] > 10  # 15 filings for importers new to it in the last month, where it took on none before
    assert found[1] < 1  # BUSY's new clients come at its usual rate
    assert found[2] == 0  # no declarant
