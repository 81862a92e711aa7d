"""Batch scoring of a file: every input row gets an output row, in input order; invalid rows get the
policy's validation lane with their validation messages as reasons, and are quarantined.

A batch's `output` holds the score output contract's columns, then the scorer's detail columns (serving/scorer.py
DETAIL_COLUMNS: the reasons as a list and the stored contributions) that the decision log keeps; `write_output`
writes the contract's columns only."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.collector import memory_returned
from features.intake.checked import Checked, read_checked
from features.intake.mapping import ColumnMapping
from features.progress import Advance, quiet
from serving.reasons import CONTRIBUTIONS_TYPE
from serving.scorer import DETAIL_COLUMNS, OUTPUT_COLUMNS, Scorer

SCORE_EDGES = [0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0001]  # the report's score distribution


@dataclass
class BatchSummary:
    """What a batch's report and summary say of its output: rows per lane and selector, the highest risks, the
    score distribution. Summaries of consecutive parts of a batch combine into the batch's own."""

    rows: int
    scored: int
    lanes: pd.DataFrame  # lane, selected_by, rows (sorted by lane, then selector)
    highest: pd.DataFrame  # the top rows by risk score, highest first (earlier rows first among equals)
    histogram: pd.Series  # rows per interval of SCORE_EDGES
    top: int = 10

    @classmethod
    def of(cls, output: pd.DataFrame, top: int = 10) -> BatchSummary:
        lanes = output.groupby(["lane", "selected_by"], dropna=False).size().rename("rows").reset_index()
        scores = output["risk_score"].dropna()
        return cls(rows=len(output), scored=len(scores), lanes=lanes,
                   highest=output.dropna(subset=["risk_score"]).nlargest(top, "risk_score")[
                       ["declaration_id", "risk_score", "expected_revenue", "lane", "reasons"]],
                   histogram=pd.cut(scores, SCORE_EDGES, right=False).value_counts(sort=False), top=top)

    @classmethod
    def combine(cls, parts: Iterable[BatchSummary]) -> BatchSummary:
        parts = list(parts)
        lanes = pd.concat([p.lanes for p in parts]).groupby(["lane", "selected_by"], dropna=False)["rows"].sum()
        return cls(rows=sum(p.rows for p in parts), scored=sum(p.scored for p in parts), lanes=lanes.reset_index(),
                   highest=pd.concat([p.highest for p in parts]).nlargest(parts[0].top, "risk_score"),
                   histogram=sum(p.histogram for p in parts[1:]) + parts[0].histogram, top=parts[0].top)

    def counts(self, column: str) -> dict:
        """Rows per lane (or per selector), the most first."""
        counts = self.lanes.groupby(column)["rows"].sum()
        return {k: int(v) for k, v in counts.sort_values(ascending=False, kind="stable").items()}


@dataclass
class ScoredBatch:
    output: pd.DataFrame  # the score output contract, then DETAIL_COLUMNS; one row per input row, in input order
    rejected: pd.DataFrame  # quarantine records of the invalid rows
    read: int

    def output_chunks(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """The output (or its `columns`) a part at a time, as serving/partitions.py's ScoredParts gives a batch
        scored in partitions."""
        yield self.output if columns is None else self.output[columns]

    def rejected_chunks(self) -> Iterator[pd.DataFrame]:
        yield self.rejected

    def summary(self) -> BatchSummary:
        return BatchSummary.of(self.output)

    def remove(self) -> None:
        """Nothing to remove: the output is in memory."""


def score_file(path: Path | pd.DataFrame, scorer: Scorer, mapping: ColumnMapping | None = None,
               advance: Advance = quiet) -> ScoredBatch:
    """Declarations in the mapping's layout (a file, or raw values as read from one) → the score output, through
    the same intake as ingest and the API's source-layout requests. `advance` is told of the scoring's progress."""
    scorer.read_ahead()  # the warehouse snapshot read while the file is
    return score_checked(read_checked(path, "declarations", mapping, every_row=True), scorer, advance)


def score_checked(checked: Checked, scorer: Scorer, advance: Advance = quiet) -> ScoredBatch:
    """The valid rows scored whole (serving/partitions.py scores a large file in partitions), the invalid ones in
    the policy's validation lane."""
    parts = []
    memory_returned()  # what reading the file decoded
    if len(checked.valid):
        scored = scorer.score(checked.valid, advance=advance)
        parts.append(scored.set_index(checked.valid.index))
    if len(checked.rejected):
        parts.append(invalid_output(checked, scorer))
    if len(parts) == 1 and parts[0].index.is_monotonic_increasing:  # every row valid: already in input order
        output = parts[0][OUTPUT_COLUMNS + DETAIL_COLUMNS].reset_index(drop=True)
    else:
        output = pd.concat(parts).sort_index()[OUTPUT_COLUMNS + DETAIL_COLUMNS].reset_index(drop=True)
    return ScoredBatch(output=output, rejected=checked.rejected, read=checked.read)


def invalid_output(checked: Checked, scorer: Scorer) -> pd.DataFrame:
    """The output rows of the invalid rows (indexed by position): the policy's validation lane, with their
    validation messages as reasons."""
    positions = checked.rejected["row_number"].to_numpy(dtype="int64") - 1
    return pd.DataFrame({
        "declaration_id": checked.ids.reindex(positions).astype("str").to_numpy(), "risk_score": np.nan,
        "expected_revenue": np.nan, "lane": scorer.policy.validation_lane, "selected_by": "validation",
        "reasons": checked.rejected["message"].to_numpy(), "model_version": scorer.version,
        "reason_list": validation_messages(checked, positions),
        "contributions": pd.array([None] * len(positions), dtype=pd.ArrowDtype(CONTRIBUTIONS_TYPE)),  # none: as typed
        "contribution_base": np.nan, "inclusion_probability": np.nan, "stratum": "",
    }, index=positions)[OUTPUT_COLUMNS + DETAIL_COLUMNS]


def validation_messages(checked: Checked, positions: np.ndarray) -> list[list[str]]:
    """Each rejected row's validation messages as a list (its quarantine message is them joined with "; ")."""
    failures = checked.failures
    by_row = failures.groupby("row", sort=False)["message"].agg(list).to_dict() if len(failures) else {}
    out = []
    for message, position in zip(checked.rejected["message"].tolist(), positions.tolist(), strict=True):
        listed = [str(m) for m in by_row.get(position, [])]
        out.append(listed if "; ".join(listed) == message else [str(message)])  # else: a rejection of its own
    return out


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet read a cell as a formula


# The score output contract's columns as a Parquet file holds them, whatever a part's own values would infer.
OUTPUT_SCHEMA = pa.schema([("declaration_id", pa.string()), ("risk_score", pa.float64()),
                           ("expected_revenue", pa.float64()), ("lane", pa.string()), ("selected_by", pa.string()),
                           ("reasons", pa.string()), ("model_version", pa.string())])


def write_output(output: pd.DataFrame | Iterable[pd.DataFrame], path: Path, suffix: str | None = None) -> None:
    """The score output (one frame, or a batch's parts in order) as Parquet (values verbatim) or CSV (text cells
    made safe to open in a spreadsheet), as `suffix` says (default: the path's own; a temporary name's is not the
    file's), a part at a time. The caller decides when the file may be seen: the scoring flow writes to a temporary
    name and renames it once its decisions are logged."""
    parts = [output] if isinstance(output, pd.DataFrame) else output
    parquet = (suffix or path.suffix).lower() in (".parquet", ".pq")
    writer = pq.ParquetWriter(path, OUTPUT_SCHEMA) if parquet else None
    try:
        for number, part in enumerate(parts):
            part = part[[c for c in OUTPUT_COLUMNS if c in part.columns]].reset_index(drop=True)  # the contract's
            if writer is not None:
                writer.write_table(pa.Table.from_pandas(part, schema=OUTPUT_SCHEMA, preserve_index=False))
            else:
                # RFC 4180 line ends: with "\n" alone, Python's csv writer leaves a cell holding a bare "\r"
                # unquoted, and readers split the row there.
                spreadsheet_safe(part).to_csv(path, index=False, lineterminator="\r\n", header=number == 0,
                                              mode="w" if number == 0 else "a")
    finally:
        if writer is not None:
            writer.close()


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula (starting with =, +, -, @, a tab or a carriage return)
    get a leading single quote, OWASP's rule against CSV injection: ids and reasons come from the declarations."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
            continue  # a negative number is a number, not a formula
        text = values.map(lambda v: v if isinstance(v, str) else None)
        risky = text.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool).to_numpy()
        if risky.any():
            out[column] = values.astype(object).where(~risky, "'" + text.astype(object))
    return out
