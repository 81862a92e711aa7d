"""Lane allocation: red (physical inspection) within capacity, yellow (documents), green (release).

Red is filled in order: rule hits (always, counted apart from capacity), model selections by rank, then a
random exploration share drawn deterministically from the declaration id and a seed.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from features.data.errors import DataError, field_errors

RED, YELLOW, GREEN = "red", "yellow", "green"


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    watchlist_importers: list[str] = Field(default_factory=list)
    prohibited_hs_prefixes: list[str] = Field(default_factory=list)
    licensed_hs_prefixes: list[str] = Field(default_factory=list)
    embargoed_origins: list[str] = Field(default_factory=list)


class LanePolicy(BaseModel):
    """The YAML lane policy. Capacity is a share of each batch, or a number per office per day."""

    model_config = ConfigDict(extra="forbid")
    red_share: float = Field(0.05, ge=0, le=1, description="physical inspections, as a share of the batch")
    red_per_office_day: int | None = Field(None, ge=0, description="instead of red_share: inspections per office per day")
    exploration_share: float = Field(0.1, ge=0, le=1, description="share of red capacity drawn at random")
    yellow_share: float = Field(0.10, ge=0, le=1, description="documentary checks, as a share of the batch")
    rank_by: Literal["risk_score", "expected_revenue"] = "risk_score"
    seed: int = 20240101
    validation_lane: Literal["red", "yellow", "green"] = YELLOW
    rules: Rules = Field(default_factory=Rules)

    def digest(self) -> str:
        """A short hash recorded with every decision, so each can be traced to the policy that made it."""
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()[:12]


def load_policy(path: Path | None) -> LanePolicy:
    if path is None:
        return LanePolicy()
    try:
        return LanePolicy.model_validate(yaml.safe_load(Path(path).read_text()) or {})
    except FileNotFoundError as exc:
        raise DataError(f"lane policy {path}: no such file") from exc
    except Exception as exc:  # YAML or validation errors
        raise DataError(f"lane policy {path}: {field_errors(exc)}") from exc


def rule_hits(frame: pd.DataFrame, rules: Rules) -> pd.Series:
    """The first rule each declaration hits, as readable text ('' when none)."""
    hits = pd.Series("", index=frame.index, dtype="object")
    if not any(rules.model_dump().values()):  # no rules configured
        return hits
    hs = frame["hs_code"].astype("str")
    checks = [
        (frame["importer_id"].isin(rules.watchlist_importers), "importer {importer_id} is on the watch list"),
        (_prefixed(hs, rules.prohibited_hs_prefixes), "HS {hs_code} is prohibited"),
        (_prefixed(hs, rules.licensed_hs_prefixes), "HS {hs_code} needs an import licence"),
        (frame["origin_country"].isin(rules.embargoed_origins), "origin {origin_country} is under embargo"),
    ]
    for mask, template in reversed(checks):  # the first rule in this list wins
        for i in frame.index[mask.to_numpy()]:
            hits[i] = template.format(**frame.loc[i, ["importer_id", "hs_code", "origin_country"]].to_dict())
    return hits


def _prefixed(hs: pd.Series, prefixes: list[str]) -> pd.Series:
    return hs.str.startswith(tuple(prefixes)) if prefixes else pd.Series(False, index=hs.index)


def exploration_order(declaration_ids: pd.Series, seed: int) -> np.ndarray:
    """A pseudo-random number per declaration that depends only on its id and the seed."""
    keyed = declaration_ids.astype("str") + f"#{seed}"
    return pd.util.hash_pandas_object(keyed, index=False).to_numpy()


def allocate(frame: pd.DataFrame, policy: LanePolicy) -> pd.DataFrame:
    """Lanes for scored declarations. `frame` needs declaration_id, the rank column, importer_id, hs_code and
    origin_country (and office_id, declaration_date for per-office-day capacity). Returns lane, selected_by, rule."""
    rules = rule_hits(frame, policy.rules)
    lane = pd.Series(GREEN, index=frame.index, dtype="object")
    selected_by = pd.Series("", index=frame.index, dtype="object")
    lane[rules != ""] = RED
    selected_by[rules != ""] = "rule"
    draw = pd.Series(exploration_order(frame["declaration_id"], policy.seed), index=frame.index)
    rank = frame[policy.rank_by].fillna(frame["risk_score"]).fillna(-1.0)
    if policy.red_per_office_day is None:
        groups = [frame.index]
    else:
        keys = [frame["office_id"].fillna("?"), pd.to_datetime(frame["declaration_date"]).dt.date]
        groups = [g.index for _, g in frame.groupby(keys, sort=True, dropna=False)]
    for index in groups:
        n = len(index)
        capacity = min(n, policy.red_per_office_day) if policy.red_per_office_day is not None \
            else math.ceil(policy.red_share * n)
        explore = round(policy.exploration_share * capacity)
        free = index[(selected_by[index] == "").to_numpy()]
        by_rank = rank[free].sort_values(ascending=False, kind="stable").index
        chosen = by_rank[: max(capacity - explore, 0)]
        lane[chosen], selected_by[chosen] = RED, "model"
        rest = free.difference(chosen)
        drawn = draw[rest].sort_values(kind="stable").index[:explore]
        lane[drawn], selected_by[drawn] = RED, "exploration"
        remaining = rank[rest.difference(drawn)].sort_values(ascending=False, kind="stable").index
        yellow = remaining[: math.ceil(policy.yellow_share * n)]
        lane[yellow] = YELLOW
        selected_by[yellow] = "model"
    return pd.DataFrame({"lane": lane, "selected_by": selected_by, "rule": rules})
