"""Concurrent ingests into one home take turns: two processes run the ingest flow at the same moment, ten times.

Each process is spawned (a fresh interpreter, as a second `aduana ingest` is) and runs customs-ingest against the
session's Prefect API; a barrier starts the two files of each pair together. CLI runs would cost seconds each in
imports alone, so the flow's Python entry stands in for them (the CLI turns IngestBusy into exit 75, as any
WarehouseBusy).
"""
from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

import flows.ingest
from features.warehouse import IngestBusy, Warehouse, WarehouseBusy, ingest_turn
from flows.settings import Settings

pytestmark = pytest.mark.integration

PAIRS = 10
ROWS = 40  # declarations per file


def ingest_each(paths: list[str], barrier, results) -> None:  # noqa: ANN001 - multiprocessing objects
    """In a spawned process (the test's environment: its home, its Prefect API): ingest each file through the flow
    when the pair's other process starts its own, and report what happened and when this run held the home (its
    dataset-level check's start to its store's end)."""
    held: dict[str, float] = {}
    check_batch, store = flows.ingest.check_batch, Warehouse.store

    def timed_check(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        held["from"] = time.time()
        return check_batch(*args, **kwargs)

    def timed_store(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return store(*args, **kwargs)
        finally:
            held["until"] = time.time()

    flows.ingest.check_batch, Warehouse.store = timed_check, timed_store
    for path in paths:
        held.clear()
        barrier.wait(timeout=300)
        try:
            [summary] = flows.ingest.customs_ingest([path], kind="declarations")
            results.put({"path": path, "summary": summary, **held})
        except Exception as exc:  # noqa: BLE001 - what the CLI would turn into an exit code is the result
            results.put({"path": path, "error": f"{type(exc).__name__}: {exc}", "busy": isinstance(exc, WarehouseBusy)})


def test_ten_pairs_of_concurrent_ingests_take_turns_and_none_crashes(prefect_api, world, home, tmp_path,
                                                                     monkeypatch):
    # given 20 files of distinct declarations, two per pair
    files = tmp_path / "files"
    files.mkdir()
    paths = []
    for i in range(2 * PAIRS):
        path = files / f"declarations_{i:02d}.csv"
        world.declarations.iloc[i * ROWS:(i + 1) * ROWS].to_csv(path, index=False, date_format="%Y-%m-%d")
        paths.append(str(path))
    # when two processes ingest them into one home, each pair's two files at the same moment
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)  # read when a spawned process imports Prefect
    monkeypatch.setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(2), spawn.Queue()
    started = time.monotonic()
    workers = [spawn.Process(target=ingest_each, args=(paths[side::2], barrier, results))
               for side in (0, 1)]
    for w in workers:
        w.start()
    runs = [results.get(timeout=600) for _ in paths]
    for w in workers:
        w.join(timeout=60)
    took = time.monotonic() - started
    # then no run crashed: each stored its whole file, or found the home busy past its wait (the CLI's exit 75)
    crashed = [r for r in runs if "error" in r and not r["busy"]]
    assert crashed == [], crashed
    by_path = {r["path"]: r for r in runs}
    stored = [r["summary"] for r in runs if "summary" in r]
    assert all(s["stored"] == ROWS and s["reconciles"] for s in stored), stored
    # and counts reconcile: the warehouse holds exactly the stored files' rows, one batch each
    counts = Warehouse(Settings().warehouse_path).counts()
    assert counts["declarations"] == ROWS * len(stored) and counts["ingest_batches"] == len(stored)
    assert len(stored) == 2 * PAIRS  # the default wait outlasts a small file's ingest: every run had its turn
    # and the two runs of a pair never held the home at once (each checked and stored while the other waited)
    for a, b in zip(paths[0::2], paths[1::2], strict=True):
        first, second = sorted((by_path[a], by_path[b]), key=lambda r: r["from"])
        assert first["until"] <= second["from"], (first, second)
    print(f"{PAIRS} concurrent pairs in {took:.1f} s")


def test_an_ingest_that_waits_past_its_turn_is_busy_and_loses_nothing(prefect_api, world, home, tmp_path,
                                                                       monkeypatch):
    # given another process's ingest holding the home's turn, and a run allowed to wait one second for it
    lock = Settings().locks_dir / "ingest.lock"
    path = tmp_path / "declarations.csv"
    world.declarations.head(ROWS).to_csv(path, index=False, date_format="%Y-%m-%d")
    monkeypatch.setattr(flows.ingest, "INGEST_TURN_WAIT", 1.0)
    said = []
    monkeypatch.setattr(flows.ingest, "progress", said.append)
    spawn = multiprocessing.get_context("spawn")
    holding, release = spawn.Event(), spawn.Event()
    holder = spawn.Process(target=hold_turn, args=(str(lock), holding, release))
    holder.start()
    try:
        assert holding.wait(timeout=60)
        # when the file is ingested meanwhile
        with pytest.raises(IngestBusy) as busy:
            flows.ingest.customs_ingest([str(path)])
    finally:
        release.set()
        holder.join(timeout=60)
    # then it gave up with the error the CLI turns into exit 75 (a busy warehouse: retry later), naming the holder,
    # after saying once that it waited
    assert isinstance(busy.value, WarehouseBusy)
    assert f"(process {holder.pid})" in str(busy.value) and "Retry" in str(busy.value)
    assert [line for line in said if "waiting" in line] == [
        f"declarations.csv: waiting for another ingest into this home to finish (process {holder.pid}), at most 1 s"]
    # and it stored nothing; once the holder is gone, the same file goes in whole
    assert Warehouse(Settings().warehouse_path).counts()["declarations"] == 0
    [summary] = flows.ingest.customs_ingest([str(path)])
    assert summary["stored"] == ROWS and summary["reconciles"]


def hold_turn(lock: str, holding, release) -> None:  # noqa: ANN001 - multiprocessing events
    """In a spawned process: hold the home's ingest turn until released."""
    with ingest_turn(Path(lock), 10.0):
        holding.set()
        release.wait(timeout=120)
