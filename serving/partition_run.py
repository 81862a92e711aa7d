"""A batch scored in partitions, laid out in a run folder that every process scoring a partition reads itself.

The folder holds, for each partition i (a chunk of the input file, read a chunk at a time):

- `part-i.parquet`: its valid declarations (indexed by position in the file), `invalid-i.parquet`: the output rows of
  its invalid ones, `rejected-i.parquet`: their quarantine records;
- what whole scoring reads across the batch's rows, settled over every chunk once the file is read: the bills of
  lading's totals over the batch's new declarations (`batch-bills.parquet`) and each entity key's first filing in
  the batch (`batch-first-<entity>.parquet`), each partition reading only its own keys of them
  (features/warehouse/partition_context.py);
- the warehouse's snapshot (`snapshot/*.parquet`, where the partitions read it through DuckDB), the champion
  (`model.pkl`, where other processes score the partitions) and the run's facts (`run.json`);
- as the steps go: `scores-i.parquet` (the partition's scores), `lanes-i.parquet` (its lanes, allocated over the
  whole batch), `out-i.parquet` (its output rows, valid and invalid, in file order).

Nothing here holds more than a chunk in memory: the batch-wide tables are settled by DuckDB over the chunks' files.
"""
from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.build import bill_totals
from features.profiles import first_filings
from features.warehouse.partition_context import DEFAULT_MEMORY_LIMIT
from serving.reasons import CONTRIBUTIONS_TYPE
from serving.targeting import signals

ARROW_LISTS = (CONTRIBUTIONS_TYPE, pa.list_(pa.string()))  # the output's list columns: contributions, reason_list


def _quoted(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


@dataclass
class Chunk:
    """A chunk of the input: its valid declarations and its invalid rows' output, both indexed by position in the
    file, and the invalid rows' quarantine records."""

    valid: pd.DataFrame
    invalid: pd.DataFrame
    rejected: pd.DataFrame
    read: int


@dataclass(frozen=True)
class PartitionRun:
    folder: Path

    def file(self, name: str, i: int) -> Path:
        return self.folder / f"{name}-{i:05d}.parquet"

    def part(self, i: int) -> Path:
        return self.file("part", i)

    @property
    def meta(self) -> dict:
        return json.loads((self.folder / "run.json").read_text())

    @property
    def partitions(self) -> int:
        return self.meta["partitions"]

    def batch_tables(self) -> dict[str, str]:
        """The batch-wide tables a partition reads its keys of: "bills", and each entity's first filings."""
        return {"bills": str(self.folder / "batch-bills.parquet"),
                **{name: str(self.folder / f"batch-first-{name}.parquet") for name in self.meta["entities"]}}

    def add(self, i: int, chunk: Chunk, stored: Callable[[pd.Series], np.ndarray], names: tuple[str, ...]) -> list[str]:
        """Lay out chunk i: its rows, and its share of the batch-wide tables (settled by `settle`), for the
        entities `names` (those the scorer reads the profiles of); `stored(ids)`: which of these ids the warehouse
        holds. Returns the entities whose first filings it holds."""
        valid = chunk.valid
        write(chunk.invalid, self.file("invalid", i))
        write(chunk.rejected, self.file("rejected", i), index=False)
        write(valid, self.part(i))
        if not len(valid):
            return []
        new = valid[~stored(valid["declaration_id"])]
        if "bill_of_lading" in new:
            mass = new["net_mass_kg"] if "net_mass_kg" in new else pd.Series(float("nan"), index=new.index)
            pd.DataFrame({"chunk": i, "position": new.index.to_numpy(dtype="int64"),
                          "bill_of_lading": new["bill_of_lading"].to_numpy(), "net_mass_kg": mass.to_numpy(
                              dtype="float64")}).to_parquet(self.file("new", i), index=False)
            bill_totals(new).rename_axis("bill_of_lading").reset_index().to_parquet(self.file("bills", i),
                                                                                    index=False)
        firsts = first_filings(valid, names)
        for name, first in firsts.items():
            pd.DataFrame({"key": first.index.to_numpy(dtype=object), "first": first.to_numpy()}).to_parquet(
                self.file(f"first-{name}", i), index=False)
        return list(firsts)

    def settle(self, chunks: int, entities: list[str], memory_limit: str = DEFAULT_MEMORY_LIMIT) -> None:
        """The batch-wide tables from the chunks' shares, each value as whole scoring computes it: a key's first
        filing is the least of its chunks' (exact); a bill's totals are its chunk's where one chunk holds all its
        new items, else summed again over its items in file order (pandas, as whole scoring sums them: the same
        bits)."""
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit = {_quoted(memory_limit)}")
            con.execute(f"SET temp_directory = {_quoted(self.folder / 'spill')}")
            for name in entities:  # each written by at least one chunk (`add`)
                target = self.folder / f"batch-first-{name}.parquet"
                con.execute(f"COPY (SELECT key, min(first) AS first FROM read_parquet({self._shares(f'first-{name}', chunks)}) "
                            f"GROUP BY key) TO {_quoted(target)} (FORMAT parquet)")
            self._settle_bills(con, chunks)
        finally:
            con.close()
        for name in ("new", "bills", *[f"first-{e}" for e in entities]):
            for i in range(chunks):
                self.file(name, i).unlink(missing_ok=True)

    def _shares(self, name: str, chunks: int) -> str:
        paths = [self.file(name, i) for i in range(chunks) if self.file(name, i).exists()]
        return "[" + ", ".join(_quoted(p) for p in paths) + "]" if paths else ""

    def _settle_bills(self, con: duckdb.DuckDBPyConnection, chunks: int) -> None:
        target = self.folder / "batch-bills.parquet"
        bills, new = self._shares("bills", chunks), self._shares("new", chunks)
        if not bills:
            pd.DataFrame({"bill_of_lading": pd.Series(dtype="str"), "bl_net_mass_kg": pd.Series(dtype="float64"),
                          "bl_items": pd.Series(dtype="int64")}).to_parquet(target, index=False)
            return
        con.execute(f"CREATE TEMP TABLE spanning AS SELECT bill_of_lading FROM read_parquet({bills}) "
                    "GROUP BY bill_of_lading HAVING count(*) > 1")
        items = con.execute(f"SELECT bill_of_lading, net_mass_kg FROM read_parquet({new}) "
                            "SEMI JOIN spanning USING (bill_of_lading) ORDER BY chunk, position").df()
        con.register("spanned", bill_totals(items).rename_axis("bill_of_lading").reset_index())
        con.execute(f"COPY (SELECT * FROM read_parquet({bills}) ANTI JOIN spanning USING (bill_of_lading) "
                    f"UNION ALL SELECT * FROM spanned) TO {_quoted(target)} (FORMAT parquet)")
        con.unregister("spanned")

    def write_meta(self, scorer, snapshot: dict[str, str], sizes: list[int], entities: list[str],
                   memory_limit: str, model_file: bool = True) -> None:
        """The run's facts, and the champion as a file (`model_file`), for the processes that score the
        partitions."""
        if model_file:
            (self.folder / "model.pkl").write_bytes(pickle.dumps(scorer.model))
        if scorer.anomaly is not None:  # targeted exploration's anomaly source, as the scorer holds it
            (self.folder / "anomaly.pkl").write_bytes(pickle.dumps(scorer.anomaly))
        if scorer.policy.targeting is not None and "leads" in signals(scorer.policy.targeting):  # read once a run
            (self.folder / "leads.pkl").write_bytes(pickle.dumps(scorer.lead_residuals()))
        (self.folder / "run.json").write_text(json.dumps({
            "partitions": len(sizes), "sizes": sizes, "version": scorer.version,
            "policy": scorer.policy.model_dump(mode="json"), "snapshot": snapshot, "entities": entities,
            "memory_limit": memory_limit}))

    def outputs(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """Each partition's output rows (score output contract + detail columns, or only `columns`), in file order,
        with the list columns in Arrow, as written (read_output)."""
        for i in range(self.partitions):
            yield read_output(self.file("out", i), columns)

    def rejected(self) -> Iterator[pd.DataFrame]:
        """Each partition's quarantine records."""
        for i in range(self.partitions):
            yield pd.read_parquet(self.file("rejected", i))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def write(frame: pd.DataFrame, path: Path, index: bool = True) -> None:
    """A partition's file in the run folder. Read back once, by the same run: written without dictionary pages,
    which cost a third of the write and save nothing here."""
    frame.to_parquet(path, index=index, use_dictionary=False)


def read_output(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Score output rows as a run folder holds them, with the list columns (the reasons as a list, the
    contributions) in Arrow as written: pandas cannot read a nested Arrow type back from the file's own metadata,
    and a Python list or dict per row costs more than the rest of the read (1.6 s for a million rows' reasons),
    where the decision log takes them in Arrow as they are. A row's value reads as the Python list either way."""
    read = columns
    if columns is not None and "contributions" not in columns and "contributions" in pq.read_schema(path).names:
        read = [*columns, "contributions"]  # the file's metadata names the column: it is read, then left out
    table = pq.read_table(path, columns=read, use_pandas_metadata=True)
    frame = table.to_pandas(types_mapper=lambda kind: pd.ArrowDtype(kind) if kind in ARROW_LISTS else None)
    return frame if columns is None else frame[columns]
