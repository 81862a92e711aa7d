"""A landing file prepared for the warehouse: checked rows (features/intake/checked.py), hashed, with in-file
duplicates settled (features/intake/staging.py).

A file is read, checked and held `chunk_rows` rows at a time (None: all at once), in memory or, given a folder, in a
staging folder of its own there: ingest holds a file of any size with the memory of a chunk that way. Every check
is of one row, and what only the whole file shows (an id repeated) is settled over every chunk, so the result is the
same whatever the chunks. Nothing here writes to the warehouse: it stores the result in one transaction.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from features.contract import KEYS, Kind
from features.intake.checked import QUARANTINE_COLUMNS, check_raw, file_sha256, reject, row_hashes
from features.intake.mapping import ColumnMapping, resolve_kind
from features.intake.reader import read_chunks
from features.intake.staging import Rows, Staging
from features.intake.validation import add_conversions, readable


@dataclass
class PreparedBatch:
    kind: Kind
    source: str
    source_sha256: str
    read: int
    duplicates: int  # exact repeats of another row of the same file
    staging: Staging  # the valid rows (ids unique within the batch) and the quarantine records
    unknown_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # about the file as a whole, e.g. that its labels are absent
    conversions: list[str] = field(default_factory=list)  # the mapping's recodes and unit conversions, readable
    chunk_rows: int | None = None  # rows read (and quarantine records given) at a time; None: all at once
    rejected_by: str | None = None  # a critical dataset-level expectation that failed: every row goes to quarantine

    @property
    def valid_rows(self) -> Rows:
        """The valid rows (typed canonical rows + row_number, row_hash), a chunk at a time: none once rejected."""
        return Rows([], self.staging.load) if self.rejected_by else self.staging.rows()

    @property
    def valid(self) -> pd.DataFrame:
        """Every valid row in one frame, indexed 0, 1, ...: for a file read whole (ingest goes by `valid_rows`)."""
        frames = list(self.valid_rows.chunks())
        return pd.concat(frames) if frames else self.staging.load(0).iloc[0:0].reset_index(drop=True)

    @property
    def rows(self) -> pd.DataFrame:
        """The valid rows as canonical fields only (no row number or hash): for reading a file, not storing it."""
        return self.valid.drop(columns=["row_number", "row_hash"])

    def rejected_chunks(self) -> Iterator[pd.DataFrame]:
        """The quarantine records (row_number, reason, message, raw, row_hash): the file's own in row order, then, if
        the batch was rejected whole, every valid row moved there, a chunk at a time."""
        yield from self.staging.quarantine_records(self.chunk_rows)
        if self.rejected_by:
            for chunk in self.staging.rows().chunks():
                yield reject(chunk, "batch_rejected", self.rejected_by)

    @property
    def rejected(self) -> pd.DataFrame:
        """Every quarantine record in one frame: for a file read whole."""
        frames = list(self.rejected_chunks())
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=QUARANTINE_COLUMNS)

    @property
    def rejected_count(self) -> int:
        return self.staging.quarantined + (len(self.staging.rows()) if self.rejected_by else 0)

    def discard(self) -> None:
        """Let go of the staged rows (and remove their folder): the batch is stored, or will not be."""
        self.staging.discard()


def prepare_batch(path: Path, kind: str | None = None, mapping: ColumnMapping | None = None,
                  folder: Path | None = None, chunk_rows: int | None = None) -> PreparedBatch:
    """Read and check one file; every row read ends up valid, rejected or counted as an in-file duplicate.

    `folder`: stage the rows in a folder of their own under it (`discard` removes it), else in memory;
    `chunk_rows`: read and check that many rows at a time (None: the whole file at once)."""
    path, mapping = Path(path), mapping or ColumnMapping()
    resolved = resolve_kind(path, kind, mapping)
    staging = Staging.in_folder(folder) if folder is not None else Staging()
    try:
        read, first, converted = 0, None, []
        for raw in read_chunks(path, chunk_rows, mapping.delimiter, mapping.encoding):
            checked = check_raw(raw, resolved, mapping)
            valid = checked.valid.assign(row_number=checked.row_numbers, row_hash=row_hashes(checked.valid))
            staging.add(valid, KEYS[resolved], checked.rejected)
            read += checked.read
            converted = add_conversions(converted, checked.converted) if first else checked.converted
            first = first or (checked.unknown_columns, checked.notes)
        duplicates = staging.settle(KEYS[resolved])
        digest = file_sha256(path)
    except BaseException:
        staging.discard()
        raise
    return PreparedBatch(kind=resolved, source=str(path.resolve()), source_sha256=digest, read=read,
                         duplicates=duplicates, staging=staging, unknown_columns=first[0], notes=first[1],
                         conversions=readable(converted), chunk_rows=chunk_rows)


def reject_batch(batch: PreparedBatch, message: str) -> PreparedBatch:
    """The batch with every valid row moved to quarantine (a critical dataset-level expectation failed)."""
    return replace(batch, rejected_by=message)
