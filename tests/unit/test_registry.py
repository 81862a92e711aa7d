"""The promotions log survives a torn line: each record is one whole line, a torn one is skipped with a warning
that names it, and the next record starts on a line of its own."""
from __future__ import annotations

import json
import logging

from training import registry


def _record(version: str) -> dict:
    return {"action": "promote", "version": version, "previous": None, "by": "analyst", "reason": "reviewed"}


def test_a_torn_last_line_is_skipped_with_its_line_number_and_the_next_record_is_its_own_line(tmp_path, caplog):
    log = tmp_path / "registry" / "promotions.jsonl"
    registry.append_promotion(log, _record("1"))
    registry.append_promotion(log, _record("2"))
    whole = log.read_bytes()
    log.write_bytes(whole + b'{"at": "2026-01-02T03:04:05+00:00", "action": "prom')  # a crash mid-write

    with caplog.at_level(logging.WARNING, logger="aduana.registry"):
        assert [r["version"] for r in registry.read_promotions(log)] == ["1", "2"]
    assert [r.getMessage() for r in caplog.records] == [
        f"promotions log {log}: line 3 is not a whole record (torn or edited); skipped"]

    registry.append_promotion(log, _record("3"))  # `aduana promote` goes on working after the tear
    lines = log.read_bytes().split(b"\n")
    assert lines[2] == b'{"at": "2026-01-02T03:04:05+00:00", "action": "prom'  # left as it was, not glued to
    assert json.loads(lines[3])["version"] == "3" and lines[4] == b""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aduana.registry"):
        assert [r["version"] for r in registry.read_promotions(log)] == ["1", "2", "3"]
    assert "line 3 " in caplog.records[0].getMessage()


def test_lines_that_are_json_but_no_record_are_skipped_too(tmp_path, caplog):
    log = tmp_path / "promotions.jsonl"
    log.write_bytes(b'[1, 2]\n{"action": "promote"}\n\n\xff\n')  # not a record, a record's part, not UTF-8
    registry.append_promotion(log, _record("4"))
    with caplog.at_level(logging.WARNING, logger="aduana.registry"):
        assert [r["version"] for r in registry.read_promotions(log)] == ["4"]
    assert [m.getMessage().split(": ")[1] for m in caplog.records] == [
        "line 1 is not a whole record (torn or edited); skipped", "line 2 is not a whole record (torn or edited); skipped",
        "line 4 is not a whole record (torn or edited); skipped"]


def test_a_record_is_written_with_one_write_on_an_appending_descriptor(tmp_path, monkeypatch):
    log = tmp_path / "promotions.jsonl"
    log.write_text(json.dumps({"at": "x", **_record("1")}) + "\n")
    writes, opened = [], []
    open_, write = registry.os.open, registry.os.write
    monkeypatch.setattr(registry.os, "open", lambda path, flags, mode=0o777: opened.append(flags) or open_(path, flags, mode))
    monkeypatch.setattr(registry.os, "write", lambda fd, data: writes.append(data) or write(fd, data))
    registry.append_promotion(log, _record("2"))
    assert len(writes) == 1 and writes[0].endswith(b"\n") and json.loads(writes[0])["version"] == "2"
    assert opened[0] & registry.os.O_APPEND
