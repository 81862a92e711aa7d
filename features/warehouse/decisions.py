"""The decision log: the warehouse's append-only `decisions` table, and the named reads made of it.

Scoring batches (`aduana score`) and real-time answers (the API) both append here; the audit, the monitor and the
API's thresholds read it through the methods below, so no other module writes SQL against it.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from features.warehouse.oplog import OperationalLog
    from features.warehouse.warehouse import Warehouse

DECISIONS_DDL = """
CREATE TABLE IF NOT EXISTS decisions (
    batch_id VARCHAR NOT NULL, decided_at TIMESTAMP NOT NULL, position BIGINT NOT NULL,
    declaration_id VARCHAR, risk_score DOUBLE, expected_revenue DOUBLE, lane VARCHAR NOT NULL,
    selected_by VARCHAR, reasons VARCHAR, model_version VARCHAR, policy_hash VARCHAR NOT NULL, source VARCHAR);
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS request_id VARCHAR;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS thresholds_batch_id VARCHAR;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS reason_list VARCHAR[];
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS contributions
    STRUCT(feature VARCHAR, family VARCHAR, value VARCHAR, contribution DOUBLE)[];
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS contribution_base DOUBLE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS inclusion_probability DOUBLE;
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS stratum VARCHAR;
CREATE TABLE IF NOT EXISTS decision_sync (source VARCHAR PRIMARY KEY, position BIGINT NOT NULL, synced_at TIMESTAMP);
"""
# Real-time answers (the API) are decisions too: batch_id is the call's own id (rt-…), request_id the request's id
# (the client's X-Request-ID when it sent one), position the item's place in the request, thresholds_batch_id the
# scoring batch whose cut-offs gave the lane. Scoring batches leave the two added columns empty: `request_id IS
# NULL` tells a batch decision. `reason_list` holds the reasons as a list (`reasons` is them joined with "; ");
# `contributions` the deciding model's strongest SHAP contributions (log-odds) for an explained row, and
# `contribution_base` their base value; `inclusion_probability` the row's probability of going red (1 for rule
# hits and model picks, the exploration draw's rate for the others; serving/lanes.py), `stratum` an exploration
# pick's stratum (`random`, or the targeted source that chose it; serving/targeting.py). Each writing connection adds the columns a warehouse of an earlier version
# lacks (features/warehouse/schema.py); its older rows read as NULL there: no list, no stored contributions.
# Real-time answers reach this table as a copy of the operational log (features/warehouse/oplog.py), which made them
# durable before they were given; `decision_sync` holds how far each of its sources has been copied.

# The latest decision per declaration (a declaration scored twice counts once, as last decided), among those of the
# declarations filed in a period: the period's declarations are found first (DuckDB's zone maps skip the row groups
# of other months), and only their decisions, and only the columns read, are ranked.
FILED_LATEST = """
WITH filed AS (
    SELECT declaration_id, {filed} FROM declarations WHERE declaration_date BETWEEN ? AND ?{where}),
latest AS (
    SELECT declaration_id, {decided} FROM decisions
    WHERE declaration_id IN (SELECT declaration_id FROM filed)
    QUALIFY row_number() OVER (PARTITION BY declaration_id ORDER BY decided_at DESC, position DESC) = 1)
SELECT * FROM latest JOIN filed USING (declaration_id) {then} ORDER BY declaration_id
"""


LANE_COLUMNS = ("batch_id", "position", "declaration_id", "risk_score", "expected_revenue", "lane", "selected_by",
                "model_version")

# The list columns of the log (see DECISIONS_DDL). A frame's Python lists reach DuckDB as an Arrow table beside the
# frame (DuckDB cannot infer a list type from a pandas column that starts with missing values), read back in row
# order with a positional join.
LIST_TYPES = {
    "reason_list": pa.list_(pa.string()),
    "contributions": pa.list_(pa.struct([("feature", pa.string()), ("family", pa.string()), ("value", pa.string()),
                                         ("contribution", pa.float64())])),
}


def _red_outcomes(design: pd.DataFrame) -> pd.DataFrame:
    """fraud and revenue where the red lane's control reported them, else missing (`Decisions.selection_design`)."""
    observed = (design.pop("inspected").eq(1).fillna(False) & design["lane"].eq("red").fillna(False)).astype(bool)
    found_fraud, found_revenue = design.pop("found_fraud"), design.pop("found_revenue")
    return design.assign(fraud=found_fraud.where(observed), revenue=found_revenue.where(observed))


def _listed(value: object) -> list | None:
    """A list cell as a Python list (a list, a tuple or an array as read back), None when missing."""
    if isinstance(value, list | tuple | np.ndarray):
        return list(value)
    return None


def _split_lists(frame: pd.DataFrame) -> tuple[pd.DataFrame, pa.Table | None]:
    """The frame without its list columns, and those columns as a typed Arrow table (None when it has none)."""
    present = [c for c in LIST_TYPES if c in frame.columns]
    if not present:
        return frame, None
    lists = pa.table({c: _list_column(frame[c], LIST_TYPES[c]) for c in present})
    return frame.drop(columns=present), lists


def _list_column(column: pd.Series, kind: pa.DataType) -> pa.Array | pa.ChunkedArray:
    """A list column as Arrow: as it is when it already is (a batch's contributions), else from its Python lists."""
    if isinstance(column.dtype, pd.ArrowDtype) and column.dtype.pyarrow_dtype == kind:
        return column.array.__arrow_array__()
    return pa.array([_listed(v) for v in column], type=kind)


def _insert_sql(frame: str, lists: pa.Table | None) -> str:
    return f"SELECT * FROM {frame}" + (f" POSITIONAL JOIN {frame}_lists" if lists is not None else "")


def _logged_columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The decisions table's columns (a warehouse of an earlier version, not written since, lacks the newer ones)."""
    return {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'decisions'").fetchall()}


def _latest_batch_sql(con: duckdb.DuckDBPyConnection, any_version: bool = False, min_rows: int = 0,
                      any_policy: bool = False) -> str | None:
    """SQL for the id of the latest scoring batch (real-time answers aside), or None when the warehouse has no
    decision log yet. Parameters: the model version, then the lane policy's hash unless `any_policy` (neither with
    `any_version`, which takes the latest batch of any model and policy). With `min_rows`, only batches of at least
    that many scored rows count: a few rows say little about where the cut-offs of a full day's batch lie."""
    columns = _logged_columns(con)
    if not columns:
        return None
    batches = "request_id IS NULL" if "request_id" in columns else "true"  # a warehouse from before real-time rows
    if any_version:
        return f"SELECT batch_id FROM decisions WHERE {batches} ORDER BY decided_at DESC LIMIT 1"
    policy = "" if any_policy else " AND policy_hash = ?"
    return (f"SELECT batch_id FROM decisions WHERE {batches} AND model_version = ?{policy} "
            f"GROUP BY batch_id HAVING count(risk_score) >= {int(min_rows)} ORDER BY max(decided_at) DESC LIMIT 1")


def _answers_frame(rows: list[dict]) -> pd.DataFrame:
    """The log's rows (JSON or PostgreSQL records) typed as the table's columns."""
    frame = pd.DataFrame.from_records(rows)
    frame["decided_at"] = pd.to_datetime(frame["decided_at"])
    return frame.astype({"position": "int64", **{c: "float64" for c in ("risk_score", "expected_revenue",
                                                                         "contribution_base", "inclusion_probability")
                                                 if c in frame}})


def _insert_answers(con: duckdb.DuckDBPyConnection, answers: pd.DataFrame) -> int:
    """Insert the rows of `answers` not logged yet (same batch id and position); returns how many were added."""
    rows, lists = _split_lists(answers)
    con.register("answers", rows)
    if lists is not None:
        con.register("answers_lists", lists)
    # Only rows decided since the earliest of these can be the same ones: the filter lets DuckDB skip the older
    # part of the log instead of scanning all of it.
    added = con.execute(
        f"INSERT INTO decisions BY NAME {_insert_sql('answers', lists)} WHERE NOT EXISTS (SELECT 1 FROM decisions d "
        "WHERE d.decided_at >= ? AND d.batch_id = answers.batch_id AND d.position = answers.position)",
        [answers["decided_at"].min()]).fetchone()[0]
    con.unregister("answers")
    if lists is not None:
        con.unregister("answers_lists")
    return int(added)


def _given(model_version: str | None, policy_hash: str | None) -> list:
    return [model_version] if policy_hash is None else [model_version, policy_hash]


class Decisions:
    """The decision log of one warehouse (`warehouse.decisions`)."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    def append_batch(self, decisions: pd.DataFrame | Iterable[pd.DataFrame],
                     rejected: pd.DataFrame | Iterable[pd.DataFrame], batch_id: str, source: str,
                     decided_at: datetime) -> int:
        """Append a scoring batch's decisions (never update or delete) and quarantine its invalid rows, atomically:
        each given as one frame, or as a batch's parts in order (a batch scored in partitions), a part in memory at a
        time.

        Appending the same batch id twice (a retried task) adds nothing. Returns the rows newly quarantined."""
        with self.warehouse.transaction() as con:
            if con.execute("SELECT count(*) FROM decisions WHERE batch_id = ?", [batch_id]).fetchall()[0][0]:
                return 0
            for part in [decisions] if isinstance(decisions, pd.DataFrame) else decisions:
                rows, lists = _split_lists(part.assign(batch_id=batch_id, decided_at=decided_at, source=source))
                table = pa.Table.from_pandas(rows, preserve_index=False)
                for column in lists.column_names if lists is not None else []:
                    table = table.append_column(column, lists[column])
                # Through a relation, not a registered view: DuckDB keeps a view's data until the transaction ends,
                # and a batch's parts would add up there.
                con.from_arrow(table).query("new_decisions", "INSERT INTO decisions BY NAME SELECT * FROM new_decisions")
            return sum(len(self.warehouse.quarantine(con, "declarations", source, part, batch_id, decided_at))
                       for part in ([rejected] if isinstance(rejected, pd.DataFrame) else rejected))

    def sync(self, oplog: OperationalLog) -> int:
        """Copy the answers the operational log holds and this table lacks, in one transaction with the cursor of
        each source copied (features/warehouse/oplog.py): a copy that dies half-way leaves the previous state, and
        a row copied twice (a repeated read) is added once. Returns the rows added."""
        with self.warehouse.transaction() as con:
            cursors = dict(con.execute("SELECT source, position FROM decision_sync").fetchall())
            changes = list(oplog.changes(cursors))
            rows = [r for c in changes for r in c.rows]
            added = _insert_answers(con, _answers_frame(rows)) if rows else 0
            for change in changes:
                con.execute("DELETE FROM decision_sync WHERE source = ?", [change.source])
                if not change.finished:
                    con.execute("INSERT INTO decision_sync VALUES (?, ?, now())", [change.source, change.cursor])
        oplog.forget([c.source for c in changes if c.finished])
        return added

    def latest_batch(self, model_version: str | None, policy_hash: str | None = None,
                     min_rows: int = 0) -> pd.DataFrame:
        """The scored rows of the latest scoring batch made with this model version and lane policy (any policy
        when None), of at least `min_rows` scored rows (real-time answers aside): their lanes and scores, which the
        API learns its cut-offs from (not the stored reasons and contributions, the bulk of the log)."""
        if not self.warehouse.path.exists():
            return pd.DataFrame()
        with self.warehouse.connect(read_only=True) as con:
            latest = _latest_batch_sql(con, min_rows=min_rows, any_policy=policy_hash is None)
            if latest is None:
                return pd.DataFrame()
            stratum = "stratum" if "stratum" in _logged_columns(con) else "NULL::VARCHAR AS stratum"
            return con.execute(f"SELECT {', '.join(LANE_COLUMNS)}, {stratum} FROM decisions WHERE batch_id = "
                               f"({latest}) AND risk_score IS NOT NULL", _given(model_version, policy_hash)).df()

    def latest_scoring_batch(self) -> pd.DataFrame:
        """Every row of the latest scoring batch, whatever its model version (real-time answers aside), with the
        office and filing date of the declarations the warehouse holds (missing for the others), each row's
        inclusion probability, and the outcome of those a control reported on: the analysts' page's lanes, score
        distribution and estimate of fraud among the batch's declarations."""
        if not self.warehouse.path.exists():
            return pd.DataFrame()
        with self.warehouse.connect(read_only=True) as con:
            latest = _latest_batch_sql(con, any_version=True)
            if latest is None:
                return pd.DataFrame()
            logged = _logged_columns(con)
            probability = "b.inclusion_probability" if "inclusion_probability" in logged else "NULL::DOUBLE"
            stratum = "b.stratum" if "stratum" in logged else "NULL::VARCHAR"
            return con.execute(
                "SELECT b.batch_id, b.decided_at, b.position, b.declaration_id, b.risk_score, b.expected_revenue, "
                "b.lane, b.selected_by, b.model_version, b.policy_hash, d.office_id, d.declaration_date, "
                f"{probability} AS inclusion_probability, {stratum} AS stratum, d.hs_code, d.importer_id, "
                "CASE WHEN d.inspected = 1 THEN d.fraud END AS fraud, "
                "CASE WHEN d.inspected = 1 THEN d.revenue END AS revenue "
                f"FROM decisions b LEFT JOIN declarations d USING (declaration_id) WHERE b.batch_id = ({latest}) "
                "ORDER BY b.position").df()

    def latest_for(self, declaration_id: str) -> tuple[dict | None, int]:
        """A declaration's latest decision (batch or real time) as a record, and how many decisions it has."""
        if not self.warehouse.path.exists():
            return None, 0
        with self.warehouse.connect(read_only=True) as con:
            found = con.execute("SELECT *, count(*) OVER () AS decisions FROM decisions WHERE declaration_id = ? "
                                "ORDER BY decided_at DESC, position DESC LIMIT 1", [declaration_id]).df()
        if found.empty:
            return None, 0
        record = found.iloc[0].to_dict()
        for column in LIST_TYPES:  # None where a row (or the warehouse's version) has none
            record[column] = _listed(record.get(column))
        if record["contributions"] is not None:
            record["contributions"] = [dict(c) for c in record["contributions"]]
        return record, int(record.pop("decisions"))

    def latest_batch_id(self, model_version: str | None, policy_hash: str | None = None,
                        min_rows: int = 0) -> str | None:
        """The id of the batch `latest_batch` reads, if any."""
        if not self.warehouse.path.exists():
            return None
        with self.warehouse.connect(read_only=True) as con:
            latest = _latest_batch_sql(con, min_rows=min_rows, any_policy=policy_hash is None)
            found = con.execute(latest, _given(model_version, policy_hash)).fetchall() if latest is not None else []
        return found[0][0] if found else None

    def released(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Declarations filed in [start, end] whose latest decision released them (green or yellow lane), with
        the importer, duty paid and the outcome where a control (a post-clearance audit's, say) reported one: the
        post-clearance audit's input."""
        return self.warehouse.read(FILED_LATEST.format(
            filed="importer_id, duty_paid, declaration_date, CASE WHEN inspected = 1 THEN fraud END AS fraud, "
                  "CASE WHEN inspected = 1 THEN revenue END AS revenue", where="",
            decided="lane, risk_score, expected_revenue, reasons", then="WHERE lane IN ('green', 'yellow')"), [start, end])

    def selection_design(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Every declaration filed in [start, end] with a decision: its latest decision's lane, selector and
        inclusion probability, its outcome where the red lane's control reported one (fraud and revenue, else
        missing), and its HS code, office and importer: the design training/compliance.py estimates fraud among all
        goods from. An outcome on a released declaration (a post-clearance audit's finding) is not a draw of this
        design, whose probabilities are those of going red: the audit's own design weighs it
        (serving/post_clearance.py `released_compliance`)."""
        return self.warehouse.read(FILED_LATEST.format(
            filed="hs_code, office_id, importer_id, inspected, fraud AS found_fraud, revenue AS found_revenue",
            where="", decided="lane, selected_by, inclusion_probability",
            then=""), [start, end]).pipe(_red_outcomes)

    def targeting_evidence(self) -> pd.DataFrame:
        """Targeted exploration's evidence: every decision whose stratum is a targeted source or the model's
        contested margin (random picks aside) and whose control reported, the latest decision per declaration,
        with its stratum, risk score, outcome and when it was decided (serving/targeting.py)."""
        return self._read_strata(
            "WITH latest AS (SELECT declaration_id, stratum, risk_score, decided_at FROM decisions "
            "WHERE stratum IS NOT NULL AND stratum NOT IN ('', 'random') QUALIFY row_number() OVER "
            "(PARTITION BY declaration_id ORDER BY decided_at DESC, position DESC) = 1) "
            "SELECT l.stratum, l.risk_score, d.fraud, l.decided_at FROM latest l JOIN declarations d "
            "USING (declaration_id) WHERE d.inspected = 1 AND d.fraud IS NOT NULL")

    def lead_evidence(self, since: datetime) -> pd.DataFrame:
        """The leads' evidence (features/leads.py): every declaration with a stratum decided since `since` whose
        control reported, as last decided: its stratum, risk score, outcome and the columns of its lead entities."""
        return self._read_strata(
            "WITH latest AS (SELECT declaration_id, stratum, risk_score FROM decisions WHERE decided_at >= ? "
            "QUALIFY row_number() OVER (PARTITION BY declaration_id ORDER BY decided_at DESC, position DESC) = 1) "
            "SELECT l.stratum, l.risk_score, d.fraud, d.importer_id, d.exporter_id, d.declarant_id, d.office_id, "
            "d.hs_code, d.origin_country FROM latest l JOIN declarations d USING (declaration_id) "
            "WHERE l.stratum <> '' AND d.inspected = 1 AND d.fraud IS NOT NULL AND l.risk_score IS NOT NULL", [since])

    def _read_strata(self, sql: str, params: list | None = None) -> pd.DataFrame:
        """A read of the log's strata: empty where there is no warehouse yet, or its log predates the strata."""
        if not self.warehouse.path.exists():
            return pd.DataFrame()
        with self.warehouse.connect(read_only=True) as con:
            if "stratum" not in _logged_columns(con):
                return pd.DataFrame()
            return con.execute(sql, params or []).df()

    def controlled_outcomes(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """Declarations filed in [start, end] that were controlled and have a fraud outcome, with their latest
        decision (lane, who selected it, score): what the monitor compares the model's expectation with."""
        return self.warehouse.read(FILED_LATEST.format(
            filed="fraud, revenue", where=" AND inspected = 1 AND fraud IS NOT NULL",
            decided="lane, selected_by, risk_score, expected_revenue", then=""), [start, end])

