"""Lane allocation: red (physical inspection) within capacity, yellow (documents), green (release).

Red is filled in order: rule hits (always, counted apart from capacity), model selections by rank, then a
random exploration share drawn deterministically from the declaration id and a seed. The selection itself
(capacity, the model/exploration split, top-k, the draw, rule hits) lives in serving/selection.py, shared with
the real-time lanes and the backtest; this module holds the YAML policy and applies it to a batch.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from features.errors import UserError, field_errors
from serving.selection import (  # noqa: F401 - RED, YELLOW, GREEN, Rules and rule_hits are re-exported
    GREEN,
    RED,
    YELLOW,
    Rules,
    capacity,
    exploration_draw,
    others,
    rule_hits,
    select,
    top_k,
)
from serving.targeting import (
    COMBINED,
    MARGIN,
    MODEL,
    RANDOM,
    SOURCE_PREFIX,
    Bandit,
    Targeting,
    allocation,
    ceiling,
    select_targeted,
    signal_scores,
    signals,
    source_columns,
    source_scores,
    strongest,
)


class LanePolicy(BaseModel):
    """The YAML lane policy. Capacity is a share of each batch, or a number per office per day."""

    model_config = ConfigDict(extra="forbid")
    red_share: float = Field(0.05, ge=0, le=1, description="physical inspections, as a share of the batch")
    red_per_office_day: int | None = Field(None, ge=0, description="instead of red_share: inspections per office per day")
    exploration_share: float = Field(0.1, ge=0, le=1, description="share of red capacity drawn at random")
    yellow_share: float = Field(0.10, ge=0, le=1, description="documentary checks, as a share of the batch")
    rank_by: Literal["risk_score", "expected_revenue"] = "risk_score"
    seed: int = 20240101
    threshold_min_rows: int = Field(
        1_000, ge=1, description="real time: a scoring batch sets the lanes' cut-offs only with at least this many "
                                 "scored rows (at 5 % red, 1,000 rows put 50 declarations above the red cut-off)")
    validation_lane: Literal["red", "yellow", "green"] = YELLOW
    rules: Rules = Field(default_factory=Rules)
    targeting: Targeting | None = Field(
        None, description="targeted exploration: the bandit's bounds and the random stratum (serving/targeting.py); "
                          "the backtest's targeted policy replays it")

    def digest(self) -> str:
        """A short hash recorded with every decision, so each can be traced to the policy that made it. It covers
        what decides a lane; `threshold_min_rows` only says which batch real time learns from, so it is left out
        (a policy keeps its hash across versions that add such fields)."""
        lanes = self.model_dump(exclude={"threshold_min_rows"} | ({"targeting"} if self.targeting is None else set()))
        return hashlib.sha256(json.dumps(lanes, sort_keys=True).encode()).hexdigest()[:12]


def load_policy(path: Path | None) -> LanePolicy:
    if path is None:
        return LanePolicy()
    try:
        return LanePolicy.model_validate(yaml.safe_load(Path(path).read_text()) or {})
    except FileNotFoundError as exc:
        raise UserError(f"lane policy {path}: no such file") from exc
    except Exception as exc:  # YAML or validation errors
        raise UserError(f"lane policy {path}: {field_errors(exc)}") from exc


def allocate(frame: pd.DataFrame, policy: LanePolicy, bandit: Bandit | None = None) -> pd.DataFrame:
    """Lanes for scored declarations. `frame` needs declaration_id, the rank column, importer_id, hs_code and
    origin_country (and office_id, declaration_date for per-office-day capacity). Returns lane, selected_by, rule,
    inclusion_probability and stratum."""
    inputs = lane_inputs(frame, policy)
    return pd.DataFrame(allocated(inputs, policy, bandit), index=inputs.index)


def lane_inputs(frame: pd.DataFrame, policy: LanePolicy) -> pd.DataFrame:
    """What allocation reads of each scored declaration, each a value of its row alone: the rule it hits, its
    exploration draw, its rank and (per-office-day capacity) its office and day. A batch scored in partitions
    keeps only these of its rows for allocating over the whole batch (serving/partitions.py)."""
    rank = frame[policy.rank_by].fillna(frame["risk_score"]).fillna(-1.0).to_numpy(dtype="float64")
    inputs = pd.DataFrame({"rule": rule_hits(frame, policy.rules).to_numpy(dtype=object),
                           "draw": exploration_draw(frame["declaration_id"], policy.seed), "rank": rank},
                          index=frame.index)
    if policy.red_per_office_day is not None:
        inputs["office"] = frame["office_id"].fillna("?").to_numpy()
        inputs["day"] = pd.to_datetime(frame["declaration_date"]).dt.date.to_numpy()
    if policy.targeting is not None:  # the targeted sources' scores (the scorer adds them) and the model's own risk
        inputs["risk"] = frame["risk_score"].to_numpy(dtype="float64")
        for column in source_columns(policy.targeting):
            inputs[column] = frame[column].to_numpy(dtype="float64") if column in frame else np.nan
    return inputs


def allocated(inputs: pd.DataFrame, policy: LanePolicy, bandit: Bandit | None = None) -> dict[str, np.ndarray]:
    """Lanes from `lane_inputs` of the whole batch: capacity is a share of it (or a number per office and day).
    `inclusion_probability` is each row's probability of going red: 1 for rule hits and model picks, and for every
    other row the exploration draw's sampling rate among them (serving/targeting.py; training/compliance.py reads
    it for the estimate of fraud among released goods).

    With the policy's `targeting`, the red capacity is shared between the model, the targeted sources and a random
    stratum as `bandit` (the decision log's evidence, serving/targeting.py `bandit_from_evidence`) allots it; a
    targeted pick has selected_by `exploration`, its source as `stratum`, the source's score as `source_score` and,
    for a `combined` pick, the signals that ranked it high as `source_detail` (words). The columns (lane,
    selected_by, rule) are object arrays: a batch of millions framed a partition at a time costs a fraction of one
    frame of them all."""
    rules = inputs["rule"].to_numpy(dtype=object)
    ruled = rules != ""
    lane, selected_by = np.full(len(inputs), GREEN, dtype=object), np.full(len(inputs), "", dtype=object)
    probability = np.ones(len(inputs))  # of going red: rule hits and model picks are certain
    stratum = np.full(len(inputs), "", dtype=object)  # an exploration pick's stratum
    lane[ruled], selected_by[ruled] = RED, "rule"
    draw, rank = inputs["draw"].to_numpy(), inputs["rank"].to_numpy()
    if policy.red_per_office_day is None:
        groups = [np.arange(len(inputs))]
    else:
        groups = list(inputs.groupby([inputs["office"], inputs["day"]], sort=True, dropna=False).indices.values())
    source_score = np.full(len(inputs), np.nan)
    source_detail = np.full(len(inputs), "", dtype=object)  # what a combined pick's signals saw, in words
    for positions in groups:
        n = len(positions)
        red = min(n, policy.red_per_office_day) if policy.red_per_office_day is not None \
            else capacity(n, policy.red_share)
        free = positions[~ruled[positions]]  # rule hits are red outside capacity
        if policy.targeting is not None:
            model, explored = _targeted(inputs, free, red, policy, bandit, probability, stratum, source_score,
                                        source_detail)
        else:
            whole = len(free) == len(rank)  # the whole batch, no rule hit: the arrays themselves, not copies
            model, explored = select(rank if whole else rank[free], red, policy.exploration_share,
                                     draw if whole else draw[free])
            stratum[free[explored]] = RANDOM
            drawn_from = free[others(len(free), model)]  # the exploration draw: a simple random sample of these
            probability[drawn_from] = len(explored) / len(drawn_from) if len(drawn_from) else 1.0
        lane[free[model]], selected_by[free[model]] = RED, "model"
        lane[free[explored]], selected_by[free[explored]] = RED, "exploration"
        rest = free[others(len(free), model, explored)]
        yellow = rest[top_k(rank[rest], capacity(n, policy.yellow_share), draw[rest])]
        lane[yellow], selected_by[yellow] = YELLOW, "model"
    out = {"lane": lane, "selected_by": selected_by, "rule": rules, "inclusion_probability": probability,
           "stratum": stratum}
    return out | ({"source_score": source_score, "source_detail": source_detail} if policy.targeting is not None
                  else {})


def _targeted(inputs: pd.DataFrame, free: np.ndarray, red: int, policy: LanePolicy, bandit: Bandit | None,
              probability: np.ndarray, stratum: np.ndarray, source_score: np.ndarray,
              source_detail: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A group's red capacity under targeted exploration: (model positions, explored positions) within `free`;
    fills the explored rows' stratum, source score and detail and every free row's inclusion probability."""
    targeting = policy.targeting
    bandit = bandit or Bandit((MODEL, *targeting.sources), targeting.discount)
    draw = inputs["draw"].to_numpy()[free]
    rng = np.random.default_rng([policy.seed, int(draw.sum(dtype="uint64") % 2**32)])  # the same batch, the same draw
    slots = allocation(red, targeting, bandit, rng)
    risk = inputs["risk"].to_numpy(dtype="float64")[free]
    scored = {s: inputs[f"{SOURCE_PREFIX}{s}"].to_numpy(dtype="float64")[free] for s in signals(targeting)
              if s != "uncertainty"}
    scores = source_scores(scored, risk, targeting)  # a row a source cannot score is not its pick (select_targeted)
    rank = inputs["rank"].to_numpy(dtype="float64")[free]
    chosen = select_targeted(rank, scores, slots, draw, ceiling(red, slots[RANDOM], targeting))
    probability[free] = chosen.probability
    model = chosen.positions[chosen.stratum == MODEL]
    explored = chosen.positions[chosen.stratum != MODEL]
    stratum[free[explored]] = chosen.stratum[chosen.stratum != MODEL]
    stratum[free[chosen.margin]] = MARGIN
    for source, positions in chosen.by_stratum().items():
        if source in scores:
            source_score[free[positions]] = scores[source][positions]
        if source == COMBINED:  # what it saw, for the officer
            seen = signal_scores(scored, risk, targeting)
            source_detail[free[positions]] = strongest({s: seen[s] for s in targeting.combined_of}, positions)
    return model, explored
