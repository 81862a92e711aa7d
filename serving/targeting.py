"""Targeted exploration: the red capacity shared between the model, informative sources and a random stratum,
with the mix learned by a bandit, and every declaration's inclusion probability.

A model trained on inspection outcomes only learns the schemes earlier selections happened to inspect. Part of
the capacity therefore goes to declarations that are informative about what the model has not seen:

- `anomaly`: unusual for their context (training/anomaly.py);
- `new_pairs`, `importer_mix_shift`, `heading_origin_shift`, `declarant_client_shift`, `new_relationships`,
  `new_parties`: what is new in how trade is filed (features/novelty.py);
- `uncertainty`: where the model is least sure, p·(1 − p) (uncertainty sampling; Lewis & Gale 1994);
- `leads`: the trade relationships where recent exploration picks found fraud the model did not expect
  (features/leads.py);
- `combined`: the signals above ranked as one (the policy's `combined_of`), by Fisher's combination of each
  signal's rank in the batch (Fisher 1932): a declaration's empirical p-value under a signal is the share of the
  batch's declarations that signal scores at least as high, and its combined score is Σ −log p. A declaration that
  several signals rank high at once (new partners and goods for its importer, an unusual price, a relationship
  where controls found fraud) comes first; one signal's noise alone rarely does. Each signal on its own gets a
  few slots, and in each the new scheme's rows compete with that signal's ordinary noise; ranked together, they
  stand out.

How the capacity is shared is decided each week by discounted Thompson sampling (Thompson 1933; Raj & Kalyani
2017, "Taming non-stationary bandits"). Every arm (each source, and `model` for the model's marginal picks, the
ones a targeted slot would displace) keeps its discounted hits, picks and the hits its picks were expected to
give by the model's own scores; each week the past is discounted, so a source that starts to hit is noticed and
one that stops is forgotten. Two questions, two posteriors:

- the share: each flexible slot goes to the sources only when a source's hit rate, drawn from its Beta
  posterior, beats the model margin's (the administration's precision is what a slot costs);
- the mix: each targeted slot goes to the source whose lift, drawn from its Gamma posterior of hits over what
  the model expected of its picks (Gamma-Poisson), is highest: a source pays for its slot by finding fraud the
  model does not expect, which is what a new scheme is.

The lane policy bounds it: at least `min_share` and at most `max_share` of the capacity goes to the sources,
and a pure random stratum (`random_share` of the capacity, at least one declaration) is always drawn for the
unbiased estimate (training/compliance.py), as ASYCUDA keeps a minimum random rate.

Inclusion probabilities: given the week's allocation (decided before the week from past outcomes and the
bandit's own draws), model, rule and targeted picks are certain (1); the random stratum is a simple random
sample of the declarations left, so each of them had probability r / (N − certain). They sum to the capacity.

Pure: numpy and pandas; the bandit's randomness comes from a seeded generator.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.selection import lowest_draws, top_k

MODEL = "model"
RANDOM = "random"
MARGIN = "model-margin"  # the decision log's stratum of a model pick a targeted slot could have taken
SOURCE_PREFIX = "source_"  # a scored frame's column of a source's score: source_anomaly, source_new_pairs, …
SOURCES = ("anomaly", "new_pairs", "importer_mix_shift", "heading_origin_shift", "declarant_client_shift", "new_parties",
           "new_relationships", "uncertainty", "leads", "combined")
COMBINED = "combined"
# The policy's default: two arms. `combined` ranks the signals that speak of something new in the filings (an unusual
# value, a relationship taken up recently, a change in an importer's mix, a lead) as one; `leads` follows a find on
# its own as well, for a lead is a control's evidence, where the others are signs, and in the combined ranking a
# strong lead alone ranks below declarations that several signs point at. Not the model's own doubt
# (`uncertainty`: the model's part) nor what only a newcomer shows (`new_parties`, `new_pairs`, `heading_origin_shift`):
# their own arms when a policy names them. Measured in the backtest (README "Backtest"): with each signal its own
# arm, each got 1-5 slots a week, and their noise buried the new scheme's rows. Nor a declarant's sudden new clients
# (`declarant_client_shift`): in `combined_of` it found the default world's scheme sooner and more of it, but on
# Islas ranked brokers' ordinary onboarding above the scheme's rows the other signals agree on.
DEFAULT_SOURCES = (COMBINED, "leads")
DEFAULT_COMBINED = ("anomaly", "importer_mix_shift", "new_relationships", "leads")
SOURCE_WORDS = {
    "anomaly": "unusual for its goods, origin and importer",
    "new_pairs": "new pairings of its importer",
    "importer_mix_shift": "a sudden change in its importer's partners or goods",
    "heading_origin_shift": "its goods arriving from new origins",
    "declarant_client_shift": "its declarant suddenly filing for importers new to it",
    "new_parties": "a party first seen recently (importer, exporter or declarant)",
    "new_relationships": "an established importer with partners, goods or origins it took up recently",
    "uncertainty": "the model is least sure about it",
    "leads": "a trade relationship where recent controls found fraud the model did not expect",
    "combined": "several signals of something new at once",
    "model": "the model's risk score",
    "random": "drawn at random (unbiased sample)",
}


class Targeting(BaseModel):
    """The lane policy's bounds on targeted exploration (shares of the red capacity)."""

    model_config = ConfigDict(extra="forbid")
    sources: list[str] = Field(default_factory=lambda: list(DEFAULT_SOURCES),
                               description="targeted sources the bandit mixes")
    combined_of: list[str] = Field(default_factory=lambda: list(DEFAULT_COMBINED),
                                   description="the signals the `combined` source ranks as one")
    random_share: float = Field(0.03, ge=0, le=1, description="pure random stratum (at least one declaration)")
    min_share: float = Field(0.05, ge=0, le=1, description="targeted share: lower bound")
    max_share: float = Field(0.15, ge=0, le=1, description="targeted share: upper bound")
    discount: float = Field(0.9, gt=0, le=1, description="weekly weight kept of the bandit's past evidence")

    @model_validator(mode="after")
    def _bounds(self) -> Targeting:
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown:
            raise ValueError(f"unknown sources {unknown}: choose among {', '.join(SOURCES)}")
        signals = [s for s in SOURCES if s != COMBINED]
        if COMBINED in self.sources and not self.combined_of:
            raise ValueError("the combined source needs at least one signal in combined_of")
        if any(s not in signals for s in self.combined_of):
            raise ValueError(f"combined_of {self.combined_of}: choose among {', '.join(signals)}")
        if self.min_share > self.max_share:
            raise ValueError(f"min_share {self.min_share} is above max_share {self.max_share}")
        if self.random_share + self.max_share > 1:
            raise ValueError("random_share + max_share must leave the model part of the capacity (≤ 1)")
        return self


def signals(policy: Targeting) -> list[str]:
    """The signals a policy's sources read: each source's own, and the combined source's `combined_of`."""
    named = [*policy.sources, *(policy.combined_of if COMBINED in policy.sources else ())]
    return [s for s in dict.fromkeys(named) if s != COMBINED]


def source_columns(policy: Targeting) -> list[str]:
    """The scored frame's columns the policy's signals read (uncertainty comes from the risk score itself)."""
    return [f"{SOURCE_PREFIX}{s}" for s in signals(policy) if s != "uncertainty"]


def source_scores(scored: dict[str, np.ndarray], risk: np.ndarray, policy: Targeting) -> dict[str, np.ndarray]:
    """Each of the policy's sources' scores of a batch: `scored` holds the signals scored apart (anomaly, novelty,
    leads); uncertainty comes from the model's own risk, p·(1 − p); `combined` from the signals it combines."""
    read = signal_scores(scored, risk, policy)
    return {s: combined(read[c] for c in policy.combined_of) if s == COMBINED else read[s] for s in policy.sources}


def signal_scores(scored: dict[str, np.ndarray], risk: np.ndarray, policy: Targeting) -> dict[str, np.ndarray]:
    """Each of the policy's signals' scores of a batch (see `source_scores`)."""
    return {s: risk * (1 - risk) if s == "uncertainty" else scored[s] for s in signals(policy)}


def upper_p(score: np.ndarray) -> np.ndarray:
    """Each row's empirical p-value under one signal in its batch: the share of the batch's rows (n + 1, the row's
    own draw counted) scored at least as high; 1 for a row the signal has no score for."""
    score = np.asarray(score, dtype="float64")
    p = np.ones(len(score))
    finite = np.isfinite(score)
    if finite.any():
        values = score[finite]
        at_least = len(values) - np.searchsorted(np.sort(values), values, side="left")
        p[finite] = at_least / (len(score) + 1)
    return p


def combined(scores: Iterable[np.ndarray]) -> np.ndarray:
    """Fisher's combination of the signals' empirical p-values in the batch (`upper_p`): Σ −log p; NaN for a row no
    signal scores (no evidence: never the combined source's pick)."""
    total = sum(-np.log(upper_p(score)) for score in scores)
    return np.where(total > 0, total, np.nan)


def strongest(scores: dict[str, np.ndarray], at: np.ndarray, most: int = 3, level: float = 0.05) -> list[str]:
    """What the combined source saw in each row at positions `at`, in an officer's words: the signals (at most
    `most`, strongest first) under which the row is in the batch's top `level`, each with its share."""
    p = {s: upper_p(score)[at] for s, score in scores.items()}
    out = []
    for i in range(len(at)):
        top = sorted((p[s][i], s) for s in p if p[s][i] <= level)[:most]
        out.append("; ".join(f"{SOURCE_WORDS[s]} (top {_share(q)})" for q, s in top))
    return out


def _share(p: float) -> str:
    percent = 100 * p
    return f"{percent:.2g} %" if percent < 1 else f"{percent:.0f} %"


def ceiling(k: int, random: int, policy: Targeting) -> int:
    """The most slots of a capacity k the sources may take: `max_share` of it, within what the random stratum leaves."""
    return min(k - random, round(policy.max_share * k))


@dataclass
class Bandit:
    """Discounted Thompson sampling over the arms (the model's margin and the targeted sources): Beta-Bernoulli on
    each arm's hit rate, Gamma-Poisson on its lift (hits over the hits the model expected of its picks)."""

    arms: tuple[str, ...]
    discount: float
    hits: dict[str, float] = field(default_factory=dict)
    trials: dict[str, float] = field(default_factory=dict)
    expected: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for arm in self.arms:
            for kept in (self.hits, self.trials, self.expected):
                kept.setdefault(arm, 0.0)

    def posterior(self, arm: str) -> tuple[float, float]:
        """Beta(1 + hits, 1 + misses) of the hit rate: a uniform prior, then the discounted evidence."""
        return 1.0 + self.hits[arm], 1.0 + self.trials[arm] - self.hits[arm]

    def mean(self, arm: str) -> float:
        a, b = self.posterior(arm)
        return a / (a + b)

    def lift(self, arm: str) -> float:
        """The posterior mean lift, Gamma(1 + hits, 1 + expected): 1 (as the model expects) before any evidence."""
        return (1.0 + self.hits[arm]) / (1.0 + self.expected[arm])

    def draw(self, slots: int, sources: list[str], rng: np.random.Generator) -> dict[str, int]:
        """Slots per arm: a slot stays the model's unless a source's hit-rate draw beats the model margin's; a
        source's slot goes to the source with the highest lift draw."""
        out = dict.fromkeys([MODEL, *sources], 0)
        if slots <= 0 or not sources:
            out[MODEL] = max(slots, 0)
            return out
        a, b = zip(*(self.posterior(arm) for arm in (MODEL, *sources)), strict=True)
        rates = rng.beta(a, b, size=(slots, len(a)))
        targeted = int((rates[:, 1:].max(axis=1) > rates[:, 0]).sum())
        out[MODEL] = slots - targeted
        out.update(self.mix(targeted, sources, rng))
        return out

    def mix(self, slots: int, sources: list[str], rng: np.random.Generator) -> dict[str, int]:
        """Targeted slots per source: each to the source with the highest lift drawn from its posterior."""
        if slots <= 0:
            return dict.fromkeys(sources, 0)
        shape = np.array([1.0 + self.hits[s] for s in sources])
        rate = np.array([1.0 + self.expected[s] for s in sources])
        winners = np.argmax(rng.gamma(shape, 1.0 / rate, size=(slots, len(sources))), axis=1)
        return {s: int(n) for s, n in zip(sources, np.bincount(winners, minlength=len(sources)), strict=True)}

    def update(self, outcomes: dict[str, tuple[float, int, float]]) -> None:
        """A week's outcomes per arm, (hits, picks, hits the model expected): the past is discounted first."""
        for arm in self.arms:
            for kept in (self.hits, self.trials, self.expected):
                kept[arm] *= self.discount
        for arm, (hits, picks, expected) in outcomes.items():
            if arm in self.hits:
                self.hits[arm] += float(hits)
                self.trials[arm] += float(picks)
                self.expected[arm] += float(expected)

    def to_dict(self) -> dict:
        return {arm: {"hit_rate": round(self.mean(arm), 4), "lift": round(self.lift(arm), 3),
                      "evidence": round(self.trials[arm], 2)} for arm in self.arms}


def allocation(k: int, policy: Targeting, bandit: Bandit, rng: np.random.Generator) -> dict[str, int]:
    """A capacity k split into the model, each targeted source and the random stratum, within the policy's bounds.

    The random stratum takes `random_share` of k (at least one when the share is positive); `min_share` of k
    goes to the sources whatever the evidence, and up to `max_share` when they out-hit the model's margin (see
    `Bandit.draw`); the sources' slots are mixed by lift."""
    random = min(k, max(1, round(policy.random_share * k))) if policy.random_share > 0 and k > 0 else 0
    most = ceiling(k, random, policy)
    floor = min(most, round(policy.min_share * k))
    won = bandit.draw(most - floor, policy.sources, rng)
    floor_mix = bandit.mix(floor, policy.sources, rng)
    sources = {s: won.get(s, 0) + floor_mix.get(s, 0) for s in policy.sources}
    return {MODEL: k - random - sum(sources.values()), **sources, RANDOM: random}


@dataclass(frozen=True)
class Selection:
    """One batch's red selection: positions, the stratum of each, and every row's inclusion probability."""

    positions: np.ndarray
    stratum: np.ndarray  # MODEL, a source, or RANDOM, per position
    probability: np.ndarray  # per row of the batch (not only the selected)
    margin: np.ndarray  # the model picks inside the flexible window (the model arm's evidence)

    def by_stratum(self) -> dict[str, np.ndarray]:
        return {s: self.positions[self.stratum == s] for s in dict.fromkeys(self.stratum)}


def select_targeted(risk: np.ndarray, scores: dict[str, np.ndarray], slots: dict[str, int], draw: np.ndarray,
                    flexible: int) -> Selection:
    """Fill the slots: the model's top picks by risk, then each source's highest scores among the rows left (the
    sources with most slots first; ties by the seeded draw; a row without a score is not a source's pick, and the
    slots a source cannot fill go back to the model), then a random draw among the rest.
    `flexible`: how many slots the bandit allotted (the model's picks beyond k − random − flexible are its margin)."""
    n = len(risk)
    model = top_k(risk, slots[MODEL], draw)
    taken = np.zeros(n, dtype=bool)
    taken[model] = True
    positions, stratum, spare = [model], [np.full(len(model), MODEL, dtype=object)], 0
    for source in sorted((s for s in scores if slots.get(s, 0) > 0), key=lambda s: -slots[s]):
        free = np.flatnonzero(~taken)
        free = free[np.isfinite(scores[source][free])]  # a row the source has no score for is not its pick
        picked = free[top_k(scores[source][free], min(slots[source], len(free)), draw[free])]
        spare += slots[source] - len(picked)
        taken[picked] = True
        positions.append(picked)
        stratum.append(np.full(len(picked), source, dtype=object))
    if spare:  # slots a source could not fill go back to the model
        free = np.flatnonzero(~taken)
        more = free[top_k(risk[free], spare, draw[free])]
        taken[more] = True
        model = np.concatenate([model, more])
        positions.append(more)
        stratum.append(np.full(len(more), MODEL, dtype=object))
    rest = np.flatnonzero(~taken)
    random = rest[lowest_draws(draw[rest], slots.get(RANDOM, 0))]
    positions.append(random)
    stratum.append(np.full(len(random), RANDOM, dtype=object))
    probability = np.ones(n)
    probability[rest] = len(random) / len(rest) if len(rest) else 1.0
    guaranteed = max(0, sum(slots.values()) - slots.get(RANDOM, 0) - flexible)
    return Selection(positions=np.concatenate(positions), stratum=np.concatenate(stratum), probability=probability,
                     margin=model[guaranteed:])


def outcomes(selection: Selection, fraud: np.ndarray, risk: np.ndarray) -> dict[str, tuple[float, int, float]]:
    """(hits, picks, hits the model expected) per arm of a selection whose labels are known (`fraud` per selected
    position, in order; `risk` the model's score of every row): the model arm counts only its margin."""
    hit = dict(zip(selection.positions.tolist(), fraud.tolist(), strict=True))
    out = {}
    for stratum, positions in selection.by_stratum().items():
        if stratum in (MODEL, RANDOM):
            continue
        out[stratum] = (sum(hit[p] for p in positions.tolist()), len(positions), float(np.sum(risk[positions])))
    margin = selection.margin
    out[MODEL] = (sum(hit[p] for p in margin.tolist()), len(margin), float(np.sum(risk[margin])))
    return out


def bandit_from_evidence(evidence: pd.DataFrame, policy: Targeting, now: pd.Timestamp) -> Bandit:
    """The bandit of a batch, from the decision log: every past targeted pick, random pick aside, and every model
    pick in the contested window (stratum `model-margin`) whose control reported (`stratum`, `risk_score`, `fraud`,
    `decided_at`), each weighted by the policy's discount per week of age, as the weekly updates would have left it."""
    bandit = Bandit((MODEL, *policy.sources), policy.discount)
    if evidence.empty:
        return bandit
    weeks = ((now - pd.to_datetime(evidence["decided_at"])).dt.days // 7).clip(lower=0).to_numpy()
    weight = policy.discount ** weeks
    arm = evidence["stratum"].replace({MARGIN: MODEL}).to_numpy()
    fraud = evidence["fraud"].astype("float64").to_numpy()
    risk = evidence["risk_score"].astype("float64").fillna(0.0).to_numpy()
    for name in bandit.arms:
        mine = arm == name
        bandit.hits[name] = float((weight * fraud)[mine].sum())
        bandit.trials[name] = float(weight[mine].sum())
        bandit.expected[name] = float((weight * risk)[mine].sum())
    return bandit
