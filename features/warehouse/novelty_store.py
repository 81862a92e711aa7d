"""Novelty signals (features/novelty.py) from a history kept in DuckDB: what targeted exploration reads of the
warehouse when a batch is scored in partitions, with the memory of a partition, not of the history.

`NoveltyIndex` holds every filing in pandas. A NoveltyStore keeps, as temporary tables of one DuckDB connection, the
first filing of each importer pair and heading × origin pair, and each importer's, heading's and declarant's
running count of filings and of novel ones per second; a partition's lookup reads the first filings of its pairs
and, with an ASOF join, the running counts at the edges of each declaration's windows. The values are
`NoveltyIndex`'s, value for value (tests/unit/test_novelty_store.py).
"""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from features.entities import HS_LEVELS, MISSING
from features.novelty import (
    NEW_DAYS,
    NOVELTY_COLUMNS,
    PAIRS,
    PARTIES,
    RELATIONSHIPS,
    WINDOW_DAYS,
    as_text,
    excess,
    relationships,
    youth,
)
from features.profiles import to_seconds
from features.warehouse.profile_store import DAY, _columns, _quoted, _seconds

_PREFIX = "novelty_store"
GROUPS = {"importer": "novel", "heading": "moved", "declarant": "taken_on"}  # each windowed group, the flag it counts


def _keys(columns: set[str]) -> dict[str, str]:
    """SQL of each key the signals read, as features/novelty.py cuts it: a column as text (MISSING when missing or
    absent), the HS heading cut from hs_code, a pair joined with the unit separator."""
    def text(column: str) -> str:
        if column == "hs_heading":
            return f"coalesce(left(CAST(hs_code AS VARCHAR), {HS_LEVELS['hs_heading']}), {_quoted(MISSING)})"
        return f"coalesce(CAST(\"{column}\" AS VARCHAR), {_quoted(MISSING)})" if column in columns else _quoted(MISSING)

    keys = {"importer": text("importer_id"), "heading": text("hs_heading"), "declarant": text("declarant_id")}
    keys.update({f"pair_{name}": f"{text('importer_id')} || chr(31) || {text(column)}"
                 for name, column in RELATIONSHIPS.items()})
    keys["pair_heading_origin"] = f"{text('hs_heading')} || chr(31) || {text('origin_country')}"
    keys.update({f"party_{column}": text(column) for column in PARTIES})
    return keys


IMPORTER_PAIRS = tuple(f"pair_{name}" for name in PAIRS)
FIRSTS = (*(f"pair_{name}" for name in RELATIONSHIPS), "pair_heading_origin",
          *(f"party_{c}" for c in PARTIES))  # whose first filing is kept


class NoveltyStore:
    """`build` once per history snapshot, then `lookup` each partition (one store per connection)."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    @classmethod
    def build(cls, con: duckdb.DuckDBPyConnection, history_sql: str) -> NoveltyStore:
        """Index the filings `history_sql` selects (columns named as the contract names them)."""
        keys = _keys(_columns(con, history_sql))
        selected = ", ".join(f"{sql} AS \"{name}\"" for name, sql in keys.items())
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_PREFIX}_rows AS "
                    f"SELECT {_seconds('declaration_date')} AS t, {selected} FROM ({history_sql})")
        for name in FIRSTS:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_PREFIX}_first_{name} AS "
                        f"SELECT \"{name}\" AS key, min(t) AS first FROM {_PREFIX}_rows GROUP BY ALL")
        joins = " ".join(f"JOIN {_PREFIX}_first_{name} f_{name} ON r.\"{name}\" = f_{name}.key"
                         for name in (*IMPORTER_PAIRS, "pair_heading_origin"))
        recent = NEW_DAYS * DAY
        novel = " OR ".join(f"r.t - f_{name}.first <= {recent}" for name in IMPORTER_PAIRS)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_PREFIX}_flags AS SELECT r.importer, r.heading, r.declarant, r.t, "
                    f"CAST({novel} AS BIGINT) AS novel, CAST(r.t - f_pair_heading_origin.first <= {recent} AS BIGINT) "
                    f"AS moved, CAST(r.t - f_pair_declarant.first <= {recent} AS BIGINT) AS taken_on "
                    f"FROM {_PREFIX}_rows r {joins}")
        for group, flag in GROUPS.items():
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE {_PREFIX}_{group} AS
                SELECT key, t, sum(n) OVER w AS n, sum(flagged) OVER w AS flagged
                FROM (SELECT {group} AS key, t, count(*) AS n, sum({flag}) AS flagged FROM {_PREFIX}_flags GROUP BY ALL)
                WINDOW w AS (PARTITION BY key ORDER BY t ROWS UNBOUNDED PRECEDING)""")
        con.execute(f"DROP TABLE {_PREFIX}_rows")
        con.execute(f"DROP TABLE {_PREFIX}_flags")
        return cls(con)

    def lookup(self, rows: pd.DataFrame) -> pd.DataFrame:
        """NOVELTY_COLUMNS for each row, as of its declaration date (same index as `rows`): `NoveltyIndex.lookup`."""
        n = len(rows)
        out = pd.DataFrame(index=rows.index, columns=NOVELTY_COLUMNS, dtype="float64")
        if not n:
            return out
        q_t = to_seconds(rows["declaration_date"].to_numpy())
        keys = _keys(set(rows.columns))
        needed = [c for c in ("importer_id", "exporter_id", "declarant_id", "office_id", "origin_country", "hs_code")
                  if c in rows]
        self.con.register(f"{_PREFIX}_input", rows[needed].reset_index(drop=True).assign(
            q_row=np.arange(n, dtype="int64"), q_t=q_t))
        try:
            selected = ", ".join(f"{sql} AS \"{name}\"" for name, sql in keys.items())
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {_PREFIX}_queries AS "
                             f"SELECT q_row, q_t, {selected} FROM {_PREFIX}_input")
        finally:
            self.con.unregister(f"{_PREFIX}_input")
        try:
            new = np.zeros(n)
            for name in IMPORTER_PAIRS:
                new += ~(self._first(name, n) < q_t)  # never filed strictly before (NaN: never filed at all)
            out["new_pairs"] = new / len(PAIRS)
            out["importer_mix_shift"] = self._shift("importer", n)
            out["heading_origin_shift"] = self._shift("heading", n)
            out["declarant_client_shift"] = np.where(as_text(rows, "declarant_id") == MISSING, 0.0,
                                                     self._shift("declarant", n))
            young = {column: youth(self._first(f"party_{column}", n), q_t, as_text(rows, column) == MISSING)
                     for column in PARTIES}
            out["new_parties"] = sum(young.values()) / len(PARTIES)
            out["new_relationships"] = relationships([self._first(f"pair_{name}", n) for name in RELATIONSHIPS], q_t,
                                                     young["importer_id"])
        finally:
            self.con.execute(f"DROP TABLE IF EXISTS {_PREFIX}_queries")
        return out

    def _first(self, name: str, n: int) -> np.ndarray:
        """Each query's key's first filing in seconds (NaN: never filed)."""
        found = self.con.execute(f"SELECT q.q_row, f.first FROM {_PREFIX}_queries q "
                                 f"LEFT JOIN {_PREFIX}_first_{name} f ON q.\"{name}\" = f.key").fetchnumpy()
        first = np.full(n, np.nan)
        first[found["q_row"]] = np.ma.filled(np.ma.asarray(found["first"], dtype="float64"), np.nan)
        return first

    def _shift(self, group: str, n: int) -> np.ndarray:
        """`_Windowed.shift` of features/novelty.py: the group's filings and flagged ones strictly before each edge of
        the query's windows (t − WINDOW_DAYS − NEW_DAYS, t − WINDOW_DAYS, t), from the running counts."""
        edges = (WINDOW_DAYS + NEW_DAYS, WINDOW_DAYS, 0)
        probes = " UNION ALL ".join(f"SELECT q_row, {e} AS edge, \"{group}\" AS key, q_t - {days * DAY} AS probe "
                                    f"FROM {_PREFIX}_queries" for e, days in enumerate(edges))
        found = self.con.execute(f"""
            SELECT p.q_row, p.edge, coalesce(c.n, 0) AS n, coalesce(c.flagged, 0) AS flagged
            FROM ({probes}) p ASOF LEFT JOIN {_PREFIX}_{group} c ON p.key = c.key AND p.probe > c.t""").fetchnumpy()
        count, flagged = np.zeros((len(edges), n), dtype="int64"), np.zeros((len(edges), n), dtype="int64")
        count[found["edge"], found["q_row"]] = found["n"]
        flagged[found["edge"], found["q_row"]] = found["flagged"]
        return excess((count[1] - count[0], flagged[1] - flagged[0]), (count[2] - count[1], flagged[2] - flagged[1]))
