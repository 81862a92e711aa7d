"""The demo's held-out arrivals: the newest declarations, stripped of labels, and how a selection did on them.

Only evaluation code reads the hidden truth here; the pipeline never does.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import LABEL_FIELDS
from features.simulator.shipments import DETECTION_RATE
from features.simulator.world import World


def split_arrivals(world: World, share: float) -> tuple[World, pd.DataFrame, pd.DataFrame]:
    """The world's history (all but the newest `share` of declarations), the unlabelled arrivals, and their truth."""
    cut = world.declarations["declaration_date"].quantile(1 - share)
    arriving = (world.declarations["declaration_date"] >= cut).to_numpy()
    history = World(world.declarations[~arriving], world.manifests, world.traders, world.truth[~arriving],
                    world.drift_date)
    arrivals = world.declarations[arriving].drop(columns=list(LABEL_FIELDS))
    return history, arrivals, world.truth[arriving][["declaration_id", "is_fraud", "revenue_at_stake"]]


def selection_outcome(scored: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """What the red lane would have found, by the simulator's hidden outcomes."""
    joined = scored.merge(truth, on="declaration_id")
    red = joined["lane"] == "red"
    model_red = red & (joined["selected_by"] == "model")
    explored = joined["selected_by"] == "exploration"
    total_revenue = joined["revenue_at_stake"].sum()
    return {"red": int(red.sum()), "red_hit_rate": float(joined.loc[red, "is_fraud"].mean()),
            "model_red_hit_rate": float(joined.loc[model_red, "is_fraud"].mean()),
            "exploration_hit_rate": float(joined.loc[explored, "is_fraud"].mean()) if explored.any() else None,
            "base_fraud_rate": float(joined["is_fraud"].mean()),
            "red_revenue_share": float(joined.loc[red, "revenue_at_stake"].sum() / total_revenue) if total_revenue else None}


def control_outcomes(scored: pd.DataFrame, arrivals: pd.DataFrame, truth: pd.DataFrame, days: int = 5) -> pd.DataFrame:
    """What the controls of the red lane report back (an outcomes file): the simulator's truth for those rows only,
    found with the historical detection rate, closed `days` after filing."""
    red = scored.loc[scored["lane"] == "red", ["declaration_id"]]
    joined = red.merge(truth, on="declaration_id").merge(arrivals[["declaration_id", "declaration_date"]],
                                                          on="declaration_id")
    detected = joined["is_fraud"].to_numpy() & (np.random.default_rng(0).random(len(joined)) < DETECTION_RATE)
    return pd.DataFrame({"declaration_id": joined["declaration_id"], "inspected": 1, "fraud": detected.astype(int),
                         "revenue": np.where(detected, joined["revenue_at_stake"], 0.0),
                         "control_date": joined["declaration_date"] + pd.Timedelta(days=days)})
