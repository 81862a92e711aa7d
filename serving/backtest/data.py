"""What a backtest replays: label-free declarations by date, the historical labels and the oracle, aligned.

Two sources: the embedded simulator (the oracle is its hidden truth) and a user's labelled history (the oracle
is their own labels). An islas world is the second kind, read from its export files as a user would read them,
with its hidden typology and its scheme's start put back for evaluation.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import labels
from features.build import integrate
from features.contract import LABEL_FIELDS
from features.entities import source_columns
from features.errors import UserError
from features.intake.mapping import load_mapping
from features.intake.prepared import prepare_batch
from features.simulator import IslasWorld, World, write_islas

HISTORY_LABELS = ["inspected", "fraud", "revenue", "control_date"]


@dataclass
class BacktestData:
    """What a backtest replays: label-free declarations, the historical labels, and the oracle (all aligned)."""

    frame: pd.DataFrame  # integrated declarations by date, without label columns
    history_labels: pd.DataFrame  # inspected, fraud, revenue, control_date: what the historical policy found
    oracle: pd.DataFrame  # fraud (0/1), revenue (NaN when the data has none), optionally typology
    source: str
    drift_date: pd.Timestamp | None = None
    left_out: int = 0  # unlabelled rows of a user's file: outside the universe


def _assemble(frame: pd.DataFrame, oracle: pd.DataFrame, source: str, drift_date: pd.Timestamp | None,
              left_out: int = 0) -> BacktestData:
    order = np.lexsort((frame["declaration_id"].to_numpy(), frame["declaration_date"].to_numpy()))
    frame, oracle = frame.iloc[order].reset_index(drop=True), oracle.iloc[order].reset_index(drop=True)
    labels = frame.reindex(columns=HISTORY_LABELS)
    labels["control_date"] = pd.to_datetime(labels["control_date"]).astype("datetime64[us]")
    return BacktestData(frame=frame.drop(columns=[c for c in LABEL_FIELDS if c in frame]), history_labels=labels,
                        oracle=oracle, source=source, drift_date=drift_date, left_out=left_out)


def from_world(world: World, source: str = "simulator") -> BacktestData:
    """The embedded default: every declaration is in the universe; the oracle is the simulator's hidden truth."""
    frame = integrate(world.declarations, world.manifests, world.traders)
    truth = world.truth.set_index("declaration_id").reindex(frame["declaration_id"].to_numpy())
    oracle = pd.DataFrame({"fraud": truth["is_fraud"].astype("int8").to_numpy(),
                           "revenue": truth["revenue_at_stake"].astype("float64").to_numpy(),
                           "typology": truth["typology"].to_numpy()})
    return _assemble(frame, oracle, source, world.drift_date)


def from_labelled(declarations: pd.DataFrame, source: str, manifests: pd.DataFrame | None = None,
                  traders: pd.DataFrame | None = None) -> BacktestData:
    """A user's labelled history: the universe is the rows with a fraud label; the oracle is their own labels."""
    if "fraud" not in declarations:
        raise UserError(f"{source}: a backtest needs a fraud label column (map it under 'labels')")
    labelled = labels.labelled(declarations)
    if not labelled.any():
        raise UserError(f"{source}: no row carries a fraud label")
    universe = declarations[labelled].assign(inspected=1)  # the contract's rule: a fraud value means controlled
    frame = integrate(universe, manifests, traders)
    revenue = (frame["revenue"].astype("float64").fillna(0.0) if "revenue" in frame and frame["revenue"].notna().any()
               else pd.Series(np.nan, index=frame.index))
    oracle = pd.DataFrame({"fraud": frame["fraud"].astype("int8").to_numpy(), "revenue": revenue.to_numpy()})
    return _assemble(frame, oracle, source, None, left_out=int((~labelled).sum()))


def from_islas(world: IslasWorld, source: str = "islas") -> BacktestData:
    """An islas world as a user's labelled history: its train and test files read through its mapping (the injected
    bad rows quarantined), then `from_labelled`; the oracle also gets the world's hidden typology and the
    backtest its scheme's start, where the world has an emerging scheme."""
    with tempfile.TemporaryDirectory(prefix="aduana-islas-") as folder:
        paths = write_islas(world, Path(folder))
        mapping = load_mapping(paths["mapping"])
        rows = pd.concat([prepare_batch(paths[name], "declarations", mapping).rows for name in ("train", "test")],
                         ignore_index=True)
    data = from_labelled(rows, source)
    if "typology" in world.truth:
        typology = world.truth.set_index("Declaration ID")["typology"]
        data.oracle["typology"] = typology.reindex(data.frame["declaration_id"].astype(str).to_numpy()).to_numpy()
    data.drift_date = world.drift_date
    return data


def label_free(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns entity profiles are keyed on, with no label at all (for the shared filings index)."""
    keyed = ["declaration_id", "declaration_date", *source_columns()]
    out = frame[[c for c in keyed if c in frame]].copy()
    return out.assign(inspected=0, fraud=np.nan, revenue=np.nan, control_date=pd.NaT)
