"""The backtest's settings: capacity, exploration, refit cadence, warm-up and the policies to compare.

Capacity, exploration, targeting bounds and hard rules are the lane policy's (`BacktestConfig.from_lanes`): a backtest replays the
policy that batch and real-time scoring apply (serving/lanes.py `LanePolicy`), not a second copy of it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pandas as pd

from features.errors import UserError
from serving.lanes import LanePolicy
from serving.selection import Rules
from serving.targeting import Targeting
from training.models import FitConfig

POLICIES = ("model", "hybrid", "targeted", "random", "rules")
REFIT_ITERATIONS = 100  # boosting rounds per refit: a replay refits each model policy every few weeks


@dataclass(frozen=True)
class BacktestConfig:
    capacity: float = 0.05  # inspections per week, as a share of the week's declarations: ⌈capacity·N⌉
    exploration: float = 0.10  # hybrid: share of the capacity drawn at random
    targeting: Targeting = field(default_factory=Targeting)  # targeted: the bandit's bounds and random stratum
    retrain_every: int = 4  # weeks between refits of the model policies
    warmup_weeks: int = 8  # initial history, labelled by the historical inspection policy
    warmup_share: float | None = None  # instead of warmup_weeks: this share of the weeks
    policies: tuple[str, ...] = POLICIES
    fit: FitConfig = FitConfig(iterations=REFIT_ITERATIONS)
    seed: int = 7
    rules: Rules = field(default_factory=Rules)  # the lane policy's hard rules (rules policy only)
    max_weeks: int | None = None  # replay at most this many weeks after the warm-up
    drift_date: pd.Timestamp | None = None  # overrides the data's own (e.g. a known change of regime)

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.capacity <= 1:
            problems.append(f"capacity {self.capacity} must be in (0, 1]")
        if not 0 <= self.exploration <= 1:
            problems.append(f"exploration {self.exploration} must be in [0, 1]")
        if self.retrain_every < 1:
            problems.append(f"retrain_every {self.retrain_every} must be at least 1")
        if self.warmup_weeks < 1 or (self.warmup_share is not None and not 0 < self.warmup_share < 1):
            problems.append("the warm-up needs at least one week (warmup_share in (0, 1))")
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown or not self.policies or len(set(self.policies)) != len(self.policies):
            problems.append(f"policies {list(self.policies)}: choose distinct ones among {', '.join(POLICIES)}")
        if problems:
            raise UserError("backtest: " + "; ".join(problems))

    @classmethod
    def from_lanes(cls, lanes: LanePolicy, **settings: object) -> BacktestConfig:
        """The backtest of a lane policy: its red share as the weekly capacity, its exploration share and its hard
        rules (`settings` give the rest, and may override capacity and exploration)."""
        if lanes.red_per_office_day is not None and "capacity" not in settings:
            raise UserError("backtest: the lane policy sets red_per_office_day; a replay selects a share of each "
                            "week: give --capacity")
        return cls(**{"capacity": lanes.red_share, "exploration": lanes.exploration_share, "rules": lanes.rules,
                      "targeting": lanes.targeting or Targeting(), **settings})

    def params(self) -> dict:
        """Flat parameters, for tracking."""
        out = {k: v for k, v in asdict(self).items() if k not in ("fit", "rules", "policies", "targeting")}
        out.update({f"fit_{k}": v for k, v in asdict(self.fit).items()})
        out["policies"] = ",".join(self.policies)
        out["rules"] = self.rules.model_dump_json()
        out["targeting"] = self.targeting.model_dump_json()
        return out
