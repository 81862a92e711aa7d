"""The selection policies a backtest compares, and how each picks its week.

- `random`: the capacity drawn at random (`draws`: one independent, seeded draw per policy).
- `rules`: a static rule score fixed from the warm-up (`RuleBook`), as traditional risk profiles are.
- `model`, `hybrid` and `targeted`: a risk model fitted on what the policy has revealed (`Knowledge`, `fit_on`);
  the hybrid draws a share of its capacity at random; the targeted policy spends a share on informative sources
  (anomaly, novelty, uncertainty) as its bandit allots it, and draws a random stratum (serving/targeting.py). Their features are the week's label-free part (`shared_features`)
  plus entity profiles from the policy's own reveals only (`with_profiles`, `revealed_profiles`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.build import FeatureSet, build_features, column_order
from features.entities import entity_keys, hs_level
from features.errors import UserError
from features.prices import PriceBands
from features.profiles import PROFILE_COLUMNS, ProfileIndex, smoothed_rate, to_seconds
from serving.selection import Rules, capacity, exploration_draw, lowest_draws, rule_hits, select, top_k
from serving.targeting import RANDOM, Selection, allocation, ceiling, select_targeted, source_scores
from training.models import FitConfig, RiskModel, Split, fit_risk_model

if TYPE_CHECKING:
    from serving.backtest.replay import _Replay

DRAW_OFFSET = {"model": 0, "hybrid": 1, "random": 2, "rules": 3, "targeted": 4}  # independent seeded draws per policy
# The rules policy flags a segment whose smoothed warm-up hit rate is RISKY_LIFT times the overall rate,
# once it has at least this many warm-up inspections.
RISKY_LIFT = 2.0
MIN_INSPECTIONS = {"hs_chapter": 30, "origin_country": 30, "importer_id": 3}
UNDERPRICE_ZSCORE = -2.0  # unit price this many robust deviations below its HS×origin reference band
HARD_RULE_WEIGHT = 10.0  # a watch-list / prohibited-goods hit outranks any combination of risk flags


def draws(ids: pd.Series, seed: int, policy: str) -> np.ndarray:
    """The exploration draw of one policy: independent of the other policies' draws, reproducible."""
    return exploration_draw(ids, seed * 10 + DRAW_OFFSET[policy])


@dataclass(frozen=True)
class RuleBook:
    """A static rule score, fixed from the warm-up: traditional risk profiles, never updated afterwards."""

    risky: dict[str, frozenset]  # column → values flagged high-risk (hs_chapter, origin_country, importer_id)
    rules: Rules = field(default_factory=Rules)

    @classmethod
    def from_warmup(cls, labelled: pd.DataFrame, fraud: np.ndarray, rules: Rules) -> RuleBook:
        """Flag chapters, origins and importers whose smoothed warm-up hit rate is RISKY_LIFT × the overall rate."""
        segments = labelled.assign(hs_chapter=hs_level(labelled["hs_code"], "hs_chapter"), fraud=fraud)
        base = float(np.mean(fraud)) if len(fraud) else 0.0
        risky = {}
        for column, minimum in MIN_INSPECTIONS.items():
            stats = segments.groupby(column)["fraud"].agg(["sum", "size"])
            rate = smoothed_rate(stats["sum"], stats["size"], base)
            risky[column] = frozenset(stats.index[(stats["size"] >= minimum) & (rate >= RISKY_LIFT * base) & (base > 0)])
        return cls(risky=risky, rules=rules)

    def score(self, frame: pd.DataFrame, X: pd.DataFrame) -> np.ndarray:
        """One point per flag (far under the price band, risky chapter, origin, importer); hard rules on top."""
        score = (X["unit_price_zscore"].to_numpy() <= UNDERPRICE_ZSCORE).astype("float64")
        chapters = hs_level(frame["hs_code"], "hs_chapter")
        for column, values in (("hs_chapter", chapters), ("origin_country", frame["origin_country"]),
                               ("importer_id", frame["importer_id"])):
            score += values.isin(self.risky[column]).to_numpy()
        return score + HARD_RULE_WEIGHT * (rule_hits(frame, self.rules).to_numpy() != "")

    def describe(self) -> dict[str, int]:
        return {f"risky_{k}": len(v) for k, v in self.risky.items()}


# ---------------------------------------------------------------- features from what a policy knows


class _NoProfiles:
    """Stands in for a ProfileIndex when the week's shared features are built: profiles differ per policy, so
    none is looked up here; `with_profiles` adds each policy's."""

    def lookup(self, queries: pd.DataFrame, batch_first: dict | None = None,  # noqa: ARG002
               names: tuple[str, ...] = ()) -> pd.DataFrame:  # noqa: ARG002
        return pd.DataFrame(index=queries.index)


def shared_features(rows: pd.DataFrame, bands: PriceBands) -> FeatureSet:
    """The label-free part of the features (values, documents, registry), built once a week for every policy."""
    return build_features(rows, bands=bands, profiles=_NoProfiles())


@dataclass(frozen=True)
class Queries:
    """A week's declarations as profile queries (entity keys, filing times in seconds): what `ProfileIndex.lookup`
    derives from the rows, made once a week and asked of each model policy's index."""

    keys: dict[str, np.ndarray]
    seconds: np.ndarray

    @classmethod
    def of(cls, rows: pd.DataFrame) -> Queries:
        return cls(keys=entity_keys(rows), seconds=to_seconds(rows["declaration_date"].to_numpy()))


def with_profiles(shared: FeatureSet, rows: pd.DataFrame, profiles: ProfileIndex,
                  queries: Queries | None = None) -> FeatureSet:
    """The full feature matrix: the shared part and a policy's entity profiles, in build_features' column order
    (`queries`: the rows' `Queries`, when they are asked of several indexes)."""
    queries = Queries.of(rows) if queries is None else queries
    found = pd.DataFrame(profiles.lookup_keys(queries.keys, queries.seconds), columns=PROFILE_COLUMNS, dtype="float64")
    categorical, numeric = column_order(shared.columns + list(found.columns))
    X = pd.concat([shared.X, found], axis=1)[categorical + numeric]
    return FeatureSet(X=X, meta=shared.meta, categorical=categorical, numeric=numeric,
                      price_bands=shared.price_bands)


def revealed_profiles(revealed: pd.DataFrame, filings: ProfileIndex) -> ProfileIndex:
    """Profiles from a policy's revealed labels only, with the filings (volumes, first seen) of every declaration.

    Filings carry no label, and a lookup only counts those strictly before each declaration's date, so one
    index of all filings serves every policy and every week.
    """
    return ProfileIndex(revealed, filings=filings)


@dataclass
class Knowledge:
    """What one model policy knows: the labels it revealed and their features as of selection time."""

    positions: list[np.ndarray] = field(default_factory=list)  # rows of BacktestData.frame
    fraud: list[np.ndarray] = field(default_factory=list)
    revenue: list[np.ndarray] = field(default_factory=list)
    control: list[np.ndarray] = field(default_factory=list)  # when each label became known
    X: list[pd.DataFrame] = field(default_factory=list)
    model: RiskModel | None = None
    trained_on: np.ndarray = field(default_factory=lambda: np.array([], dtype="int64"))  # positions of the last fit
    _profiles: ProfileIndex | None = field(default=None, repr=False)  # of these reveals; None once more are added

    def add(self, positions: np.ndarray, fraud: np.ndarray, revenue: np.ndarray, control: np.ndarray,
            X: pd.DataFrame) -> None:
        self._profiles = None
        self.positions.append(positions)
        self.fraud.append(fraud)
        self.revenue.append(revenue)
        self.control.append(control)
        self.X.append(X.reset_index(drop=True))

    def copy(self) -> Knowledge:
        return Knowledge(list(self.positions), list(self.fraud), list(self.revenue), list(self.control), list(self.X),
                         self.model, self.trained_on, self._profiles)

    def profiles(self, keyed: pd.DataFrame, filings: ProfileIndex) -> ProfileIndex:
        """`revealed_profiles` of what is known now, built once per state of knowledge (copies of the warm-up
        share the warm-up's until their first reveal)."""
        if self._profiles is None:
            self._profiles = revealed_profiles(self.labels_frame(keyed), filings)
        return self._profiles

    def labels_frame(self, keyed: pd.DataFrame) -> pd.DataFrame:
        """The revealed rows as a labelled history, for entity profiles."""
        positions = np.concatenate(self.positions)
        return keyed.iloc[positions].reset_index(drop=True).assign(
            inspected=1, fraud=np.concatenate(self.fraud), revenue=np.concatenate(self.revenue),
            control_date=np.concatenate(self.control))

    def training_set(self, before: pd.Timestamp, categorical: list[str], numeric: list[str]) -> tuple[FeatureSet, np.ndarray]:
        """Revealed rows whose label was known before `before`, with their selection-time features."""
        known = np.concatenate(self.control) < before.to_datetime64()
        X = pd.concat(self.X, ignore_index=True)[categorical + numeric][known].reset_index(drop=True)
        meta = pd.DataFrame({"fraud": np.concatenate(self.fraud)[known]})
        return FeatureSet(X=X, meta=meta, categorical=categorical, numeric=numeric), np.concatenate(self.positions)[known]


def fit_on(fs: FeatureSet, config: FitConfig) -> RiskModel:
    """P(fraud) on everything revealed so far (no validation window: the newest labels matter most under drift)."""
    y = fs.meta["fraud"].to_numpy()
    if len(np.unique(y)) < 2:
        raise UserError("the labels known at a refit hold a single class: use a longer warm-up")
    rows = np.ones(len(fs.X), dtype=bool)
    none = np.zeros(len(fs.X), dtype=bool)
    split = Split(train=rows, valid=none, holdout=none, valid_start=pd.NaT, holdout_start=pd.NaT)
    return fit_risk_model(fs, split, config)


# ---------------------------------------------------------------- one policy's week


@dataclass(frozen=True)
class Picked:
    """One policy's week: positions chosen within the week, the stratum of each, the policy's features (model
    policies) and every row's inclusion probability (None for a policy with no random part)."""

    chosen: np.ndarray
    stratum: np.ndarray
    fs: FeatureSet | None = None
    probability: np.ndarray | None = None
    selection: Selection | None = None  # the targeted policy's, for its bandit
    risk: np.ndarray | None = None  # an exploring policy's model scores of the week's rows (its bandit, its alert)


def _srs_probability(n: int, certain: np.ndarray, drawn: int) -> np.ndarray:
    """Inclusion probabilities of a week: 1 for the certain picks, drawn / (n − certain) for every other row."""
    probability = np.full(n, drawn / (n - len(certain)) if n > len(certain) else 1.0)
    probability[certain] = 1.0
    return probability


def _select(replay: _Replay, policy: str, rows: pd.DataFrame, shared: FeatureSet,
            queries: Queries | None = None) -> Picked:
    """One policy's picks of a week (`queries`: the week's profile queries, shared by the model policies)."""
    k = capacity(len(rows), replay.config.capacity)
    draw = draws(rows["declaration_id"], replay.config.seed, policy)
    if policy == "random":
        chosen = lowest_draws(draw, k)
        return Picked(chosen, np.full(len(chosen), "random", dtype=object),
                      probability=_srs_probability(len(rows), chosen[:0], len(chosen)))
    if policy == "rules":
        chosen = top_k(replay.rulebook.score(rows.reset_index(drop=True), shared.X), k, draw)
        return Picked(chosen, np.full(len(chosen), "rules", dtype=object))
    known = replay.knowledge[policy]
    fs = with_profiles(shared, rows, known.profiles(replay.keyed, replay.filings), queries)
    scores = known.model.risk(fs.X)
    if policy == "model":
        chosen = top_k(scores, k, draw)
        return Picked(chosen, np.full(len(chosen), "model", dtype=object), fs)
    if policy == "targeted":
        return _targeted(replay, scores, k, draw, fs)
    exploit, explored = select(scores, k, replay.config.exploration, draw)
    stratum = np.array(["model"] * len(exploit) + ["exploration"] * len(explored), dtype=object)
    return Picked(np.concatenate([exploit, explored]), stratum, fs, _srs_probability(len(rows), exploit, len(explored)),
                  risk=scores)


def _targeted(replay: _Replay, risk: np.ndarray, k: int, draw: np.ndarray, fs: FeatureSet) -> Picked:
    """The targeted policy's week: its bandit allots the capacity; the week's signals rank each source."""
    targeting = replay.config.targeting
    found = replay.targeted
    slots = allocation(k, targeting, found.bandit, found.rng)
    scores = source_scores(found.signals, risk, targeting)
    selection = select_targeted(risk, scores, slots, draw, ceiling(k, slots[RANDOM], targeting))
    return Picked(selection.positions, selection.stratum, fs, selection.probability, selection, risk)
