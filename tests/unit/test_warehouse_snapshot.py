"""Refreshing (features/warehouse/snapshot.py): a value read from the warehouse is re-read when due, only when its
version changed, and kept while the warehouse is busy."""
from __future__ import annotations

import threading

import pytest

from features.warehouse import Refreshing, Warehouse, WarehouseBusy


class Source:
    """A read that counts its calls, returns `value` and raises WarehouseBusy while `busy`."""

    def __init__(self):
        self.value, self.version, self.busy, self.reads = "first", 1, False, 0

    def read(self, warehouse: Warehouse) -> str:
        if self.busy:
            raise WarehouseBusy(warehouse.path, 0.2, "4242")
        self.reads += 1
        return self.value

    def current(self, warehouse: Warehouse) -> int:
        if self.busy:
            raise WarehouseBusy(warehouse.path, 0.2, "4242")
        return self.version


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


def test_before_any_value_a_busy_warehouse_gives_none_and_require_raises_its_error(warehouse):
    source = Source()
    source.busy = True
    refreshing = Refreshing(source.read)
    assert refreshing.get(warehouse, max_age=60) is None
    assert not refreshing.held and refreshing.error.startswith("WarehouseBusy: warehouse")
    with pytest.raises(WarehouseBusy):
        refreshing.require(warehouse, max_age=60)


def test_a_value_is_read_again_only_when_due_and_its_version_changed(warehouse):
    source = Source()
    refreshing = Refreshing(source.read, build=str.upper, version=source.current)
    assert refreshing.get(warehouse, max_age=60) == "FIRST" and refreshing.read_at is not None
    source.value = "second"
    assert refreshing.get(warehouse, max_age=60) == "FIRST"  # not due
    assert refreshing.get(warehouse, max_age=0) == "FIRST" and source.reads == 1  # due, same version: not read
    source.version = 2
    assert refreshing.get(warehouse, max_age=0) == "SECOND" and source.reads == 2


def test_a_busy_warehouse_keeps_the_last_value_and_says_why_until_a_read_succeeds(warehouse):
    source = Source()
    refreshing = Refreshing(source.read, version=source.current)
    refreshing.get(warehouse, max_age=0)
    source.busy, source.value, source.version = True, "second", 2
    assert refreshing.require(warehouse, max_age=0) == "first"
    assert "held by process 4242" in refreshing.error
    source.busy = False
    assert refreshing.get(warehouse, max_age=0) == "second" and refreshing.error is None


def test_a_value_put_by_hand_stands_until_its_version_changes(warehouse):
    source = Source()
    refreshing = Refreshing(source.read, version=source.current)
    refreshing.put("pinned", version=1)
    assert refreshing.get(warehouse, max_age=0) == "pinned" and source.reads == 0
    source.version = 2
    assert refreshing.get(warehouse, max_age=0) == "first"


def test_a_refresh_started_on_another_thread_is_waited_for_and_read_once(warehouse):
    source, started, let_go = Source(), threading.Event(), threading.Event()
    slow = lambda w: (started.set(), let_go.wait(10), source.read(w))[-1]  # noqa: E731
    refreshing = Refreshing(slow)
    assert refreshing.start(warehouse)
    assert started.wait(10) and not refreshing.start(warehouse)  # one refresh at a time
    threading.Timer(0.2, let_go.set).start()
    assert refreshing.get(warehouse, max_age=60) == "first" and source.reads == 1  # waited for it, no read of its own
    assert not refreshing.start(warehouse)  # a value held: nothing started


def test_a_refresh_on_another_thread_that_fails_leaves_the_next_get_to_read_again(warehouse):
    source = Source()
    source.busy = True
    refreshing = Refreshing(source.read)
    assert refreshing.start(warehouse)
    assert refreshing.get(warehouse, max_age=60) is None  # waited for the failed one, then failed itself
    assert refreshing.error.startswith("WarehouseBusy")
    source.busy = False
    assert refreshing.start(warehouse) and refreshing.require(warehouse, max_age=60) == "first"


def test_stored_in_marks_each_id_the_snapshot_holds_in_the_ids_order_repeats_included(tmp_path):
    import numpy as np
    import pandas as pd

    from features.warehouse.partition_context import stored_in

    path = tmp_path / "declarations.parquet"
    pd.DataFrame({"declaration_id": ["a", "b", "b", "c"], "x": [1, 2, 3, 4]}).to_parquet(path)
    ids = pd.Series(["z", "b", "a", "y", "b", "c"])
    assert stored_in(str(path), ids).tolist() == [False, True, True, False, True, True]
    assert stored_in(str(path), pd.Series([], dtype="str")).dtype == np.bool_


def test_a_read_of_many_rows_holds_each_column_in_one_chunk():
    """DuckDB gives a large result in chunks (about 120k rows each); the frame holds each column in one."""
    import duckdb
    import pandas as pd

    from features.warehouse.reads import as_duckdb_gives

    con = duckdb.connect()
    sql = "SELECT 'D' || i AS text, i * 1.5 AS amount, (i % 3)::TINYINT AS flag FROM range(400000) t(i)"
    assert con.sql(sql).to_arrow_table().column("text").num_chunks > 1
    frame = as_duckdb_gives(con, sql)
    pd.testing.assert_frame_equal(frame, con.execute(sql).df(), check_exact=True)
    assert frame["text"].array.__arrow_array__().num_chunks == 1
    con.close()


@pytest.mark.parametrize("where", ["", "WHERE false"], ids=["rows", "no-rows"])
def test_a_read_through_arrow_gives_the_frame_duckdbs_own_conversion_gives(where):
    import duckdb
    import pandas as pd

    from features.warehouse.reads import as_duckdb_gives

    con = duckdb.connect()
    con.execute("""CREATE TABLE t AS SELECT * FROM (VALUES
        ('a', DATE '2024-01-02', TIMESTAMP '2024-01-02 03:04:05', 1::TINYINT, NULL::TINYINT, 5::BIGINT, 1.5, true),
        (NULL, NULL, NULL, 2::TINYINT, 1::TINYINT, NULL::BIGINT, NULL, false))
        AS v(text, day, moment, flag, outcome, count, amount, yes)""")
    sql = f"SELECT * FROM t {where}"
    pd.testing.assert_frame_equal(as_duckdb_gives(con, sql), con.execute(sql).df(), check_exact=True)
    listed = f"SELECT text, [1, 2] AS items FROM t {where}"  # a kind it does not convert: DuckDB's own
    pd.testing.assert_frame_equal(as_duckdb_gives(con, listed), con.execute(listed).df())
    con.close()
