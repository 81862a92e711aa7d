"""Batch scoring of a file: every input row gets an output row, in input order; invalid rows get the
policy's validation lane with their validation messages as reasons, and are quarantined.

A batch's `output` holds the score output contract's columns, then the scorer's detail columns (serving/scorer.py
DETAIL_COLUMNS: the reasons as a list and the stored contributions) that the decision log keeps; `write_output`
writes the contract's columns only."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.intake.checked import Checked, read_checked
from features.intake.mapping import ColumnMapping
from features.progress import Advance, quiet
from serving.scorer import DETAIL_COLUMNS, OUTPUT_COLUMNS, Scorer


@dataclass
class ScoredBatch:
    output: pd.DataFrame  # the score output contract, then DETAIL_COLUMNS; one row per input row, in input order
    rejected: pd.DataFrame  # quarantine records of the invalid rows
    read: int


def score_file(path: Path | pd.DataFrame, scorer: Scorer, mapping: ColumnMapping | None = None,
               advance: Advance = quiet, score: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> ScoredBatch:
    """Declarations in the mapping's layout (a file, or raw values as read from one) → the score output, through
    the same intake as ingest and the API's source-layout requests. `advance` is told of the scoring's progress."""
    return score_checked(read_checked(path, "declarations", mapping, every_row=True), scorer, advance, score)


def score_checked(checked: Checked, scorer: Scorer, advance: Advance = quiet,
                  score: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> ScoredBatch:
    """The valid rows scored by `score` (default: `scorer.score`, the batch whole; serving/partitions.py scores it
    in partitions), the invalid ones in the policy's validation lane."""
    parts = []
    if len(checked.valid):
        scored = score(checked.valid) if score is not None else scorer.score(checked.valid, advance=advance)
        parts.append(scored.set_index(checked.valid.index))
    if len(checked.rejected):
        positions = checked.rejected["row_number"].to_numpy() - 1
        messages = validation_messages(checked, positions)
        parts.append(pd.DataFrame({
            "declaration_id": checked.ids.reindex(positions).astype("str").to_numpy(), "risk_score": np.nan,
            "expected_revenue": np.nan, "lane": scorer.policy.validation_lane, "selected_by": "validation",
            "reasons": checked.rejected["message"].to_numpy(), "model_version": scorer.version,
            "reason_list": messages, "contributions": None, "contribution_base": np.nan,
        }, index=positions))
    output = pd.concat(parts).sort_index()[OUTPUT_COLUMNS + DETAIL_COLUMNS].reset_index(drop=True)
    return ScoredBatch(output=output, rejected=checked.rejected, read=checked.read)


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


def write_output(output: pd.DataFrame, path: Path, suffix: str | None = None) -> None:
    """The score output as Parquet (values verbatim) or CSV (text cells made safe to open in a spreadsheet), as
    `suffix` says (default: the path's own; a temporary name's is not the file's). The caller decides when the
    file may be seen: the scoring flow writes to a temporary name and renames it once its decisions are logged."""
    output = output.drop(columns=[c for c in DETAIL_COLUMNS if c in output.columns])  # the contract's columns
    if (suffix or path.suffix).lower() in (".parquet", ".pq"):
        output.to_parquet(path, index=False)
    else:
        # RFC 4180 line ends: with "\n" alone, Python's csv writer leaves a cell holding a bare "\r" unquoted,
        # and readers split the row there.
        spreadsheet_safe(output).to_csv(path, index=False, lineterminator="\r\n")


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
