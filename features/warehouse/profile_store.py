"""Entity risk profiles computed where the data lives: DuckDB tables of running totals, not numpy over a whole history.

`features/profiles.py`'s ProfileIndex holds every history row's running totals in memory, which grows with the
history (several GB at ten million declarations). A ProfileStore computes the same PROFILE_COLUMNS, value for value,
from tables DuckDB builds and keeps itself, under a memory limit and spilling to disk beyond it:

- per entity, one table of running totals per (key, second): filings by filing time, and controls, frauds and
  revenue by the time each control ended (a missing control_date counts from LABEL_LAG_DAYS after filing), with each
  key's first filing; events of one second are added up first, so "strictly before" a time is one row;
- one table of the same running totals over every control (the global prior).

A lookup registers a partition of query rows and finds, for each query and entity, the last row of its key strictly
before its time and strictly before RECENT_DAYS earlier (`ASOF LEFT JOIN ... p.probe_t > c.t`), joining only the
rows of the partition's keys that span its times. Counts, hit rates and days known equal ProfileIndex's exactly;
revenue rates may differ in the last bits (revenue is added up in another order). Keys are cut in SQL as
`entity_keys` cuts them, for the history and the queries alike.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features.entities import ENTITIES, HS_LEVELS, MISSING, NAMES, Entity
from features.profiles import (
    LABEL_LAG_DAYS,
    PROFILE_SUFFIXES,
    RECENT_DAYS,
    profile_columns,
    smoothed_rate,
    to_seconds,
)

DAY = 86_400
NEVER = np.iinfo("int64").max  # the first filing of a key never filed
DEFAULT_MEMORY_LIMIT = "2GB"
ZERO = "CAST(0 AS DOUBLE)"
_PREFIX = "profile_store"  # the temporary tables and registered frames of a store are named from this


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _seconds(column: str) -> str:
    """SQL of a date or timestamp column in whole seconds since the epoch, floored as `to_seconds` floors."""
    return f"epoch_us(date_trunc('second', CAST(\"{column}\" AS TIMESTAMP))) // 1000000"


def _present(entity: Entity, columns: set[str]) -> bool:
    return all((c in columns) or (c in HS_LEVELS and "hs_code" in columns) for c in entity.columns)


def _key(entity: Entity) -> str:
    """SQL of an entity's key as `entity_keys` makes it: columns as text (HS levels cut from hs_code), a missing
    value as MISSING, the columns of a pair joined with '|'."""
    def text(column: str) -> str:
        value = (f"left(CAST(hs_code AS VARCHAR), {HS_LEVELS[column]})" if column in HS_LEVELS
                 else f"CAST(\"{column}\" AS VARCHAR)")
        return f"coalesce({value}, {_quoted(MISSING)})"
    return " || '|' || ".join(text(c) for c in entity.columns)


def label_sql(columns: set[str]) -> tuple[str, str, str, str]:
    """SQL of (whether a row is a control with a known outcome, its fraud, its revenue, when its control ended), as
    `labelled` and ProfileIndex read them; with no `fraud` column no row is a control."""
    if "fraud" not in columns:
        return "false", ZERO, ZERO, "NULL"
    known = "fraud IS NOT NULL AND NOT isnan(CAST(fraud AS DOUBLE))"
    labelled = f"inspected = 1 AND {known}" if "inspected" in columns else known
    revenue = ("CASE WHEN revenue IS NULL OR isnan(CAST(revenue AS DOUBLE)) THEN 0.0 ELSE CAST(revenue AS DOUBLE) END"
               if "revenue" in columns else ZERO)
    assumed = f"{_seconds('declaration_date')} + {LABEL_LAG_DAYS * DAY}"
    ended = f"coalesce({_seconds('control_date')}, {assumed})" if "control_date" in columns else assumed
    return f"coalesce({labelled}, false)", "CAST(fraud AS DOUBLE)", revenue, ended


def _columns(con: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    return {d[0] for d in con.execute(f"SELECT * FROM ({sql}) LIMIT 0").description}


class ProfileStore:
    """Running totals of a history's labels and filings per entity, kept as temporary tables of one DuckDB
    connection: `build` once per history snapshot, then `lookup` each partition of queries.

    One store per connection (a second build replaces the first's tables). The tables live in the connection's
    temporary catalog, so a read-only connection to the warehouse can hold them; they go when it closes."""

    def __init__(self, con: duckdb.DuckDBPyConnection, entities: tuple[Entity, ...]):
        self.con = con
        self.entities = entities  # those the history identifies, in ENTITIES order

    @classmethod
    def build(cls, con: duckdb.DuckDBPyConnection, history_sql: str, memory_limit: str = DEFAULT_MEMORY_LIMIT,
              temp_directory: str | Path | None = None, names: tuple[str, ...] = NAMES,
              queries_sql: str | None = None) -> ProfileStore:
        """Index the declarations `history_sql` selects (e.g. 'SELECT * FROM declarations', or "SELECT * FROM
        read_parquet('snapshot/declarations.parquet')"; columns named as the contract names them), for the
        entities `names` (a scorer's: those its model reads). With `queries_sql`, the declarations every later
        lookup will ask about (a batch to score), only their keys' totals are kept: a lookup joins its keys' rows
        alone, so it finds the same totals, and the tables hold the batch's share of the history, not all of it.

        Sets the connection's database to `memory_limit`, spilling beyond it to `temp_directory` (by default a
        folder of this process under the system's temporary folder, which DuckDB creates and removes)."""
        spill = temp_directory or Path(tempfile.gettempdir()) / f"aduana-profiles-{os.getpid()}"
        con.execute(f"SET memory_limit = {_quoted(memory_limit)}")
        con.execute(f"SET temp_directory = {_quoted(str(spill))}")
        columns = _columns(con, history_sql)
        labelled, fraud, revenue, ended = label_sql(columns)
        filed = _seconds("declaration_date")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {_PREFIX}_global AS
            SELECT t, CAST(sum(n) OVER w AS BIGINT) AS n, sum(fraud) OVER w AS fraud, sum(revenue) OVER w AS revenue
            FROM (SELECT {ended} AS t, count(*) AS n, sum({fraud}) AS fraud, sum({revenue}) AS revenue
                  FROM ({history_sql}) WHERE {labelled} GROUP BY ALL)
            WINDOW w AS (ORDER BY t ROWS UNBOUNDED PRECEDING)""")
        entities = tuple(e for e in ENTITIES if e.name in names and _present(e, columns))
        asked = _columns(con, queries_sql) if queries_sql is not None else set()
        for entity in entities:
            key = _key(entity)
            wanted = (f"WHERE key IN (SELECT {key} FROM ({queries_sql}))" if _present(entity, asked)
                      else "")  # queries without the entity's columns never look it up: left whole
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE {_PREFIX}_{entity.name} AS
                WITH events AS (
                    SELECT {key} AS key, {filed} AS t, 1 AS filings, 0 AS n, {ZERO} AS fraud, {ZERO} AS revenue
                    FROM ({history_sql})
                    UNION ALL
                    SELECT {key}, {ended}, 0, 1, {fraud}, {revenue} FROM ({history_sql}) WHERE {labelled}),
                seconds AS (
                    SELECT key, t, sum(filings) AS filings, sum(n) AS n, sum(fraud) AS fraud, sum(revenue) AS revenue
                    FROM events {wanted} GROUP BY key, t)
                SELECT key, t, CAST(sum(filings) OVER w AS BIGINT) AS filings, CAST(sum(n) OVER w AS BIGINT) AS n,
                       sum(fraud) OVER w AS fraud, sum(revenue) OVER w AS revenue,
                       min(CASE WHEN filings > 0 THEN t END) OVER (PARTITION BY key) AS first_filed,
                       lead(t) OVER (PARTITION BY key ORDER BY t) AS next_t
                FROM seconds
                WINDOW w AS (PARTITION BY key ORDER BY t ROWS UNBOUNDED PRECEDING)""")
        return cls(con, entities)

    def lookup(self, queries: pd.DataFrame, batch_first: dict[str, pd.Series] | None = None,
               names: tuple[str, ...] = NAMES) -> pd.DataFrame:
        """PROFILE_COLUMNS for each query row (on the queries' index), from the labels and filings of the history
        strictly before its declaration_date: what `ProfileIndex(history).lookup(queries)` gives.

        A key not filed before a query is known from its earliest filing among `queries`, or, when the queries are
        a partition of a larger batch, from `batch_first` (entity name → earliest filing in int64 seconds per key,
        over the whole batch, as `first_filings` here or in features/profiles.py gives it; a partition's key
        missing from it is a ValueError, as in `ProfileIndex.lookup`). `names`: the entities to look up, as there."""
        out = np.full((len(queries), len(names) * len(PROFILE_SUFFIXES)), np.nan)
        if not len(queries):
            return pd.DataFrame(out, columns=profile_columns(names), index=queries.index)
        q_seconds = to_seconds(queries["declaration_date"].to_numpy())
        columns = set(queries.columns)
        entities = [e for e in self.entities if e.name in names and _present(e, columns)]
        self._register_queries(queries, q_seconds, entities)
        try:
            prior_rate, prior_revenue = self._priors(len(queries))
            for entity in entities:
                first = None if batch_first is None else batch_first[entity.name]
                totals, older, known_since = self._entity_totals(entity, len(queries), first)
                n, hits = totals[:, 1], totals[:, 2]
                e = names.index(entity.name)
                out[:, e * len(PROFILE_SUFFIXES):(e + 1) * len(PROFILE_SUFFIXES)] = np.column_stack([
                    smoothed_rate(hits, n, prior_rate),  # as features/profiles.py ProfileIndex.lookup_keys
                    smoothed_rate(hits - older[:, 2], n - older[:, 1], prior_rate),
                    smoothed_rate(totals[:, 3], n, prior_revenue),
                    n, totals[:, 0], totals[:, 0] - older[:, 0],
                    ((q_seconds - known_since) / DAY).clip(min=0),
                ])
        finally:
            self.con.execute(f"DROP TABLE IF EXISTS {_PREFIX}_queries")
        return pd.DataFrame(out, columns=profile_columns(names), index=queries.index, copy=False)

    def first_filings(self, queries: pd.DataFrame | str) -> dict[str, pd.Series]:
        """Each entity key's earliest filing (int64 seconds) among a batch: a frame, or the SQL selecting it (e.g.
        a whole input file through read_parquet, never read into pandas). What `lookup` takes as `batch_first` for
        each partition of that batch; keys cut as `lookup` cuts them."""
        if isinstance(queries, pd.DataFrame):
            self.con.register(f"{_PREFIX}_batch", queries)
            sql = f"SELECT * FROM {_PREFIX}_batch"
        else:
            sql = queries
        try:
            columns = _columns(self.con, sql)
            firsts = {}
            for entity in (e for e in self.entities if _present(e, columns)):
                frame = self.con.execute(f"SELECT {_key(entity)} AS key, min({_seconds('declaration_date')}) AS t "
                                         f"FROM ({sql}) GROUP BY ALL").df()
                firsts[entity.name] = pd.Series(frame["t"].to_numpy("int64"), index=frame["key"].to_numpy(object))
            return firsts
        finally:
            if isinstance(queries, pd.DataFrame):
                self.con.unregister(f"{_PREFIX}_batch")

    def _register_queries(self, queries: pd.DataFrame, q_seconds: np.ndarray, entities: list[Entity]) -> None:
        """The partition as a temporary table: row number, filing second and each entity's key."""
        needed = sorted({c if c not in HS_LEVELS else "hs_code" for e in entities for c in e.columns})
        frame = queries[needed].reset_index(drop=True).assign(q_row=np.arange(len(queries), dtype="int64"), q_t=q_seconds)
        self.con.register(f"{_PREFIX}_input", frame)
        try:
            keys = "".join(f", {_key(e)} AS \"{e.name}\"" for e in entities)
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {_PREFIX}_queries AS "
                             f"SELECT q_row, q_t{keys} FROM {_PREFIX}_input")
        finally:
            self.con.unregister(f"{_PREFIX}_input")

    def _priors(self, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
        """The global hit rate and revenue per control before each query (NaN before the first control ended)."""
        found = self.con.execute(f"""
            SELECT q.q_row, coalesce(g.n, 0), coalesce(g.fraud, 0), coalesce(g.revenue, 0)
            FROM {_PREFIX}_queries q ASOF LEFT JOIN {_PREFIX}_global g ON q.q_t > g.t""").fetchnumpy()
        g = np.zeros((n_queries, 3))
        g[found["q_row"]] = np.column_stack([np.asarray(v, dtype="float64") for k, v in found.items() if k != "q_row"])
        known = g[:, 0] > 0
        return (np.where(known, g[:, 1] / np.maximum(g[:, 0], 1), np.nan),
                np.where(known, g[:, 2] / np.maximum(g[:, 0], 1), np.nan))

    def _entity_totals(self, entity: Entity, n_queries: int,
                       batch_first: pd.Series | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One entity's running totals (rows × filings, n, fraud, revenue) strictly before each query and strictly
        before RECENT_DAYS earlier, and the second since which each query's key is known."""
        table, key = f"{_PREFIX}_{entity.name}", f'"{entity.name}"'
        if batch_first is None:
            first_sql = f"SELECT q_row, min(q_t) OVER (PARTITION BY {key}) AS first FROM {_PREFIX}_queries"
        else:
            self.con.register(f"{_PREFIX}_first", pd.DataFrame({"key": batch_first.index.to_numpy(object),
                                                               "first": batch_first.to_numpy("int64")}))
            first_sql = (f"SELECT q_row, f.first FROM {_PREFIX}_queries q "
                         f"LEFT JOIN {_PREFIX}_first f ON q.{key} = f.key")
        try:
            # Only the rows that may answer a probe are sorted for the join: those of the partition's keys whose
            # span [t, next_t] meets the key's probes (a month of new filings reads a few months of each key).
            found = self.con.execute(f"""
                WITH probes AS (
                    SELECT q_row, {key} AS key, q_t AS probe_t, 0 AS old FROM {_PREFIX}_queries
                    UNION ALL
                    SELECT q_row, {key}, q_t - {RECENT_DAYS * DAY}, 1 FROM {_PREFIX}_queries),
                spans AS (SELECT key, min(probe_t) AS lo, max(probe_t) AS hi FROM probes GROUP BY key),
                totals AS (SELECT c.* FROM {table} c JOIN spans s ON c.key = s.key
                           WHERE c.t < s.hi AND coalesce(c.next_t, {NEVER}) >= s.lo)
                SELECT p.q_row, p.old, coalesce(c.filings, 0) AS filings, coalesce(c.n, 0) AS n,
                       coalesce(c.fraud, 0) AS fraud, coalesce(c.revenue, 0) AS revenue,
                       coalesce(c.first_filed, {NEVER}) AS first_filed
                FROM probes p ASOF LEFT JOIN totals c ON p.key = c.key AND p.probe_t > c.t""").fetchnumpy()
            first = self.con.execute(first_sql).fetchnumpy()
        finally:
            if batch_first is not None:
                self.con.unregister(f"{_PREFIX}_first")
        if np.ma.is_masked(first["first"]):
            raise ValueError(f"a partition's {entity.name} key is missing from its batch's first filings")
        totals = np.zeros((2, n_queries, 4))
        totals[found["old"], found["q_row"]] = np.column_stack(
            [np.asarray(found[c], dtype="float64") for c in ("filings", "n", "fraud", "revenue")])
        first_filed = np.full(n_queries, NEVER, dtype="int64")
        now = found["old"] == 0
        first_filed[found["q_row"][now]] = found["first_filed"][now]
        in_batch = np.empty(n_queries, dtype="int64")
        in_batch[first["q_row"]] = np.asarray(first["first"], dtype="int64")
        return totals[0], totals[1], np.minimum(first_filed, in_batch)
