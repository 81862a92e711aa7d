"""The warehouse's ProfileStore gives the profiles ProfileIndex gives, computed by DuckDB: on the demo world (history
from a warehouse table or from Parquet, training's queries and scoring's), and on the edge cases of the semantics."""
from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.build import integrate
from features.entities import MISSING, entity_keys
from features.profiles import PRIOR_WEIGHT, PROFILE_COLUMNS, ProfileIndex, first_filings
from features.simulator import World
from features.warehouse import Warehouse
from features.warehouse.profile_store import ProfileStore
from tests.unit.test_profiles import (
    _history,  # importer A: controls 1 Jan (clean), 5 Feb (fraud); B on 20 Jan
)

# Revenue is added up in another order than ProfileIndex's (per second, then over time): its rates may differ in the
# last bits. Every other column is a count, a ratio of counts or a difference of seconds, and equal exactly.
ROUNDED = [c for c in PROFILE_COLUMNS if c.endswith("revenue_rate")]


def assert_same(store: pd.DataFrame, index: pd.DataFrame) -> None:
    assert list(store.columns) == PROFILE_COLUMNS and store.index.equals(index.index)
    assert (store.dtypes == "float64").all()
    assert (store.isna() == index.isna()).all().all(), "NaN positions differ"
    exact = [c for c in PROFILE_COLUMNS if c not in ROUNDED]
    pd.testing.assert_frame_equal(store[exact], index[exact], check_exact=True)
    a, b = store[ROUNDED].to_numpy(), index[ROUNDED].to_numpy()
    known = ~np.isnan(b)
    assert np.allclose(a[known], b[known], rtol=1e-12, atol=0)


def _store(frame: pd.DataFrame) -> ProfileStore:
    con = duckdb.connect()
    con.register("history", frame)
    return ProfileStore.build(con, "SELECT * FROM history")


@pytest.fixture(scope="module")
def history(world: World) -> pd.DataFrame:
    """Every fourth declaration of the demo world (5,000 over its whole period), integrated as scoring reads it."""
    return integrate(world.declarations.iloc[::4], world.manifests, world.traders).reset_index(drop=True)


@pytest.fixture(scope="module")
def future(history: pd.DataFrame) -> pd.DataFrame:
    """Scoring's queries: 400 filings after the history, some by parties and goods never seen, some with a missing
    exporter or office; indexed by declaration id."""
    rng = np.random.default_rng(5)
    rows = history.sample(400, random_state=5).reset_index(drop=True)
    rows["declaration_date"] = history["declaration_date"].max() + pd.to_timedelta(rng.integers(0, 40, 400), "D")
    new = rng.random(400) < 0.3
    rows.loc[new, "importer_id"] = [f"NEW-{i % 37}" for i in range(new.sum())]
    rows.loc[rng.random(400) < 0.2, "hs_code"] = "010121"
    rows.loc[rng.random(400) < 0.1, "exporter_id"] = None
    rows.loc[rng.random(400) < 0.1, "office_id"] = None
    return rows.set_index(pd.Index([f"new-{i}" for i in range(400)], name="declaration_id"))


def test_a_warehouse_table_gives_profile_index_profiles(tmp_path: Path, world: World, history: pd.DataFrame):
    warehouse = Warehouse(tmp_path / "w.duckdb")
    stored = world.declarations.iloc[::4]
    with warehouse.transaction() as con:  # the canonical table as ingest writes it (DATE, TINYINT, DOUBLE columns)
        con.register("rows", stored)
        columns = ", ".join(f'"{c}"' for c in stored.columns)
        con.execute(f"INSERT INTO declarations BY NAME SELECT {columns} FROM rows")
    with warehouse.connect(read_only=True) as con:  # the scorer reads the warehouse, it never writes it
        store = ProfileStore.build(con, "SELECT * FROM declarations", memory_limit="256MB", temp_directory=tmp_path)
        assert_same(store.lookup(history), ProfileIndex(history).lookup(history))  # training: history = frame


def test_parquet_history_and_scoring_partitions(tmp_path: Path, history: pd.DataFrame, future: pd.DataFrame):
    path = tmp_path / "declarations.parquet"
    con = duckdb.connect()
    con.register("history", history)
    con.execute(f"COPY history TO '{path}' (FORMAT parquet)")
    store = ProfileStore.build(con, f"SELECT * FROM read_parquet('{path}')")
    index = ProfileIndex(history)
    expected = index.lookup(future)
    assert_same(store.lookup(future), expected)
    assert (expected.loc[future["importer_id"].str.startswith("NEW"), "importer_volume"] == 0).all()

    # A partitioned batch: each partition reads its new keys' first filings from the whole batch's.
    first = store.first_filings(future)
    for name, firsts in first_filings(future).items():  # keys cut in SQL as entity_keys cuts them
        pd.testing.assert_series_equal(first[name].sort_index(), firsts.sort_index(), check_names=False)
    parts = [store.lookup(future.iloc[:150], first), store.lookup(future.iloc[150:], first)]
    assert_same(pd.concat(parts), expected)
    assert_same(parts[1], index.lookup(future.iloc[150:], first_filings(future)))
    alone = store.lookup(future.iloc[150:])  # without them, a new key is known from its first filing in the part
    assert (alone["importer_days_known"] <= expected["importer_days_known"].iloc[150:]).all()
    with pytest.raises(ValueError, match="importer key is missing"):
        store.lookup(future, {**first, "importer": first["importer"].iloc[:3]})


def test_a_store_kept_for_a_batch_holds_its_keys_alone_and_looks_them_up_alike(history: pd.DataFrame,
                                                                             future: pd.DataFrame):
    """Built for the declarations it will be asked about (a batch to score), the store keeps only their keys' running
    totals: fewer rows, and for any part of the batch the lookup of the store kept whole (its revenue rates to the
    last bits, as the store's against ProfileIndex's)."""
    con = duckdb.connect()
    con.register("history", history)
    con.register("batch", future.reset_index(drop=True))
    whole = ProfileStore.build(con, "SELECT * FROM history")
    expected = {part: whole.lookup(rows) for part, rows in (("all", future), ("tail", future.iloc[250:]))}
    sizes = {e.name: con.execute(f"SELECT count(*) FROM profile_store_{e.name}").fetchone()[0] for e in whole.entities}
    kept = ProfileStore.build(con, "SELECT * FROM history", queries_sql="SELECT * FROM batch")
    kept_sizes = {name: con.execute(f"SELECT count(*) FROM profile_store_{name}").fetchone()[0] for name in sizes}
    assert all(kept_sizes[n] <= sizes[n] for n in sizes) and kept_sizes["importer"] < 0.8 * sizes["importer"]
    importers = set(con.execute("SELECT key FROM profile_store_importer").df()["key"])
    assert importers <= set(future["importer_id"]) and len(importers) > 100
    assert_same(kept.lookup(future), expected["all"])  # revenue: added up along a shorter table, the last bits
    assert_same(kept.lookup(future.iloc[250:]), expected["tail"])


def test_hand_computed_profiles():
    h = _history()
    p = _store(h).lookup(h)
    assert_same(p, ProfileIndex(h).lookup(h))
    # d3: A has 1 fraud in 2 controls; the global prior as of 1 Mar is 1 fraud in 3 controls.
    assert p.loc[2, "importer_hit_rate"] == (1 + PRIOR_WEIGHT * (1 / 3)) / (2 + PRIOR_WEIGHT)
    assert p.loc[2, "importer_revenue_rate"] == pytest.approx((500 + PRIOR_WEIGHT * 500 / 3) / (2 + PRIOR_WEIGHT))
    assert p["importer_volume"].tolist() == [0, 1, 2, 1, 0]
    assert p["importer_inspections"].tolist() == [0, 1, 2, 1, 0]
    assert p.loc[2, "importer_days_known"] == 60 and p.loc[0, "importer_days_known"] == 0
    assert np.isnan(p.loc[0, "importer_hit_rate"])  # no control had ended anywhere: no prior, no rate
    late = h.iloc[[2]].assign(declaration_date=pd.Timestamp("2024-04-20"))  # 3 Jan is > 90 days back; 5 Feb is not
    recent = _store(h).lookup(late).iloc[0]
    assert recent["importer_hit_rate_90d"] > recent["importer_hit_rate"]
    assert recent["importer_volume"] == 3 and recent["importer_volume_90d"] == 2  # 1 Jan is over 90 days back


def test_events_of_one_second_count_together_and_only_after_it():
    h = _history().iloc[[0, 1]].assign(declaration_id=["t1", "t2"], control_date=pd.Timestamp("2024-02-10 08:30:15"))
    at = pd.Timestamp("2024-02-10 08:30:15")
    queries = h.iloc[[0, 0, 0]].assign(declaration_date=[at, at + pd.Timedelta(seconds=1), at - pd.Timedelta("1ms")])
    p = _store(h).lookup(queries)
    assert_same(p, ProfileIndex(h).lookup(queries))
    assert p["importer_inspections"].tolist() == [0, 2, 0]
    assert p["hs_chapter_hit_rate"].iloc[1] == (1 + PRIOR_WEIGHT * 0.5) / (2 + PRIOR_WEIGHT)


def test_a_label_without_control_date_counts_from_a_day_after_filing():
    h = _history().assign(control_date=pd.NaT)
    filed = pd.Timestamp("2024-02-01")  # d2, A's fraud, counts from 2 Feb
    queries = h.iloc[[2, 2, 2]].assign(declaration_date=[filed + pd.Timedelta(days=1),
                                                         filed + pd.Timedelta(days=1, seconds=1), filed])
    p = _store(h).lookup(queries)
    assert_same(p, ProfileIndex(h).lookup(queries))
    assert p["importer_inspections"].tolist() == [1, 2, 1]
    assert_same(_store(h.drop(columns="control_date")).lookup(queries), p)


@pytest.mark.parametrize("unlabelled", [
    lambda h: h.assign(inspected=pd.array([0] * 5, dtype="Int8")),
    lambda h: h.assign(fraud=pd.array([pd.NA] * 5, dtype="Int8")),
])
def test_a_history_without_controls_has_no_rates(unlabelled):
    h = unlabelled(_history())
    p = _store(h).lookup(h)
    assert_same(p, ProfileIndex(h).lookup(h))
    assert p[[c for c in PROFILE_COLUMNS if "rate" in c]].isna().all().all()
    assert (p["importer_inspections"] == 0).all() and p["importer_volume"].tolist() == [0, 1, 2, 1, 0]
    # A history with no label columns at all (ProfileIndex needs `fraud`) reads as one without controls.
    assert_same(_store(h.drop(columns=["fraud", "revenue", "control_date"])).lookup(h), p)


def test_a_history_without_inspected_labels_by_fraud_alone():
    h = _history().drop(columns="inspected")
    assert_same(_store(h).lookup(h), ProfileIndex(h).lookup(h))


def test_an_entity_absent_from_the_queries_is_unknown():
    h = _history().assign(exporter_id=["X", "X", "Y", "Y", "X"])
    queries = h.drop(columns="exporter_id")
    p = _store(h).lookup(queries)
    assert_same(p, ProfileIndex(h).lookup(queries))
    assert p.filter(like="exporter").isna().all().all() and not p["importer_volume"].isna().any()
    assert _store(h.drop(columns="exporter_id")).lookup(h).filter(like="exporter").isna().all().all()


def test_missing_values_share_one_key():
    h = _history().assign(office_id=["CO-CTG", None, None, "CO-BUN", None])
    queries = h.iloc[[2]].assign(declaration_date=pd.Timestamp("2024-06-01"), office_id=[None])
    p = _store(h).lookup(queries)
    assert_same(p, ProfileIndex(h).lookup(queries))
    assert p.iloc[0]["lane_volume"] == 3  # d2, d3, d5: origin JP, office missing
    assert entity_keys(queries)["lane"][0] == f"JP|{MISSING}"
    assert _store(h).lookup(queries.assign(importer_id="C")).iloc[0]["importer_volume"] == 0  # never seen


def test_no_queries_give_an_empty_block():
    h = _history()
    p = _store(h).lookup(h.iloc[:0])
    assert list(p.columns) == PROFILE_COLUMNS and p.empty


def test_a_subset_of_entities_gives_those_entities_columns_exactly(history: pd.DataFrame, future: pd.DataFrame):
    """Scoring looks up only the entities its model reads (features/profiles.py `profile_entities`): each path, the
    index large and small, one row, and the store, gives the full lookup's values for those columns, and no other."""
    from features.entities import ENTITIES, entity_key
    from features.profiles import profile_columns, profile_entities, to_seconds

    names = profile_entities(["hs_code", "importer_heading_volume", "exporter_origin_hit_rate_90d", "office_id"])
    assert names == ("importer_heading", "exporter_origin")
    wanted = profile_columns(names)
    index = ProfileIndex(history)
    full = index.lookup(future)
    queries = pd.concat([future] * 12)  # past SORT_NEEDLES: the sorted path
    for subset in (index.lookup(future, names=names), index.lookup(queries, names=names).iloc[:len(future)],
                   _store(history).lookup(future, names=names)):
        assert list(subset.columns) == wanted
        pd.testing.assert_frame_equal(subset, full[wanted], check_exact=False, rtol=1e-12)
    row = future.iloc[7].where(future.iloc[7].notna(), None).to_dict()
    seconds = int(to_seconds(np.array([future["declaration_date"].iloc[7]]))[0])
    one = index.lookup_one({e.name: entity_key(row, e) for e in ENTITIES if e.name in names}, seconds, names)
    assert np.allclose(one, full[wanted].iloc[7].to_numpy(), equal_nan=True, rtol=1e-12)
    assert profile_entities(None) == tuple(e.name for e in ENTITIES) and profile_entities(["hs_code"]) == ()
