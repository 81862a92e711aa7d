"""What training reads of the warehouse's snapshot (Parquet, as Warehouse.export_tables writes it) when the history is
too large to hold in pandas: the rows it builds features for, and what those rows read across the history, each
computed by DuckDB where the data lies, under a memory limit and spilling to disk beyond it.

- the labelled rows' dates and outcomes (the time split reads nothing else);
- how many declarations were filed from a date on (the drift reference is drawn among them);
- the featured rows themselves (the labelled ones and the drift reference), integrated: their bills of lading's
  totals over every stored item, their manifests and their importers' registry records;
- the price bands, fitted in pandas one share of the HS subheadings at a time (a band reads its subheading's rows
  only), which gives the bands `PriceBands.fit` gives over all rows at once;
- the entity profiles, a ProfileStore over every declaration, looked up a part of the queries at a time.

Rows come in training's order, by filing date, then declaration id, then their place in the file (pandas' stable sort
of the same table), so the features are those training builds among all rows in pandas (training/pipeline.py). The
connection runs on one thread, so that every run adds the revenue up in the same order and gets the same bytes.
"""
from __future__ import annotations

import os
import tempfile
from functools import cached_property
from pathlib import Path
from types import TracebackType

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.build import bill_totals, integrate, keyed
from features.context import ScoringContext
from features.entities import NAMES
from features.prices import PriceBands
from features.profiles import profile_columns
from features.warehouse.partition_context import DEFAULT_MEMORY_LIMIT
from features.warehouse.profile_store import ProfileStore, label_sql

PART_ROWS = 250_000  # rows of a price-band fit or a profile lookup at a time
ORDER = "declaration_date, declaration_id, file_row_number"  # pandas' stable sort by date and id, in file order
BAND_COLUMNS = ("hs_code", "origin_country", "declared_value", "net_mass_kg")


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class PartitionedProfiles:
    """A ProfileStore looked up PART_ROWS queries at a time (what `build_features` calls as its profile index)."""

    def __init__(self, store: ProfileStore, rows: int = PART_ROWS):
        self.store, self.rows = store, rows

    def lookup(self, queries: pd.DataFrame, batch_first: dict[str, pd.Series] | None = None,
               names: tuple[str, ...] = NAMES) -> pd.DataFrame:
        """`ProfileStore.lookup`, in parts. The queries are rows of the history the store indexes, so each key's
        first filing is the store's own: no batch is needed across the parts (`batch_first` is passed on as given)."""
        if len(queries) <= self.rows:
            return self.store.lookup(queries, batch_first, names)
        return pd.concat([self.store.lookup(queries.iloc[start:start + self.rows], batch_first, names)
                          for start in range(0, len(queries), self.rows)])


class LookedUp:
    """Profiles already looked up for the rows `build_features` will ask about, in their order: so that DuckDB's
    profile tables can go before the features' pandas work starts."""

    def __init__(self, table: pd.DataFrame):
        self.table = table

    def lookup(self, queries: pd.DataFrame, batch_first: dict[str, pd.Series] | None = None,
               names: tuple[str, ...] = NAMES) -> pd.DataFrame:
        if len(queries) != len(self.table):
            raise ValueError(f"profiles were looked up for {len(self.table):,} rows, not {len(queries):,}")
        table = self.table if names == NAMES else self.table[profile_columns(names)]
        return table.set_axis(queries.index)


class TrainingReader:
    """The snapshot's tables (table → Parquet path), read for a training. Use it as a context manager: its DuckDB
    connection, and the profile tables in it, go when the features are built, before the fits."""

    def __init__(self, snapshot: dict[str, str], memory_limit: str = DEFAULT_MEMORY_LIMIT,
                 temp_directory: str | Path | None = None):
        self.snapshot, self.memory_limit = snapshot, memory_limit
        self.temp_directory = temp_directory or Path(tempfile.gettempdir()) / f"aduana-training-{os.getpid()}"
        self.con = duckdb.connect()
        self.con.execute("SET threads = 1")  # the same order of additions on every run: the same bytes
        self.con.execute(f"SET memory_limit = {_quoted(memory_limit)}")
        self.con.execute(f"SET temp_directory = {_quoted(str(self.temp_directory))}")
        self.declarations = f"read_parquet({_quoted(snapshot['declarations'])}, file_row_number = true)"

    def __enter__(self) -> TrainingReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def _columns(self, table: str) -> set[str]:
        source = self.declarations if table == "declarations" else f"read_parquet({_quoted(self.snapshot[table])})"
        return {r[0] for r in self.con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}

    def _count(self, sql: str, params: list | None = None) -> int:
        """count(*) of `FROM ...` (fetched whole: the connection takes no other work while a result is open)."""
        return int(self.con.execute(f"SELECT count(*) {sql}", params or []).fetchall()[0][0])

    @cached_property
    def rows(self) -> int:
        """The declarations of the history."""
        return self._count(f"FROM {self.declarations}")

    @cached_property
    def _labelled(self) -> str:
        return label_sql(self._columns("declarations"))[0]

    def labels(self) -> pd.DataFrame:
        """declaration_date and fraud of the labelled rows (`features/labels.py` `labelled`), in training's order."""
        return self.con.execute(f"SELECT declaration_date, fraud FROM {self.declarations} WHERE {self._labelled} "
                                f"ORDER BY {ORDER}").df()

    def filed_since(self, since: pd.Timestamp) -> int:
        """How many declarations were filed from `since` on (the drift reference's population)."""
        return self._count(f"FROM {self.declarations} WHERE declaration_date >= ?", [pd.Timestamp(since).to_pydatetime()])

    def featured(self, since: pd.Timestamp, drift_positions: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        """(rows, drift): the labelled rows and those at `drift_positions` among the declarations filed from
        `since` on (in training's order), integrated and in training's order; `drift` marks the latter."""
        self.con.register("drift_positions", pa.table({"position": np.asarray(drift_positions, dtype="int64")}))
        try:
            self.con.execute(f"""
                CREATE OR REPLACE TEMP TABLE training_drift AS
                SELECT file_row_number FROM (
                    SELECT file_row_number, row_number() OVER (ORDER BY {ORDER}) - 1 AS position
                    FROM {self.declarations} WHERE declaration_date >= ?)
                WHERE position IN (SELECT position FROM drift_positions)""", [pd.Timestamp(since).to_pydatetime()])
            frame = self.con.execute(f"""
                SELECT * EXCLUDE (file_row_number),
                       file_row_number IN (SELECT file_row_number FROM training_drift) AS training_drift
                FROM {self.declarations}
                WHERE {self._labelled} OR file_row_number IN (SELECT file_row_number FROM training_drift)
                ORDER BY {ORDER}""").df()
        finally:
            self.con.unregister("drift_positions")
            self.con.execute("DROP TABLE IF EXISTS training_drift")
        drift = frame.pop("training_drift").to_numpy(dtype=bool)
        return self._integrate(frame), drift

    def filed(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """The declarations filed in [start, end] (a monitoring window), integrated and in training's order."""
        frame = self.con.execute(f"SELECT * EXCLUDE (file_row_number) FROM {self.declarations} "
                                 f"WHERE declaration_date BETWEEN ? AND ? ORDER BY {ORDER}",
                                 [pd.Timestamp(start).to_pydatetime(), pd.Timestamp(end).to_pydatetime()]).df()
        return self._integrate(frame)

    def _matching(self, table: str, column: str, values: pd.Series, select: str = "*", then: str = "") -> pd.DataFrame:
        """Rows of a snapshot table whose `column` is one of `values`, in the table's order (`then`: ORDER BY...)."""
        source = self.declarations if table == "declarations" else f"read_parquet({_quoted(self.snapshot[table])})"
        wanted = values.dropna().unique()
        self.con.register("wanted", pa.table({"value": pa.array(pd.Series(wanted).astype("str").to_numpy(object),
                                                                 type=pa.string())}))
        try:
            exclude = " EXCLUDE (file_row_number)" if table == "declarations" and select == "*" else ""
            return self.con.execute(f"SELECT {select}{exclude} FROM {source} WHERE \"{column}\" IN "
                                    f"(SELECT value FROM wanted) {then}").df()
        finally:
            self.con.unregister("wanted")

    def _integrate(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`features/build.py` `integrate` of these rows among all: their bills' totals over every stored item."""
        declared = self._columns("declarations")
        bills = pd.DataFrame(columns=["bl_net_mass_kg", "bl_items"])
        if "bill_of_lading" in declared:
            # the items of these rows' bills, in the table's order: pandas adds them up as it does among all rows
            items = self._matching("declarations", "bill_of_lading", frame["bill_of_lading"],
                                   ", ".join(c for c in ("bill_of_lading", "net_mass_kg") if c in declared),
                                   "ORDER BY file_row_number")
            bills = bill_totals(items)
        manifests = traders = None
        if "bill_of_lading" in frame and "bill_of_lading" in self._columns("manifests"):
            manifests = keyed(self._matching("manifests", "bill_of_lading", frame["bill_of_lading"]), "bill_of_lading")
        if "importer_id" in frame and "importer_id" in self._columns("traders"):
            traders = keyed(self._matching("traders", "importer_id", frame["importer_id"]), "importer_id")
        context = ScoringContext(manifests=manifests, traders=traders, bill_totals=bills, history=pd.DataFrame(),
                                 known_ids=pd.Index(frame["declaration_id"]), profiles=None)  # type: ignore[arg-type]
        return integrate(frame, context=context)

    def price_bands(self, before: pd.Timestamp, rows: int = PART_ROWS) -> PriceBands:
        """`PriceBands.fit` of the declarations filed before `before`, a share of the HS subheadings at a time
        (about `rows` declarations each), in the order `PriceBands.fit` gives the bands."""
        columns = [c for c in BAND_COLUMNS if c in self._columns("declarations")]
        where = f"FROM {self.declarations} WHERE declaration_date < ?"
        at = [pd.Timestamp(before).to_pydatetime()]
        shares = max(1, -(-self._count(where, at) // rows))
        parts = []
        for share in range(shares):
            part = self.con.execute(f"SELECT {', '.join(columns)} {where} AND "
                                    f"hash(left(CAST(hs_code AS VARCHAR), 6)) % {shares} = {share} "
                                    "ORDER BY file_row_number", at).df()
            if len(part) or (share == shares - 1 and not parts):  # a share without rows has no bands
                parts.append(PriceBands.fit(part).table)
        table = pd.concat(parts, ignore_index=True)
        by_level = [table[table["level"] == level].sort_values(keys, kind="stable")
                    for level, keys in (("hs_origin", ["hs6", "origin"]), ("hs", ["hs6"]))]
        return PriceBands(pd.concat(by_level, ignore_index=True))

    @cached_property
    def profiles(self) -> PartitionedProfiles:
        """The entity profiles of every declaration, in DuckDB tables (features/warehouse/profile_store.py)."""
        store = ProfileStore.build(self.con, f"SELECT * FROM read_parquet({_quoted(self.snapshot['declarations'])})",
                                   self.memory_limit, self.temp_directory)
        return PartitionedProfiles(store)
