"""features/warehouse/oplog.py and the warehouse's copy of it (`Decisions.sync`): the journal keeps only what was
synced whole, releases what is copied, and the PostgreSQL log's copy misses no transaction that commits late."""
from __future__ import annotations

import os
from datetime import datetime

import psycopg
import pytest

from features.errors import UserError
from features.warehouse import Warehouse, open_log
from features.warehouse.oplog import Journal, PostgresLog

pytestmark = pytest.mark.integration


def _answer(batch: str, position: int = 0) -> dict:
    return {"batch_id": batch, "position": position, "decided_at": datetime(2026, 12, 4, 12, 0, position),
            "declaration_id": f"D-{batch}-{position}", "risk_score": 0.25, "expected_revenue": None, "lane": "green",
            "selected_by": "", "reasons": "a; b", "model_version": "3", "policy_hash": "p", "source": "api",
            "request_id": f"req-{batch}", "thresholds_batch_id": None, "reason_list": ["a", "b"],
            "contributions": [{"feature": "f", "family": "g", "value": "1", "contribution": 0.5}],
            "contribution_base": -2.0}


def _logged(warehouse: Warehouse) -> list[tuple]:
    with warehouse.connect(read_only=True) as con:
        return con.execute("SELECT batch_id, position, reason_list, contributions[1].contribution AS c "
                           "FROM decisions ORDER BY batch_id, position").fetchall()


def test_a_torn_last_line_was_never_synced_and_is_not_copied(tmp_path):
    journal = Journal(tmp_path / "journal")
    journal.append([_answer("a", 0), _answer("a", 1)])
    with journal._path.open("ab") as handle:  # a crash in the middle of the next write
        handle.write(b'{"batch_id": "b", "posi')
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    assert warehouse.decisions.sync(journal) == 2
    assert [(b, p) for b, p, *_ in _logged(warehouse)] == [("a", 0), ("a", 1)]
    assert _logged(warehouse)[0][2:] == (["a", "b"], 0.5)  # the lists and contributions as given


def test_the_copy_is_idempotent_and_releases_finished_segments_only(tmp_path):
    journal = Journal(tmp_path / "journal", segment_bytes=1)  # a new segment for every group
    for batch in ("a", "b", "c"):
        journal.append([_answer(batch)])
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    assert warehouse.decisions.sync(journal) == 3
    assert warehouse.decisions.sync(journal) == 0
    left = sorted(p.name for p in (tmp_path / "journal").iterdir())
    assert left == [journal._path.name]  # the closed segments are copied and gone; the open one stays
    journal.append([_answer("d")])
    assert warehouse.decisions.sync(journal) == 1
    journal.close()
    assert warehouse.decisions.sync(journal) == 0 and not list((tmp_path / "journal").iterdir())
    assert len(_logged(warehouse)) == 4


def test_a_copy_that_dies_before_releasing_its_segments_adds_nothing_twice(tmp_path, monkeypatch):
    journal = Journal(tmp_path / "journal")
    journal.append([_answer("a"), _answer("a", 1)])
    journal.close()
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")

    def crash(sources: list[str]) -> None:
        raise OSError("killed between the warehouse's commit and the file's removal")

    monkeypatch.setattr(journal, "forget", crash)
    with pytest.raises(OSError):
        warehouse.decisions.sync(journal)
    monkeypatch.undo()
    assert warehouse.decisions.sync(journal) == 0  # read again from its start: every row already there
    assert len(_logged(warehouse)) == 2 and not list((tmp_path / "journal").iterdir())


def test_a_segment_whose_writer_died_is_released_once_copied(tmp_path):
    journal = Journal(tmp_path / "journal")
    journal.append([_answer("a")])
    os.close(journal._fd)  # this process stands in for a writer killed before it closed its segment
    dead = journal._path.with_name(journal._path.name.replace(f"-{os.getpid()}-", "-999999999-"))
    journal._path.rename(dead)
    journal._fd = journal._path = None
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    assert warehouse.decisions.sync(journal) == 1 and not dead.exists()


def test_the_journals_fingerprint_changes_with_every_new_row_or_finished_segment_only(tmp_path):
    """The copier skips the warehouse while the fingerprint holds (serving/decision_copy.py)."""
    journal = Journal(tmp_path / "journal")
    assert journal.fingerprint() is None  # no folder yet: unknown, so copied
    journal.append([_answer("a")])
    first = journal.fingerprint()
    assert first is not None and journal.fingerprint() == first
    journal.append([_answer("b")])
    grown = journal.fingerprint()
    assert grown != first
    journal.close()  # its segment is finished: the copy can release it
    assert journal.fingerprint() not in (first, grown)
    assert PostgresLog("postgresql://u@localhost/db").fingerprint() is None


def test_postgres_late_commits_are_copied_by_the_next_sync(pg_url, tmp_path):
    """A transaction that took its sequence number first but commits after a later one is not skipped."""
    log = PostgresLog(pg_url)
    log.append([_answer("first")])  # creates the table
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with psycopg.connect(pg_url) as slow:
        slow.execute("INSERT INTO decisions (batch_id, position, decided_at, lane, policy_hash) "
                     "VALUES ('late', 0, now(), 'green', 'p')")  # open, not committed
        log.append([_answer("quick")])
        assert warehouse.decisions.sync(log) == 2  # first and quick; late is not visible yet
        slow.commit()
    assert warehouse.decisions.sync(log) == 1
    assert warehouse.decisions.sync(log) == 0
    assert sorted(b for b, *_ in _logged(warehouse)) == ["first", "late", "quick"]
    log.close()


def test_postgres_a_retried_group_adds_nothing(pg_url):
    log = PostgresLog(pg_url)
    group = [_answer("a", 0), _answer("a", 1)]
    log.append(group)
    log.append(group)
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == 2
        assert con.execute("SELECT contributions->0->>'feature' FROM decisions LIMIT 1").fetchone()[0] == "f"
    log.close()


def test_a_url_that_is_not_postgresql_is_refused(tmp_path):
    with pytest.raises(UserError, match="postgresql://"):
        open_log("mysql://host/db", tmp_path)
    assert "secret" not in PostgresLog("postgresql://aduana:secret@db:5432/ops").where


@pytest.mark.parametrize("store", ["journal", "postgres"])
def test_a_flow_reading_decisions_first_copies_every_answer_given(store, request, tmp_path):
    """The audit and the monitor call `sync_decisions`: answers the API logged but has not copied yet are read."""
    from flows.orchestration.runtime import Runtime
    from flows.settings import Settings

    ops_url = request.getfixturevalue("pg_url") if store == "postgres" else None
    rt = Runtime(Settings(home=tmp_path / "home", ops_url=ops_url))
    assert isinstance(rt.oplog, PostgresLog if ops_url else Journal)
    writer = open_log(ops_url, rt.settings.warehouse_path)  # an API worker's own handle
    writer.append([_answer("api-1"), _answer("api-1", 1)])
    assert rt.sync_decisions() == 2 and rt.sync_decisions() == 0
    assert len(_logged(rt.warehouse)) == 2
    writer.close()
