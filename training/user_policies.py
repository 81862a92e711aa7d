"""The policies a user sets (flows/settings.py nests them), as plain dataclasses: their defaults are written here
once, and importing them costs nothing (no CatBoost, no pandas), so reading settings stays fast."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FitConfig:
    """The engineered model's CatBoost settings. Categorical combinations stay on (CatBoost's default depth of
    combinations): customs fraud lives in pairs such as importer × HS heading or declarant × office.

    Patient by default: `learning_rate` None takes a rate from the labelled rows' number (training.models.
    learning_rate_for: 0.05 up to 100k rows), `early_stopping_rounds` None a patience from the rate (300 rounds at
    0.05), `iterations` is only a cap. `blend`: also fit the same patient CatBoost on the mapped columns alone and
    blend the two (log-odds, weight chosen on the validation window), so that the model never rests on engineered
    groups that do not help. `refit`: refit the chosen members on train + validation with the rounds found.
    `time_budget_s`: the retrain's fits stop boosting (keeping their best round) and skip the refit once it is spent.
    `screening_rows`: the feature-group ablation's screening fits learn from a seeded sample of at most this many
    labelled training rows (validated on the whole validation window), so that a retrain's time stays predictable as
    the labelled rows grow. 200,000 training rows are about 285,000 labelled ones (the split trains on 70 %): the
    demo's 17,000 and any history up to about 2.9M declarations where a tenth are controlled screen on them all."""

    iterations: int = 5000
    learning_rate: float | None = None
    depth: int = 6
    l2_leaf_reg: float | None = None
    max_ctr_complexity: int | None = None
    early_stopping_rounds: int | None = None
    eval_metric: str = "AUC"  # early stopping on a ranking metric (CatBoost's PRAUC overrates its tied first rounds)
    has_time: bool = False  # CatBoost's ordered statistics in date order (rows are date-sorted) instead of at random
    seed: int = 7
    threads: int = -1
    ablation: bool = True  # leave out feature groups that do not help on the validation window
    screening_rows: int = 200_000  # the ablation's screening fits: at most this many training rows (a seeded sample)
    blend: bool = True
    refit: bool = True
    time_budget_s: float | None = 3600.0
    reference_iterations: int | None = None  # None: the library default (tests use fewer)

    def __post_init__(self) -> None:
        if self.screening_rows < 1:
            raise ValueError(f"screening_rows must be at least 1, not {self.screening_rows}")

    def catboost_params(self) -> dict:
        params = dict(iterations=self.iterations, learning_rate=self.learning_rate, depth=self.depth,
                      l2_leaf_reg=self.l2_leaf_reg, max_ctr_complexity=self.max_ctr_complexity,
                      eval_metric=self.eval_metric, random_seed=self.seed, has_time=self.has_time or None)
        return {k: v for k, v in params.items() if v is not None}


@dataclass(frozen=True)
class GatePolicy:
    metric: str = "pr_auc"  # pr_auc, or precision_at_Npct / recall_at_Npct / revenue_at_Npct
    confidence: float = 0.90  # of the bootstrap interval on the difference
    margin: float = 0.0  # over the champion, the interval's lower bound must exceed this
    resamples: int = 1000
    seed: int = 0
    block_on_warnings: bool = False  # unacknowledged validation warnings on the training data block promotion


@dataclass(frozen=True)
class MonitorThresholds:
    """What the monitor compares (its windows) and when it alerts."""

    window_days: int = 30  # the recent window compared with the champion's reference
    outcome_days: int = 90  # decisions whose control outcomes count towards the hit-rate checks
    psi: float = 0.25  # per feature; 0.1–0.25 is a moderate shift, above 0.25 a major one
    score_psi: float | None = None  # the risk score's; None: the same as a feature's
    missing_increase: float = 0.10  # absolute rise of a feature's missing rate
    min_rows: int = 200  # fewer declarations in the window: no drift verdict
    min_outcomes: int = 30  # fewer controlled selections: no outcome verdict
    hit_rate_tolerance: float = 0.15  # relative: scores at the top of a ranking run high (selection on the maximum)

    @property
    def score_threshold(self) -> float:
        return self.psi if self.score_psi is None else self.score_psi
