"""Relabelling: an outcomes file's control results applied to the declarations the warehouse holds."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from features.contract import LABEL_FIELDS, label_contradictions
from features.intake.prepared import reject

OUTCOME_FIELDS = LABEL_FIELDS  # what an outcomes file may relabel


def same_values(new: pd.Series, old: pd.Series) -> np.ndarray:
    """Element-wise equality where two missing values count as equal."""
    if pd.api.types.is_datetime64_any_dtype(new):
        new, old = new.astype("datetime64[us]"), pd.to_datetime(old).astype("datetime64[us]")
    else:
        new, old = new.astype("float64"), old.astype("float64")
    new, old = new.reset_index(drop=True), old.reset_index(drop=True)
    return ((new.isna() & old.isna()) | (new == old).fillna(False)).to_numpy(dtype=bool)


def apply_outcomes(con: duckdb.DuckDBPyConnection, outcomes: pd.DataFrame,
                   batch_id: str) -> tuple[int, int, list[pd.DataFrame]]:
    """Relabel stored declarations. Returns (updated, unchanged, [rejected unknown ids, rejected contradictions]).

    An outcome is checked as the declaration it would leave: the stored labels overlaid with the outcome's
    fields, against the stored filing date, by the declarations contract's label rules. So no relabel stores
    what a declaration file would be refused for (a control before the filing, which would count as known
    before the declaration existed; a fraud=0 under stored revenue or a critical finding)."""
    fields = [f for f in OUTCOME_FIELDS if f in outcomes.columns]
    # Frames reach DuckDB as relations, not registered views, whose data DuckDB keeps until the transaction ends: a
    # file applied chunk by chunk in one transaction holds a chunk at a time.
    current = con.from_df(outcomes).query("o", (
        f"SELECT o.declaration_id, d.declaration_id IS NOT NULL AS known, d.declaration_date, "
        f"{', '.join(f'd.{f} AS stored_{f}' for f in LABEL_FIELDS)} "
        f"FROM o LEFT JOIN declarations d ON o.declaration_id = d.declaration_id"
    )).df().set_index("declaration_id").reindex(outcomes["declaration_id"])
    current.index = outcomes.index
    known = current["known"].fillna(False).astype(bool).to_numpy()
    merged = pd.DataFrame({"declaration_date": current["declaration_date"]} | {
        f: outcomes[f] if f in fields else current[f"stored_{f}"] for f in LABEL_FIELDS})
    said = label_contradictions(merged[known], "declarations")
    contradicts = known & merged.index.isin(said.index[said != ""])
    unchanged = known & ~contradicts
    for f in fields:
        unchanged &= same_values(outcomes[f], current[f"stored_{f}"])
    changed = outcomes[known & ~contradicts & ~unchanged]
    if len(changed):
        assignments = ", ".join(f"{f} = changed.{f}" for f in fields)
        label = batch_id.replace("'", "''")
        con.from_df(changed).query("changed", (
            f"UPDATE declarations SET {assignments}, label_batch_id = '{label}' FROM changed "
            f"WHERE declarations.declaration_id = changed.declaration_id"))
    unknown = reject(outcomes[~known], "unknown_declaration",
                     "declaration_id is not in the warehouse; ingest the declaration first")
    inconsistent = reject(outcomes[contradicts], "inconsistent_labels",
                          ("inconsistent labels: " + said[said != ""]).tolist())
    return len(changed), int(unchanged.sum()), [unknown, inconsistent]
