"""A partition's scoring context, read through DuckDB from the warehouse's snapshot in Parquet: what scoring reads of
the warehouse for these declarations only, so that memory holds a partition, not the history.

features/context.py's ScoringContext holds the whole history in pandas and indexes it (ProfileIndex): its memory
grows with the history. A SnapshotReader keeps the snapshot in DuckDB instead. The entity profiles are a
ProfileStore (running totals in DuckDB tables, under a memory limit, spilling to disk beyond it); for each partition
it reads the stored totals of the partition's bills of lading, their manifests, the importers' registry records and
which of its declarations are stored, and nothing else. Given the run's batch, it first sets apart the snapshot's
rows of the batch's keys (and keeps the profiles of those keys only), so that a partition's read costs what the
batch's share of the history costs, not the whole history. Its one connection runs on one thread, so that every
worker that reads the same snapshot adds up the same numbers in the same order and gets the same bytes.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.build import MANIFEST_FIELDS, REGISTRY_FIELDS, keyed
from features.context import BatchState, ScoringContext
from features.entities import NAMES, entity_keys
from features.prices import PriceBands
from features.warehouse.novelty_store import NoveltyStore
from features.warehouse.profile_store import ProfileStore
from features.warehouse.profile_store import _columns as selected_columns

DEFAULT_MEMORY_LIMIT = "1GB"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class BatchTables:
    """The batch-wide tables of a run scored in partitions (serving/partition_run.py), read a partition at a time
    through DuckDB: `batch_state(tables, partition)`."""

    def __init__(self):
        self.con = duckdb.connect()
        self.con.execute("SET threads = 1")  # the same order of additions on every worker: the same bytes
        self.tables: dict[str, str] = {}

    def close(self) -> None:
        self.con.close()

    def _matching(self, table: str, column: str, values: pd.Series, select: str = "*", group: str = "",
                  arrow: bool = False) -> pd.DataFrame:
        """Rows of a snapshot table (or a relation: `read_parquet(...)`, a table) whose `column` is one of `values`.
        `arrow`: fetched through Arrow, for a query whose columns are text and numbers that cannot be missing (ids,
        counts, sums), which Arrow gives pandas as DuckDB's own conversion does, in half the time."""
        relation = self.tables.get(table, table)
        self.con.register("wanted", pa.table({"value": _text(pd.Series(values.dropna().unique()))}))
        try:
            found = self.con.sql(f"SELECT {select} FROM {relation} WHERE \"{column}\" IN "
                                 f"(SELECT value FROM wanted) {group}")
            return found.to_arrow_table().to_pandas() if arrow else found.df()
        finally:
            self.con.unregister("wanted")

    def batch_state(self, tables: dict[str, str], partition: pd.DataFrame) -> BatchState:
        """A partition's share of its batch's state: the batch-wide tables (serving/partition_run.py: "bills", and
        the first filings of each entity) read for this partition's bills and entity keys only."""
        bills = pd.DataFrame(columns=["bl_net_mass_kg", "bl_items"])
        if "bill_of_lading" in partition:
            bills = self._matching(f"read_parquet({_quoted(tables['bills'])})", "bill_of_lading",
                                   partition["bill_of_lading"]).set_index("bill_of_lading")
        first = {}
        for name, key in entity_keys(partition, tuple(n for n in tables if n != "bills")).items():
            found = self._matching(f"read_parquet({_quoted(tables[name])})", "key", pd.Series(key))
            first[name] = pd.Series(found["first"].to_numpy(), index=pd.Index(found["key"].to_numpy(dtype=object)))
        return BatchState(bill_totals=bills, first_filed=first)


class HeldContext(BatchTables):
    """A run's partitions read against a scoring context already in memory (the scorer's history in pandas, as
    whole scoring reads it): `context(partition)` gives that context whole, whatever the partition."""

    def __init__(self, context: ScoringContext):
        super().__init__()
        self.held = context

    def context(self, partition: pd.DataFrame) -> ScoringContext:  # noqa: ARG002 - the same for every partition
        return self.held


class SnapshotReader(BatchTables):
    """The snapshot's Parquet files (table → path, as Warehouse.export_tables writes them), read a partition at a
    time. Build once per process and run; `context(partition)` for each partition."""

    def __init__(self, snapshot: dict[str, str], memory_limit: str = DEFAULT_MEMORY_LIMIT,
                 temp_directory: str | Path | None = None, names: tuple[str, ...] = NAMES,
                 batch: list[str] | None = None):
        """`batch`: the Parquet files of every declaration the run will ask about (its partitions); the snapshot's
        rows of their keys are then set apart once (`_set_apart`), and each partition's reads join those alone."""
        super().__init__()
        self.tables = {name: f"read_parquet({_quoted(path)})" for name, path in snapshot.items()}
        self._described: dict[str, list[str]] = {}
        asked = (f"SELECT * FROM read_parquet([{', '.join(_quoted(p) for p in batch)}], union_by_name = true)"
                 if batch else None)
        self.profiles = ProfileStore.build(self.con, f"SELECT * FROM {self.tables['declarations']}", memory_limit,
                                           temp_directory, names, asked)  # the entities the run's scorer reads
        # What `context` reads each of its tables from: the snapshot's files, or their rows set apart for the batch
        self.reads = {"ids": self.tables["declarations"], "bill_items": self.tables["declarations"],
                      "manifests": self.tables["manifests"], "traders": self.tables["traders"]}
        if asked is not None:
            self._set_apart(asked)

    def _set_apart(self, asked: str) -> None:
        """The snapshot's rows whose key one of the `asked` declarations holds (ids, bills of lading, importers),
        as temporary tables, in the files' order: a partition's read asks for keys of the batch only, so it finds
        the same rows, in the same order, in a table of the batch's share of the history instead of the whole
        history (the cost of each read grew with the history: scoring a day's file against years)."""
        given = selected_columns(self.con, asked)
        wanted = {"ids": ("declarations", "declaration_id", []),
                  "bill_items": ("declarations", "bill_of_lading", ["net_mass_kg"]),
                  "manifests": ("manifests", "bill_of_lading", MANIFEST_FIELDS),
                  "traders": ("traders", "importer_id", REGISTRY_FIELDS)}
        for name, (table, key, fields) in wanted.items():  # `_fields` keeps those of `fields` the table holds
            if key in given and key in self._columns(table):
                self.con.execute(f"CREATE TEMP TABLE run_{name} AS SELECT {self._fields(table, key, fields)} FROM "
                                 f"{self.tables[table]} WHERE \"{key}\" IN (SELECT \"{key}\" FROM ({asked}))")
                self.reads[name] = f"run_{name}"

    def _columns(self, table: str) -> list[str]:
        """A snapshot table's columns (read from its file's metadata once)."""
        if table not in self._described:
            self._described[table] = [r[0] for r in self.con.execute(
                f"DESCRIBE SELECT * FROM {self.tables[table]}").fetchall()]
        return self._described[table]

    def _fields(self, table: str, key: str, fields: list[str]) -> str:
        """The SELECT list of a table's key and those of `fields` it holds: what integrating reads of it."""
        return ", ".join(f'"{c}"' for c in [key, *[f for f in fields if f in self._columns(table)]])

    def context(self, partition: pd.DataFrame) -> ScoringContext:
        """What scoring these declarations reads of the warehouse (features/build.py `integrate`, the profiles)."""
        declared = self._columns("declarations")
        known = self._matching(self.reads["ids"], "declaration_id", partition["declaration_id"],
                               "DISTINCT declaration_id", arrow=True)
        bills = pd.DataFrame(columns=["bl_net_mass_kg", "bl_items"])
        if "bill_of_lading" in declared and "bill_of_lading" in partition:
            mass = "sum(net_mass_kg)" if "net_mass_kg" in declared else "CAST(NULL AS DOUBLE)"
            bills = self._matching(self.reads["bill_items"], "bill_of_lading", partition["bill_of_lading"],
                                   f"bill_of_lading, {mass} AS bl_net_mass_kg, count(*) AS bl_items",
                                   "GROUP BY bill_of_lading", arrow=True).set_index("bill_of_lading")
        manifests = traders = None
        if "bill_of_lading" in partition and "bill_of_lading" in self._columns("manifests"):
            manifests = keyed(self._matching(self.reads["manifests"], "bill_of_lading", partition["bill_of_lading"],
                                             self._fields("manifests", "bill_of_lading", MANIFEST_FIELDS)),
                              "bill_of_lading")
        if "importer_id" in partition and "importer_id" in self._columns("traders"):
            traders = keyed(self._matching(self.reads["traders"], "importer_id", partition["importer_id"],
                                           self._fields("traders", "importer_id", REGISTRY_FIELDS)), "importer_id")
        return ScoringContext(manifests=manifests, traders=traders, bill_totals=bills, known_ids=pd.Index(known["declaration_id"]), history=pd.DataFrame(),
                              profiles=self.profiles, bands=lambda: self.price_bands,  # type: ignore[arg-type]
                              novelty_of=lambda: self.novelty)

    @cached_property
    def novelty(self) -> NoveltyStore:
        """The snapshot's filings as novelty lookups in DuckDB (built when targeted exploration first reads them)."""
        return NoveltyStore.build(self.con, f"SELECT * FROM {self.tables['declarations']}")

    @cached_property
    def price_bands(self) -> PriceBands:
        """Bands fitted on the whole history, for a model that carries none (read: the four columns they need)."""
        needed = [c for c in ("hs_code", "origin_country", "declared_value", "net_mass_kg")
                  if c in self._columns("declarations")]
        return PriceBands.fit(self.con.execute(f"SELECT {', '.join(needed)} FROM {self.tables['declarations']}").df())


def stored_in(declarations_parquet: str, ids: pd.Series) -> np.ndarray:
    """Which of these declaration ids the snapshot's declarations hold, in the ids' order: a join in DuckDB whose
    hash table holds the ids (the snapshot streams past it), not the snapshot's (1.7× faster at 100k against 1M)."""
    con = duckdb.connect()
    try:
        con.register("batch_ids", pa.table({"i": np.arange(len(ids)), "declaration_id": _text(ids)}))
        found = con.execute("SELECT DISTINCT b.i FROM read_parquet(?) s JOIN batch_ids b ON s.declaration_id = "
                            "b.declaration_id", [declarations_parquet]).fetchnumpy()["i"]
        stored = np.zeros(len(ids), dtype=bool)
        stored[found] = True
        return stored
    finally:
        con.close()


def _text(values: pd.Series) -> pa.Array:
    """Values as an Arrow string array: what DuckDB scans fastest (a pandas object column is read value by value)."""
    return pa.array(values.astype("str").to_numpy(dtype=object), type=pa.string())
