"""Ingest in chunks (features/intake/prepared.py, staging.py; ADUANA_INGEST_CHUNK_ROWS): a file read, checked,
sampled and stored 97 rows at a time gives what the whole file at once gives, and stays atomic."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.errors import UserError
from features.intake.mapping import ColumnMapping
from features.intake.prepared import prepare_batch
from features.intake.reader import read_chunks, read_rows
from features.warehouse import Warehouse, storing
from flows import ingest
from flows.orchestration.runtime import Runtime
from flows.settings import Settings
from tests.conftest import write_csv

pytestmark = pytest.mark.integration

CHUNK = 97


def _messy(world, folder: Path, fmt: str = "csv") -> Path:
    """About 1,000 declarations: bad rows, exact repeats and clashing ids on both sides of chunk borders, a bad row
    twice, values beyond the batch's own per-row bounds, a value over two lines, a malformed line mid-file and one
    last (CSV only)."""
    d = world.declarations.head(1000).reset_index(drop=True).astype(
        {"declared_value": object, "declaration_date": object, "hs_code": object, "importer_id": object})
    d.loc[3, "hs_code"] = "12"
    d.loc[150, "declared_value"] = "lots"
    d.loc[404, "origin_country"] = "QQ"
    d.loc[700, "declaration_date"] = "not a date"
    d.loc[888, "importer_id"] = None
    d.loc[42, "importer_id"] = "IMP\n42"
    d.loc[[20, 21], "net_mass_kg"] = [1e12, 5e11]
    d.loc[600, "declared_value"] = 9e13
    d.loc[[601, 602], "declaration_date"] = ["1971-01-01", "1972-01-01"]
    repeat, clash = d.iloc[[10, 95, 190, 500]], d.iloc[[11, 96, 300]].assign(declared_value=1.0)
    frame = pd.concat([d.iloc[:97], repeat.iloc[:1], d.iloc[97:400], clash, repeat.iloc[1:], d.iloc[400:],
                       d.iloc[[150]]], ignore_index=True)
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        path = folder / "declarations.parquet"
        pq.write_table(pa.Table.from_pandas(frame.astype("string"), preserve_index=False), path, row_group_size=250)
        return path
    path = write_csv(folder / "declarations.csv", frame)
    lines = path.read_text().split("\n")
    lines.insert(250, "D-MALFORMED,2024-01-01,IMP1")
    path.write_text("\n".join(lines[:-1] + ["D-LAST,2024-01-01", ""]))
    return path


def _outcome(home: Path, path: Path, chunk_rows: int | None, sample_rows: int = 300) -> dict:
    """The ingest flow's three tasks on one file into a fresh home: staged in chunks of `chunk_rows`, or (None) read
    whole in memory as before chunks. What they report and what the warehouse then holds."""
    rt = Runtime(Settings(home=home, gx_sample_rows=sample_rows))
    staging = str(home / ingest.STAGING) if chunk_rows else None
    batch = ingest.validate_rows.fn(str(path), None, None, staging, chunk_rows)
    report = ingest.validate_batch.fn(rt, batch)
    summary = ingest.store_batch.fn(rt, batch, report)
    batch.discard()
    warehouse = Warehouse(rt.settings.warehouse_path)
    return {
        "summary": {k: v for k, v in summary.to_dict().items() if k != "batch_id"},
        "report": (report.passed, report.failures, report.skipped, report.evaluated_rows, report.profile),
        "declarations": warehouse.read("SELECT * EXCLUDE (batch_id, ingested_at) FROM declarations ORDER BY ALL"),
        "quarantine": warehouse.read("SELECT * EXCLUDE (batch_id, quarantined_at) FROM quarantine ORDER BY ALL"),
        "batches": warehouse.read("SELECT * EXCLUDE (batch_id, started_at, finished_at) FROM ingest_batches"),
        "profiles": warehouse.read("SELECT profile FROM batch_profiles")["profile"].tolist(),
    }


def _same(chunked: dict, whole: dict) -> None:
    for key, value in whole.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(chunked[key], value, obj=key)
        else:
            assert chunked[key] == value, key


def test_chunks_are_the_whole_files_rows_with_their_positions(world, tmp_path):
    # Given a CSV with malformed lines (one mid-file, one last) and a value over two lines
    path = _messy(world, tmp_path)
    whole = read_rows(path)
    for rows in (1, 7, CHUNK):
        # When it is read a few rows at a time
        chunks = list(read_chunks(path, rows))
        # Then every chunk holds rows (at most that many), and together they are the file read whole
        assert all(0 < len(c.frame) <= rows for c in chunks)
        pd.testing.assert_frame_equal(pd.concat([c.frame for c in chunks]), whole.frame, check_index_type=False)
        malformed = pd.concat([c.malformed for c in chunks], ignore_index=True)
        pd.testing.assert_frame_equal(malformed, whole.malformed, check_dtype=False)
    assert whole.malformed["line"].tolist() == [251, path.read_text().count("\n")]  # as inserted: line 251, the last


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_file_ingested_in_chunks_is_stored_as_it_is_whole(world, tmp_path, fmt):
    # Given a messy file, and a sample of 300 rows for the dataset-level expectations
    path = _messy(world, tmp_path / "landing", fmt)
    # When it is ingested 97 rows at a time, and at once as before
    chunked = _outcome(tmp_path / "chunked", path, CHUNK)
    whole = _outcome(tmp_path / "whole", path, None)
    # Then the counts, the expectations (same sample, same rows beyond a bound, same profile), the stored rows, the
    # quarantine and the batch's record are the same
    _same(chunked, whole)
    summary = whole["summary"]
    assert summary["reconciles"] and summary["duplicates"] >= 5 and summary["reasons"]["duplicate_id"] == 6
    assert ("malformed_row" in summary["reasons"]) == (fmt == "csv")
    assert whole["report"][3] > 300 and any("every row checked" in f for f in whole["report"][1])


def test_the_mappings_conversions_add_up_over_chunks(world, tmp_path):
    # Given an export with a decimal comma, percent rates and recoded transport modes
    frame = world.declarations.head(300).rename(columns={"declared_value": "valor", "tax_rate": "tasa"})
    frame["valor"] = frame["valor"].map(lambda v: f"{v:.2f}".replace(".", ","))
    frame["tasa"] = (frame["tasa"] * 100).map(lambda v: f"{v:.1f}".replace(".", ","))
    path = tmp_path / "declarations.csv"
    frame.to_csv(path, index=False, sep=";", date_format="%Y-%m-%d")
    mapping = ColumnMapping(columns={"declared_value": "valor", "tax_rate": "tasa"}, decimal=",", delimiter=";",
                            units={"tax_rate": "percent"}, values={"transport_mode": {"sea": "maritime", "x": "y"}})
    # When it is prepared 7 rows at a time and at once
    chunked = prepare_batch(path, mapping=mapping, folder=tmp_path / "staging", chunk_rows=7)
    whole = prepare_batch(path, mapping=mapping)
    # Then the conversions count every row of the file, and the rows are the same
    assert chunked.conversions == whole.conversions
    assert whole.conversions[0].startswith("transport_mode: recoded sea → maritime on ")
    assert whole.conversions[0].endswith("x → y on 0 rows")
    pd.testing.assert_frame_equal(chunked.valid, whole.valid)
    pd.testing.assert_frame_equal(chunked.rejected, whole.rejected)
    chunked.discard()


def test_a_failure_in_a_later_chunk_leaves_the_warehouse_as_it_was(world, tmp_path, monkeypatch):
    # Given a warehouse holding a first file, and a messy file prepared 97 rows at a time
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    warehouse.store(prepare_batch(write_csv(tmp_path / "declarations_first.csv", world.declarations.iloc[5000:5100])))

    def tables() -> dict[str, pd.DataFrame]:
        return {t: warehouse.read(f"SELECT * FROM {t} ORDER BY ALL") for t in ("declarations", "quarantine",
                                                                               "ingest_batches", "batch_profiles")}

    before = tables()
    batch = prepare_batch(_messy(world, tmp_path / "landing"), folder=tmp_path / "staging", chunk_rows=CHUNK)
    # When storing it fails at its fifth chunk, after four were inserted and its quarantine written
    calls, store_chunk = [], storing.store_chunk

    def failing(*args):  # noqa: ANN002, ANN202
        calls.append(args)
        if len(calls) == 5:
            raise OSError("disk full at the fifth chunk")
        return store_chunk(*args)

    monkeypatch.setattr(storing, "store_chunk", failing)
    with pytest.raises(OSError, match="fifth chunk"):
        warehouse.store(batch)
    # Then the warehouse is as it was, to the row
    after = tables()
    for name, frame in before.items():
        pd.testing.assert_frame_equal(after[name], frame, obj=name)
    # And the same batch stores whole once the failure is gone
    monkeypatch.setattr(storing, "store_chunk", store_chunk)
    summary = warehouse.store(batch)
    assert summary.reconciles and summary.stored == len(batch.valid_rows) > 900
    batch.discard()


def test_a_staging_folder_goes_with_its_batch_and_one_a_dead_run_left_is_removed(world, tmp_path):
    # Given staging folders left by a run that is no more, and by this (live) process
    parent = tmp_path / "staging"
    dead, live = parent / "ingest-999999999-gone", parent / f"ingest-{os.getpid()}-busy"
    dead.mkdir(parents=True)
    live.mkdir()
    # When a file is prepared there, Then the dead run's folder is removed and the live one's kept
    batch = prepare_batch(_messy(world, tmp_path / "landing"), folder=parent, chunk_rows=CHUNK)
    assert not dead.exists() and live.exists()
    assert len(list(parent.iterdir())) == 2 and list(batch.staging.folder.glob("valid-*.arrow"))
    # And the batch's own goes when it is discarded
    batch.discard()
    assert list(parent.iterdir()) == [live]
    # And a file refused part-way through leaves none
    broken = tmp_path / "declarations_broken.csv"
    broken.write_text((tmp_path / "landing" / "declarations.csv").read_text() + 'D9,2024-03-01,"IMP1\nD8,2024\n')
    with pytest.raises(UserError, match="quote"):
        prepare_batch(broken, folder=parent, chunk_rows=CHUNK)
    assert list(parent.iterdir()) == [live]


def test_the_flow_ingests_in_chunks_and_leaves_no_staging_behind(prefect_api, home, world, tmp_path, monkeypatch):
    # Given ADUANA_INGEST_CHUNK_ROWS smaller than a messy file
    monkeypatch.setenv("ADUANA_INGEST_CHUNK_ROWS", str(CHUNK))
    path = _messy(world, tmp_path / "landing")
    # When the flow ingests it
    [summary] = ingest.customs_ingest([str(path)])
    # Then it says what reading it whole says, and its staging folder is gone
    whole = _outcome(tmp_path / "whole", path, None, sample_rows=Settings().gx_sample_rows)["summary"]
    assert {k: v for k, v in summary.items() if k != "batch_id"} == whole
    assert list((home / ingest.STAGING).iterdir()) == []
