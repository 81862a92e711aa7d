"""Where a file's checked rows wait between intake and the warehouse, chunk by chunk, so that a file of any size is
checked, sampled and stored with the memory of a chunk.

A `Staging` keeps each chunk's valid rows as they were checked (in memory, or as an Arrow file in a folder of its
own for a file read in chunks) and, in a DuckDB database beside them (a file in that folder), every valid row's id
and content hash and every quarantine record. Once every chunk is in, `settle` finds what only the whole file shows:
a row repeated exactly (counted as a duplicate, stored once), an id given with different values in two rows (both
quarantined `duplicate_id`), a quarantine record repeated (counted as a duplicate, quarantined once). DuckDB does
that work, spilling to disk past STAGING_MEMORY, so no frame ever holds the whole file.

Then the valid rows come back in file order a chunk at a time (`Rows`), each indexed by its position among them,
and the quarantine records in row order. A folder left by a run that was killed is removed by the next one.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.feather as feather

from features.intake.checked import reject
from features.processes import alive

STAGING_MEMORY = "128MB"  # what DuckDB may hold of a staged file's ids and quarantine records before it spills
FOLDER_PREFIX = "ingest-"  # a staging folder is named ingest-<process id>-<random>
TABLES = """
CREATE TABLE keys (key VARCHAR, row_hash BIGINT, "row_number" BIGINT);
CREATE TABLE rejected ("row_number" BIGINT, reason VARCHAR, message VARCHAR, raw VARCHAR, row_hash BIGINT,
                       rank TINYINT);
"""
# The rows that are not simply valid: an exact repeat of an earlier row of the file (same id and content: times is
# null), or the first of its content under an id that comes with other contents too (times: how many contents).
FATES = """
CREATE TABLE fates AS
WITH copies AS (SELECT key, row_hash, min("row_number") AS first FROM keys GROUP BY key, row_hash),
     clashes AS (SELECT key, count(*) AS times FROM copies GROUP BY key HAVING count(*) > 1)
SELECT k."row_number", CASE WHEN k."row_number" = c.first THEN l.times END AS times
FROM keys k JOIN copies c USING (key, row_hash) LEFT JOIN clashes l USING (key)
WHERE k."row_number" <> c.first OR l.times IS NOT NULL
"""
# One record per content: the first as the file lists them (the row checks' rejections, then malformed rows, then
# conflicting ids: `rank`), each in row order; the others are duplicates.
QUARANTINED = """
CREATE TABLE quarantined AS
SELECT "row_number", reason, message, raw, row_hash FROM (
    SELECT *, row_number() OVER (PARTITION BY row_hash ORDER BY rank, "row_number") AS nth FROM rejected)
WHERE nth = 1 ORDER BY "row_number"
"""


class Rows:
    """Valid rows in file order, a chunk at a time, each chunk indexed by position among them (0, 1, ... on from
    the chunk before). `Rows.of(frame)`: a frame as one chunk."""

    def __init__(self, sizes: list[int], load: Callable[[int], pd.DataFrame]):
        self.sizes, self._load = sizes, load

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Rows:
        return cls([len(frame)], lambda _: frame)

    def __len__(self) -> int:
        return sum(self.sizes)

    def chunks(self) -> Iterator[pd.DataFrame]:
        start = 0
        for number, size in enumerate(self.sizes):
            if size:
                yield self._load(number).set_axis(pd.RangeIndex(start, start + size))
            start += size

    def take(self, positions: np.ndarray) -> pd.DataFrame:
        """The rows at these positions, in this order, indexed by position; only the chunks holding them are read."""
        wanted = np.asarray(positions, dtype=np.int64)
        ordered, parts, start = np.sort(wanted), [], 0
        for number, size in enumerate(self.sizes):
            low, high = np.searchsorted(ordered, [start, start + size])
            if high > low:
                parts.append(self._load(number).iloc[ordered[low:high] - start].set_axis(ordered[low:high]))
            start += size
        if not parts:
            return self._load(0).iloc[0:0]
        return pd.concat(parts).loc[wanted]


class Staging:
    """A file's checked rows, chunk by chunk: in memory (`folder` None) or in a folder of their own (`in_folder`)."""

    def __init__(self, folder: Path | None = None):
        self.folder = folder
        self.con = duckdb.connect(str(folder / "staging.duckdb") if folder else ":memory:")
        if folder:
            self.con.execute(f"SET memory_limit = '{STAGING_MEMORY}'")
        self.con.execute(TABLES)
        self.sizes: list[int] = []  # valid rows per chunk
        self._ends: list[tuple[int, int]] = []  # each chunk's first and last row number (0, -1: none)
        self._frames: list[pd.DataFrame] = []  # in memory only
        self.quarantined = 0  # quarantine records, once settled

    @classmethod
    def in_folder(cls, parent: Path) -> Staging:
        """A staging of its own under `parent`, after removing those left there by runs that are no more."""
        parent.mkdir(parents=True, exist_ok=True)
        for left in parent.glob(f"{FOLDER_PREFIX}*"):
            owner = re.match(rf"{FOLDER_PREFIX}(\d+)-", left.name)
            if owner and not alive(int(owner.group(1))):
                shutil.rmtree(left, ignore_errors=True)
        return cls(Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=parent)))

    def _put(self, number: int, frame: pd.DataFrame) -> None:
        frame = frame.reset_index(drop=True)
        if self.folder is None:
            self._frames[number:number + 1] = [frame]
        else:
            feather.write_feather(frame, self.folder / f"valid-{number:06d}.arrow", compression="lz4")

    def load(self, number: int) -> pd.DataFrame:
        """One chunk's valid rows as checked (typed canonical rows + row_number, row_hash)."""
        if self.folder is None:
            return self._frames[number]
        return feather.read_table(self.folder / f"valid-{number:06d}.arrow", memory_map=False).to_pandas()

    def _insert(self, table: str, frame: pd.DataFrame) -> None:
        self.con.register("part", frame)
        self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM part")
        self.con.unregister("part")

    def add(self, valid: pd.DataFrame, key: str, rejected: pd.DataFrame) -> None:
        """One chunk: its valid rows (with row_number and row_hash), whose id is `key`, and its quarantine records
        (the row checks' rejections, then its malformed rows)."""
        self._put(len(self.sizes), valid)
        self.sizes.append(len(valid))
        numbers = valid["row_number"]
        self._ends.append((int(numbers.iloc[0]), int(numbers.iloc[-1])) if len(valid) else (0, -1))
        self._insert("keys", pd.DataFrame({"key": valid[key], "row_hash": valid["row_hash"], "row_number": numbers}))
        if len(rejected):
            self._insert("rejected", rejected.assign(rank=rejected["reason"].eq("malformed_row").astype("int8")))

    def settle(self, key: str) -> int:
        """Settle what only the whole file shows (see the module's docstring); how many rows are duplicates."""
        con = self.con
        con.execute(FATES)
        (repeats, fated), = con.execute("SELECT count(*) FILTER (WHERE times IS NULL), count(*) FROM fates").fetchall()
        for number, (first, last) in enumerate(self._ends if fated else []):
            fates = con.execute('SELECT "row_number", times FROM fates WHERE "row_number" BETWEEN ? AND ?',
                                [first, last]).df()
            if fates.empty:
                continue
            frame = self.load(number)
            times = frame["row_number"].map(fates.set_index("row_number")["times"])
            repeat = frame["row_number"].isin(fates["row_number"]) & times.isna()
            clash = frame[times.notna()]
            if len(clash):
                said = key + " " + clash[key].map(repr) + " appears " + times[times.notna()].astype("int64").astype(
                    "str") + " times in this file with different values"
                self._insert("rejected", reject(clash, "duplicate_id", said.tolist()).assign(rank=2))
            kept = frame[~repeat & times.isna()]
            self._put(number, kept)
            self.sizes[number] = len(kept)
        con.execute(QUARANTINED)
        (rejected, kept), = con.execute("SELECT (SELECT count(*) FROM rejected), count(*) FROM quarantined").fetchall()
        con.execute("DROP TABLE keys; DROP TABLE rejected; DROP TABLE fates")
        self.quarantined = kept
        return repeats + rejected - kept

    def rows(self) -> Rows:
        return Rows(self.sizes, self.load)

    def quarantine_records(self, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
        """The quarantine records (row_number, reason, message, raw, row_hash) in row order, `chunk_rows` at a time
        (None: all at once)."""
        rows = chunk_rows or max(self.quarantined, 1)
        with self.con.cursor() as cursor:  # a connection of its own: the staging stays free for other reads
            for batch in cursor.sql('SELECT * FROM quarantined ORDER BY "row_number"').to_arrow_reader(rows):
                yield batch.to_pandas()

    def discard(self) -> None:
        """Close the database and remove the folder (a staging in memory is simply let go)."""
        self.con.close()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
