"""Storing batches in a real DuckDB warehouse: reconciliation, idempotency, atomicity, outcomes."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from features.errors import UserError
from features.intake.prepared import prepare_batch, reject_batch
from features.warehouse import Warehouse, WarehouseBusy, storing
from tests.conftest import write_csv


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse.duckdb")


def _messy(declarations: pd.DataFrame, tmp_path: Path) -> Path:
    """295 good rows, 5 bad ones, one exact repeat and one conflicting pair."""
    d = declarations.head(300).reset_index(drop=True).astype({"declared_value": object, "declaration_date": object})
    d.loc[0, "hs_code"] = "12"
    d.loc[1, "declared_value"] = "lots"
    d.loc[2, "origin_country"] = "QQ"
    d.loc[3, "declaration_date"] = "not a date"
    d.loc[4, "importer_id"] = None
    repeat = d.iloc[[10]]
    clash = d.iloc[[11]].assign(declared_value=1.0)
    return write_csv(tmp_path / "declarations.csv", pd.concat([d, repeat, clash], ignore_index=True))


def test_counts_reconcile_and_each_quarantined_row_has_a_reason(world, tmp_path, warehouse):
    summary = warehouse.store(prepare_batch(_messy(world.declarations, tmp_path)))
    assert summary.read == 302
    assert summary.duplicates == 1
    assert summary.quarantined == 5 + 2  # bad rows + both sides of the conflicting id
    assert summary.stored == 302 - 1 - 7
    assert summary.reconciles
    q = warehouse.read("SELECT * FROM quarantine ORDER BY row_number")
    assert q["reason"].tolist()[:5] == ["invalid_hs_code", "invalid_type", "invalid_country_code", "invalid_date",
                                        "missing_required"]
    assert (q["message"].str.len() > 10).all()
    assert q["raw"].str.startswith("{").all()
    assert summary.reasons["duplicate_id"] == 2
    assert warehouse.counts()["declarations"] == summary.stored


def test_ingesting_the_same_file_twice_adds_nothing(world, tmp_path, warehouse):
    path = _messy(world.declarations, tmp_path)
    warehouse.store(prepare_batch(path))
    before = warehouse.counts()
    again = warehouse.store(prepare_batch(path))
    after = warehouse.counts()
    assert again.stored == 0 and again.quarantined == 0
    assert again.duplicates == again.read
    assert {k: v for k, v in after.items() if k != "ingest_batches"} == \
        {k: v for k, v in before.items() if k != "ingest_batches"}


def test_the_same_rows_from_csv_and_parquet_are_duplicates(world, tmp_path, warehouse):
    rows = world.declarations.head(50)
    warehouse.store(prepare_batch(write_csv(tmp_path / "declarations.csv", rows)))
    rows.to_parquet(tmp_path / "declarations.parquet", index=False)
    again = warehouse.store(prepare_batch(tmp_path / "declarations.parquet"))
    assert again.duplicates == 50 and again.stored == 0


def test_a_changed_declaration_is_quarantined_not_overwritten(world, tmp_path, warehouse):
    rows = world.declarations.head(20)
    warehouse.store(prepare_batch(write_csv(tmp_path / "declarations.csv", rows)))
    changed = rows.assign(declared_value=rows["declared_value"] + 1)
    summary = warehouse.store(prepare_batch(write_csv(tmp_path / "declarations_v2.csv", changed)))
    assert summary.quarantined == 20 and summary.reasons == {"duplicate_id": 20}
    stored = warehouse.read("SELECT declared_value FROM declarations ORDER BY declaration_id")
    assert stored["declared_value"].tolist() == pytest.approx(rows.sort_values("declaration_id")["declared_value"].tolist())


@pytest.mark.parametrize("failing_step", ["quarantine", "record_batch"])
def test_a_failure_mid_way_leaves_the_warehouse_as_it_was(world, tmp_path, warehouse, monkeypatch, failing_step):
    warehouse.store(prepare_batch(write_csv(tmp_path / "declarations_first.csv", world.declarations.head(100))))
    before = warehouse.counts()
    batch = prepare_batch(_messy(world.declarations.iloc[100:], tmp_path))

    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(storing, failing_step, crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        warehouse.store(batch)
    assert warehouse.counts() == before


def test_outcomes_relabel_stored_declarations(world, tmp_path, warehouse):
    rows = world.declarations.head(40).copy()
    rows[["inspected", "fraud", "revenue", "critical", "control_date"]] = None
    rows["inspected"] = 0
    warehouse.store(prepare_batch(write_csv(tmp_path / "declarations.csv", rows)))
    outcomes = pd.DataFrame({
        "declaration_id": list(rows["declaration_id"].head(3)) + ["D-UNKNOWN"],
        "fraud": [1, 0, 1, 1],
        "revenue": [1500.0, 0.0, 80.0, 5.0],
        "control_date": ["2024-12-30"] * 4,
    })
    path = write_csv(tmp_path / "outcomes.csv", outcomes)
    summary = warehouse.store(prepare_batch(path))
    assert (summary.stored, summary.updated, summary.quarantined, summary.duplicates) == (3, 3, 1, 0)
    assert summary.reasons == {"unknown_declaration": 1}
    labels = warehouse.read(
        "SELECT declaration_id, inspected, fraud, revenue, label_batch_id FROM declarations "
        "WHERE fraud IS NOT NULL ORDER BY declaration_id")
    assert labels["inspected"].tolist() == [1, 1, 1]
    assert sorted(labels["fraud"].tolist()) == [0, 1, 1]
    assert (labels["label_batch_id"] == summary.batch_id).all()
    again = warehouse.store(prepare_batch(path))
    assert (again.stored, again.quarantined, again.duplicates) == (0, 0, 4)


def test_an_outcome_is_checked_as_the_declaration_it_would_leave(world, tmp_path, warehouse):
    # Given stored declarations, among them one never inspected and one found a critical fraud with revenue
    rows = world.declarations.head(2000)
    warehouse.store(prepare_batch(write_csv(tmp_path / "declarations.csv", rows)))
    plain = rows[rows["inspected"] == 0].iloc[0]
    found = rows[(rows["critical"] == 1) & (rows["revenue"] > 0)].iloc[0]
    before = (plain["declaration_date"] - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    # When outcomes arrive that are consistent on their own but not with what is stored: a control dated before the
    # filing, a fraud=0 under the stored revenue and critical flag, a fraud=0 that clears only the revenue; and
    # one that clears every finding
    path = tmp_path / "outcomes.csv"
    path.write_text(f"declaration_id,fraud,inspected,control_date\n{plain['declaration_id']},1,1,{before}\n")
    dated = warehouse.store(prepare_batch(path, kind="outcomes"))
    path.write_text(f"declaration_id,fraud\n{found['declaration_id']},0\n")
    cleared = warehouse.store(prepare_batch(path, kind="outcomes"))
    path.write_text(f"declaration_id,fraud,revenue\n{found['declaration_id']},0,0\n")
    half = warehouse.store(prepare_batch(path, kind="outcomes"))
    path.write_text(f"declaration_id,fraud,revenue,critical\n{found['declaration_id']},0,0,0\n")
    whole = warehouse.store(prepare_batch(path, kind="outcomes"))
    # Then the first three are quarantined with the declarations contract's reason and message, and only the last
    # relabels; every count reconciles
    for refused in (dated, cleared, half):
        assert (refused.stored, refused.updated, refused.quarantined) == (0, 0, 1) and refused.reconciles
        assert refused.reasons == {"inconsistent_labels": 1}
    assert (whole.stored, whole.updated, whole.quarantined) == (1, 1, 0)
    q = warehouse.read("SELECT message FROM quarantine WHERE reason = 'inconsistent_labels' ORDER BY quarantined_at")
    revenue = float(found["revenue"])
    assert q["message"].tolist() == [
        f"inconsistent labels: control_date {before} before declaration_date {plain['declaration_date']:%Y-%m-%d}",
        f"inconsistent labels: revenue {revenue} > 0 but fraud=0; critical=1 but fraud=0",
        "inconsistent labels: critical=1 but fraud=0"]
    unlabelled = warehouse.declaration(plain["declaration_id"])
    assert unlabelled["inspected"] == 0 and pd.isna(unlabelled["fraud"]) and pd.isna(unlabelled["control_date"])
    stored = warehouse.declaration(found["declaration_id"])
    assert (stored["fraud"], stored["revenue"], stored["critical"]) == (0, 0, 0)


def test_a_newer_registry_snapshot_updates_traders(world, tmp_path, warehouse):
    traders = world.traders.head(30)
    warehouse.store(prepare_batch(write_csv(tmp_path / "traders.csv", traders)))
    newer = traders.assign(aeo_certified=1 - traders["aeo_certified"])
    newer = pd.concat([newer, world.traders.iloc[30:32]])
    summary = warehouse.store(prepare_batch(write_csv(tmp_path / "traders_v2.csv", newer)))
    assert (summary.stored, summary.updated, summary.duplicates) == (32, 30, 0)
    stored = warehouse.read("SELECT aeo_certified FROM traders ORDER BY importer_id")
    assert stored["aeo_certified"].head(30).tolist() == newer.sort_values("importer_id")["aeo_certified"].head(30).tolist()
    assert warehouse.counts()["traders"] == 32


def test_a_rejected_batch_goes_to_quarantine_whole(world, tmp_path, warehouse):
    batch = reject_batch(prepare_batch(write_csv(tmp_path / "declarations.csv", world.declarations.head(25))),
                         "critical: expect_column_median_to_be_between on declared_value")
    summary = warehouse.store(batch, expectations_passed=False)
    assert (summary.stored, summary.quarantined) == (0, 25)
    assert summary.reasons == {"batch_rejected": 25}
    log = warehouse.read("SELECT expectations_passed FROM ingest_batches")
    assert log["expectations_passed"].tolist() == [False]


def test_two_homes_never_interfere(world, tmp_path):
    a, b = Warehouse(tmp_path / "a" / "w.duckdb"), Warehouse(tmp_path / "b" / "w.duckdb")
    a.store(prepare_batch(write_csv(tmp_path / "declarations.csv", world.declarations.head(10))))
    assert a.counts()["declarations"] == 10
    assert b.counts()["declarations"] == 0


HOLD = ("import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
        "print('held', flush=True); time.sleep(float(sys.argv[3]))")


@contextmanager
def _held_by_another_process(path: Path, seconds: float, read_only: bool = False) -> Iterator[None]:
    """Another process opens the warehouse file (writing, or read-only) and keeps it for `seconds`."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), "ro" if read_only else "rw", str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def small_batch(world, tmp_path):
    return prepare_batch(write_csv(tmp_path / "declarations.csv", world.declarations.head(10)))


def test_a_store_waits_for_another_process_to_let_go_and_then_succeeds(tmp_path, warehouse, small_batch):
    # Given a warehouse that another process holds open for writing for about 2 s
    with warehouse.connect():
        pass
    with _held_by_another_process(warehouse.path, 2.0):
        # When a batch is stored meanwhile
        started = time.monotonic()
        summary = warehouse.store(small_batch)
        # Then the store waited for the file, and then stored every row
        assert time.monotonic() - started > 1.0
    assert summary.stored == 10 and summary.reconciles
    assert warehouse.counts()["declarations"] == 10


def test_a_warehouse_busy_past_the_wait_is_a_distinct_error_and_changes_nothing(tmp_path, small_batch):
    # Given a warehouse with one stored batch, held by another process longer than our wait allows
    path = tmp_path / "w.duckdb"
    Warehouse(path).store(small_batch)
    before = Warehouse(path).counts()
    with _held_by_another_process(path, 5.0):
        # When a store allowed to wait 0.5 s is attempted
        started = time.monotonic()
        with pytest.raises(WarehouseBusy) as info:
            Warehouse(path, busy_wait=0.5).store(small_batch)
        waited = time.monotonic() - started
    # Then it gave up after about the wait, with an error that names the file and says to retry (not bad input)
    assert 0.4 < waited < 3.0
    assert not isinstance(info.value, UserError)
    assert str(path) in str(info.value) and "busy" in str(info.value) and "Retry" in str(info.value)
    assert Warehouse(path).counts() == before


def test_readers_share_the_warehouse_with_another_reader(tmp_path, small_batch):
    path = tmp_path / "w.duckdb"
    Warehouse(path).store(small_batch)
    with _held_by_another_process(path, 3.0, read_only=True):
        started = time.monotonic()
        assert Warehouse(path, busy_wait=0.5).counts()["declarations"] == 10
        assert time.monotonic() - started < 1.0


def test_a_reader_waits_while_another_thread_of_this_process_writes(tmp_path, small_batch):
    # Given a warehouse another thread of this process (the API's decision-log copier, say) holds open for writing
    path = tmp_path / "w.duckdb"
    Warehouse(path).store(small_batch)
    opened, release = threading.Event(), threading.Event()

    def hold() -> None:
        with Warehouse(path).connect():
            opened.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert opened.wait(10)
        threading.Timer(1.0, release.set).start()
        # When this thread reads meanwhile
        started = time.monotonic()
        counts = Warehouse(path, busy_wait=5.0).counts()
        # Then it waited for the writer to let go (DuckDB refuses the other mode within a process), then read
        assert time.monotonic() - started > 0.5 and counts["declarations"] == 10
    finally:
        release.set()
        holder.join()
    # and past its wait it is told the warehouse is busy, not a connection error
    opened.clear()
    release.clear()
    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert opened.wait(10)
        with pytest.raises(WarehouseBusy, match="another thread of this process has it open"):
            Warehouse(path, busy_wait=0.3).counts()
    finally:
        release.set()
        holder.join()


def test_ratings_counted_by_the_warehouse_are_those_of_every_row_in_pandas(world, tmp_path, warehouse):
    from serving.entity_ratings import counted_columns, rate_counts, rate_entities

    warehouse.store(prepare_batch(write_csv(tmp_path / "declarations.csv", world.declarations.head(5_000))))
    stored = warehouse.table("declarations")
    for entity in ("importer", "hs_heading", "lane", "importer_heading"):
        counted = rate_counts(warehouse.entity_counts(counted_columns(entity)), entity, 2)
        pd.testing.assert_frame_equal(counted, rate_entities(stored, entity, 2), check_exact=True)
        assert len(counted) > 3
