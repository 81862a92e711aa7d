"""The islas world's optional emerging scheme: a small ring that starts mid-history, and its backtest."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from features.simulator import simulate_islas, write_islas
from features.simulator.islas import COLUMNS, MONTHS, START
from serving.backtest import BacktestConfig, from_islas, run_backtest
from training.models import FitConfig

# Computed from simulate_islas(5_000, seed=1) before the scheme existed: a world without it must not change.
DEFAULT_WORLD_SHA256 = "e12c3c9ade347005cc158f409b2cdddf636a6133d8466e55c52eced33798a3b2"


def _world_sha256(world) -> str:
    digest = hashlib.sha256()
    for frame in (world.train, world.test, world.bad_rows, world.truth):
        digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
        digest.update(str(list(frame.columns)).encode())
        digest.update(str(list(frame.dtypes)).encode())
    digest.update(str(world.test_start).encode())
    return digest.hexdigest()


def _rows(world) -> pd.DataFrame:
    return pd.concat([world.train, world.test], ignore_index=True)


@pytest.fixture(scope="module")
def plain():
    return simulate_islas(50_000, seed=7)


@pytest.fixture(scope="module")
def schemed():
    return simulate_islas(50_000, seed=7, scheme=True)


@pytest.fixture(scope="module")
def scheme_rows(schemed) -> pd.DataFrame:
    """The scheme world's rows with their hidden truth alongside, the date parsed and the HS heading."""
    rows = _rows(schemed)
    assert (rows["Declaration ID"].to_numpy() == schemed.truth["Declaration ID"].to_numpy()).all()
    rows["in_scheme"] = schemed.truth["scheme"].to_numpy()
    rows["typology"] = schemed.truth["typology"].to_numpy()
    rows["date"] = pd.to_datetime(rows["Date"], format="%Y-%m-%d", errors="coerce")  # a few dates are malformed
    rows["heading"] = rows["HS6 Code"].astype(str).str.zfill(6).str[:4]
    return rows


def test_a_world_without_the_scheme_is_the_world_it_always_was():
    world = simulate_islas(5_000, seed=1)
    assert _world_sha256(world) == DEFAULT_WORLD_SHA256
    assert world.drift_date is None and {"scheme", "typology"}.isdisjoint(world.truth.columns)
    assert _world_sha256(simulate_islas(5_000, seed=1, scheme=False)) == DEFAULT_WORLD_SHA256


def test_the_scheme_replaces_a_few_rows_and_leaves_every_other_row_as_it_was(plain, schemed, scheme_rows):
    in_scheme = scheme_rows["in_scheme"].to_numpy()
    pd.testing.assert_frame_equal(_rows(schemed)[~in_scheme], _rows(plain)[~in_scheme])
    pd.testing.assert_frame_equal(schemed.bad_rows[["file", "row_number", "kind"]],
                                  plain.bad_rows[["file", "row_number", "kind"]])
    assert schemed.test_start == plain.test_start


def test_the_scheme_starts_at_its_drift_date_drawn_from_the_seed(schemed, scheme_rows):
    start, end = pd.Timestamp(START), pd.Timestamp(START) + pd.DateOffset(months=MONTHS)
    assert isinstance(schemed.drift_date, pd.Timestamp)
    assert 0.55 <= (schemed.drift_date - start) / (end - start) <= 0.70
    dates = scheme_rows.loc[scheme_rows["in_scheme"], "date"].dropna()
    assert dates.min() >= schemed.drift_date
    assert (dates.min() - schemed.drift_date).days <= 7  # it starts then, not later
    assert simulate_islas(50_000, seed=8, scheme=True).drift_date != schemed.drift_date


def test_the_scheme_is_a_modest_share_of_later_traffic_with_a_high_fraud_rate(scheme_rows):
    after = scheme_rows[scheme_rows["date"] >= scheme_rows.loc[scheme_rows["in_scheme"], "date"].min()]
    ring = scheme_rows[scheme_rows["in_scheme"]]
    assert 0.005 <= after["in_scheme"].mean() <= 0.015
    rate = (ring["typology"] == "new_scheme").mean()
    assert 0.25 <= rate <= 0.45
    assert rate > 1.5 * (scheme_rows["typology"] != "").mean()
    # The typology is the label's: "new_scheme" on the scheme's frauds only, "fraud" on every other fraud.
    labelled = scheme_rows[scheme_rows["Fraud"].isin([0, 1])]
    assert ((labelled["typology"] != "") == (labelled["Fraud"] == 1)).all()
    assert set(labelled.loc[~labelled["in_scheme"], "typology"]) == {"", "fraud"}


def test_the_scheme_is_a_new_combination_of_established_entities(scheme_rows):
    ring = scheme_rows[scheme_rows["in_scheme"]]
    before = scheme_rows[scheme_rows["date"] < ring["date"].min()]
    importers = set(ring["Importer ID"].dropna())
    assert 3 <= len(importers) <= 5 and importers <= set(before["Importer ID"].dropna())  # established
    assert ring["heading"].nunique() == 1 and ring["Declarant ID"].nunique() == 1 and ring["Office ID"].nunique() == 1
    assert ring["Declarant ID"].iloc[0] in set(before["Declarant ID"])
    bought = before[before["Importer ID"].isin(importers)]
    assert ring["heading"].iloc[0] not in set(bought["heading"])  # a heading none of them bought before
    pairs = set(zip(ring["Seller ID"], ring["Country of Origin"], strict=True))
    assert pairs.isdisjoint(zip(before["Seller ID"], before["Country of Origin"], strict=True))
    unit_value = ring["Item Price"] / ring["Net Mass"]
    fraud = ring["typology"] == "new_scheme"
    assert unit_value[fraud].median() < 0.75 * unit_value[~fraud].median()  # its frauds are undervalued


def test_the_hidden_truth_is_never_written(schemed, tmp_path):
    paths = write_islas(schemed, tmp_path)
    for name in ("train", "test", "arrivals"):
        text = paths[name].read_text()
        header = text.splitlines()[0].split(",")
        assert set(header) <= set(COLUMNS)
        assert "new_scheme" not in text and "typology" not in text and "scheme" not in text.lower()


def test_a_backtest_of_the_islas_scheme_counts_its_frauds():
    world = simulate_islas(20_000, seed=7, scheme=True)
    data = from_islas(world, source="islas (rows=20000, seed=7, scheme)")
    assert data.drift_date == world.drift_date and data.left_out == 0
    assert len(data.frame) == 20_000 - len(world.bad_rows)  # the injected bad rows were quarantined
    assert ((data.oracle["typology"] != "") == (data.oracle["fraud"] == 1)).all()
    config = BacktestConfig(policies=("model", "random"), fit=FitConfig(iterations=20, seed=7), retrain_every=8,
                            warmup_share=0.5)
    summary = run_backtest(data, config).summary.to_dict()
    assert summary["drift_date"] == str(world.drift_date.date())
    assert summary["frauds_by_typology"]["new_scheme"] > 0
    assert set(summary["policies"]) == {"model", "random"}
    assert any(line.startswith("new-scheme frauds found") for line in summary["findings"])


def test_an_islas_world_without_the_scheme_backtests_as_a_labelled_file():
    data = from_islas(simulate_islas(2_000, seed=3))
    assert data.drift_date is None and "typology" not in data.oracle
    assert np.isin(data.oracle["fraud"], [0, 1]).all()
