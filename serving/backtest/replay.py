"""The replay: the history cut into weeks, the warm-up, then week by week each policy refits when due, selects,
learns the labels of its own picks at the week's end, and is scored.

The oracle is read in two places only: `_reveal` (a selected row's label) and `_record` (the week's outcome
counts, for the metrics).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features import labels
from features.build import FeatureSet
from features.errors import UserError
from features.leads import lead_keys, lead_scores, residuals
from features.novelty import NOVELTY_COLUMNS, NoveltyIndex
from features.prices import PriceBands
from features.profiles import LABEL_LAG_DAYS, RECENT_DAYS, ProfileIndex
from serving.backtest.config import BacktestConfig
from serving.backtest.data import BacktestData, label_free
from serving.backtest.policies import (
    Knowledge,
    Picked,
    Queries,
    RuleBook,
    _select,
    fit_on,
    shared_features,
    with_profiles,
)
from serving.backtest.report import BacktestSummary, _ratio, summarise, weekly_table
from serving.targeting import MODEL, Bandit, outcomes
from training.anomaly import AnomalyModel, anomaly_columns
from training.compliance import fraud_rate
from training.drift import wilson
from training.user_policies import MonitorThresholds

MODEL_POLICIES = ("model", "hybrid", "targeted")


@dataclass(frozen=True)
class Plan:
    """Weeks of the history: row bounds (the frame is sorted by date), the warm-up and the weeks replayed."""

    origin: pd.Timestamp  # the first week starts here
    bounds: np.ndarray  # rows of week w are frame.iloc[bounds[w]:bounds[w + 1]]
    warmup: int
    end: int  # replay weeks warmup … end - 1

    def start(self, week: int) -> pd.Timestamp:
        return self.origin + pd.Timedelta(days=7 * week)

    def number(self, week: int) -> int:
        """The week's number in the replay (1 = the first week after the warm-up)."""
        return week - self.warmup + 1

    def last_day(self, week: int) -> pd.Timestamp:
        return self.start(week) + pd.Timedelta(days=6)


def plan_weeks(dates: pd.Series, config: BacktestConfig) -> Plan:
    day = dates.dt.normalize()
    origin = day.min()
    week = ((day - origin).dt.days // 7).to_numpy()
    n_weeks = int(week.max()) + 1
    warmup = max(1, round(config.warmup_share * n_weeks)) if config.warmup_share else config.warmup_weeks
    if warmup >= n_weeks:
        raise UserError(f"the history spans {n_weeks} weeks: a {warmup}-week warm-up leaves nothing to replay")
    end = n_weeks if config.max_weeks is None else min(n_weeks, warmup + config.max_weeks)
    return Plan(origin=origin, bounds=np.searchsorted(week, np.arange(n_weeks + 1)), warmup=warmup, end=end)


@dataclass
class BacktestResult:
    weekly: pd.DataFrame  # one row per (week, policy)
    summary: BacktestSummary
    selections: pd.DataFrame  # week, policy, declaration_id, stratum
    training_ids: dict[str, np.ndarray]  # per model policy: the declarations its last model was fitted on
    warmup_labelled_ids: np.ndarray
    config: BacktestConfig

    @property
    def params(self) -> dict:
        return {**self.config.params(), "source": self.summary.source, "universe_rows": self.summary.universe_rows}


@dataclass
class _Replay:
    """The state of one replay: shared indexes, each policy's knowledge, and what has been recorded."""

    data: BacktestData
    ids: np.ndarray  # declaration_id of every row of data.frame (converted once: a week reads only its picks')
    config: BacktestConfig
    plan: Plan
    filings: ProfileIndex
    keyed: pd.DataFrame  # label-free profile columns of every row
    bands: PriceBands
    rulebook: RuleBook | None
    knowledge: dict[str, Knowledge]
    columns: tuple[list[str], list[str]]  # categorical, numeric of the model policies' features
    warmup_labelled: np.ndarray  # rows the historical policy labelled in the warm-up
    records: list[dict] = field(default_factory=list)
    selections: list[pd.DataFrame] = field(default_factory=list)
    found: dict[str, list] = field(default_factory=dict)  # policy → [frauds found, selected] so far (progress)
    targeted: _Targeted | None = None  # the targeted policy's label-free sources and bandit
    designs: dict[str, list] = field(default_factory=dict)  # policy → per week (outcomes revealed, inclusion probability)
    pooled: dict[str, dict] = field(default_factory=dict)  # policy → the estimate over the whole replay
    unexpected: dict[str, tuple] = field(default_factory=dict)  # policy → its exploration picks since its last refit:
    # (frauds, picks, frauds its model expected)
    alert_refits: dict[str, int] = field(default_factory=dict)  # policy → refits its exploration's alert brought forward


@dataclass
class _Targeted:
    """What the targeted policy reads besides its model: novelty from every filing so far, an anomaly model of the
    recent weeks' declarations (label-free: refitted on the last weeks' shared features when the models refit),
    the leads of its own exploration picks' outcomes, the week's signals, and its bandit."""

    novelty: NoveltyIndex
    bandit: Bandit
    rng: np.random.Generator
    recent: list[pd.DataFrame]  # the shared feature matrices of the last weeks (the anomaly model's data)
    keep_weeks: int
    keys: dict[str, np.ndarray] = field(default_factory=dict)  # every row's lead entity keys (features/leads.py)
    evidence: list[tuple] = field(default_factory=list)  # per week: (positions, fraud, risk at selection, week's end)
    anomaly: AnomalyModel | None = None
    signals: dict[str, np.ndarray] = field(default_factory=dict)

    def refit_anomaly(self, numeric: list[str]) -> None:
        X = pd.concat(self.recent, ignore_index=True)
        self.anomaly = AnomalyModel().fit(X, anomaly_columns([c for c in numeric if c in X.columns]))

    def week(self, rows: pd.DataFrame, shared: FeatureSet, lo: int, start: pd.Timestamp) -> None:
        """The week's signals (every source but the model's uncertainty), and its matrix kept for the next refit
        (`lo`: the week's first row; `start`: its first day)."""
        found = self.novelty.lookup(rows)
        self.signals = {name: found[name].to_numpy() for name in NOVELTY_COLUMNS}
        self.signals["anomaly"] = self.anomaly.score(shared.X)
        self.signals["leads"] = self._leads(slice(lo, lo + len(rows)), start)
        self.recent = [*self.recent, shared.X][-self.keep_weeks:]

    def _leads(self, week: slice, start: pd.Timestamp) -> np.ndarray:
        """The week's lead scores, from the controls revealed in the RECENT_DAYS before it."""
        since = (start - pd.Timedelta(days=RECENT_DAYS)).to_datetime64()
        self.evidence = [e for e in self.evidence if e[3] >= since]
        if not self.evidence:
            return np.full(week.stop - week.start, np.nan)
        positions = np.concatenate([e[0] for e in self.evidence])
        found = residuals({k: v[positions] for k, v in self.keys.items()},
                          np.concatenate([e[1] for e in self.evidence]), np.concatenate([e[2] for e in self.evidence]))
        return lead_scores(found, {k: v[week] for k, v in self.keys.items()}, week.stop - week.start)

    def learn(self, positions: np.ndarray, fraud: np.ndarray, risk: np.ndarray, known: np.datetime64) -> None:
        """A week's revealed controls (rows of the frame), for the leads of the weeks after."""
        self.evidence.append((positions, np.asarray(fraud, dtype="float64"), risk, known))


def _warmup(data: BacktestData, plan: Plan, config: BacktestConfig) -> _Replay:
    """The initial history: the historical policy's labels of the warm-up weeks, the same for every policy."""
    cut = plan.bounds[plan.warmup]
    history = data.history_labels.iloc[:cut]
    labelled = np.flatnonzero(labels.labelled(history))
    if len(labelled) == 0:
        raise UserError("no controlled declaration in the warm-up weeks: nothing to start from")
    fraud = history["fraud"].iloc[labelled].astype("int8").to_numpy()
    revenue = history["revenue"].iloc[labelled].astype("float64").to_numpy()
    filed = data.frame["declaration_date"].iloc[labelled] + pd.Timedelta(days=LABEL_LAG_DAYS)
    control = history["control_date"].iloc[labelled].fillna(filed).to_numpy(dtype="datetime64[us]")
    keyed = label_free(data.frame)
    filings = ProfileIndex(keyed)
    bands = PriceBands.fit(data.frame.iloc[:cut])
    start = Knowledge()
    start.positions, start.fraud, start.revenue, start.control = [labelled], [fraud], [revenue], [control]
    rows = data.frame.iloc[labelled]
    fs = with_profiles(shared_features(rows, bands), rows, start.profiles(keyed, filings))
    start.X = [fs.X]
    rulebook = RuleBook.from_warmup(rows, fraud, config.rules) if "rules" in config.policies else None
    knowledge = {p: start.copy() for p in config.policies if p in MODEL_POLICIES}
    targeted = _targeted_start(data, plan, config, keyed, bands, fs.numeric) if "targeted" in config.policies else None
    return _Replay(data=data, ids=data.frame["declaration_id"].to_numpy(), config=config, plan=plan, filings=filings,
                   keyed=keyed, bands=bands, rulebook=rulebook, knowledge=knowledge,
                   columns=(fs.categorical, fs.numeric), warmup_labelled=labelled, targeted=targeted)


def _targeted_start(data: BacktestData, plan: Plan, config: BacktestConfig, keyed: pd.DataFrame, bands: PriceBands,
                    numeric: list[str]) -> _Targeted:
    """The targeted policy's start: novelty over every filing, an anomaly model of the warm-up's declarations
    (all of them: it needs no label), and a bandit that knows nothing yet."""
    warmup = data.frame.iloc[: plan.bounds[plan.warmup]]
    arms = (MODEL, *config.targeting.sources)
    targeted = _Targeted(novelty=NoveltyIndex(keyed), bandit=Bandit(arms, config.targeting.discount),
                         rng=np.random.default_rng(config.seed), recent=[shared_features(warmup, bands).X],
                         keep_weeks=plan.warmup, keys=lead_keys(keyed))
    targeted.refit_anomaly(numeric)
    return targeted


def _refit(replay: _Replay, week: int, first: bool, policies: list[str]) -> dict[str, float]:
    """Refit these model policies on what each knew at the week's start (the first fit is shared: same labels)."""
    start = replay.plan.start(week)
    seconds = {}
    shared_model = None
    for policy in policies:
        known = replay.knowledge[policy]
        t = time.perf_counter()
        fs, positions = known.training_set(start, *replay.columns)
        if not (first and shared_model is not None):
            shared_model = fit_on(fs, replay.config.fit)
        known.model, known.trained_on = shared_model, positions
        replay.unexpected.pop(policy, None)
        seconds[policy] = time.perf_counter() - t
    return seconds


def _alerted(replay: _Replay, policy: str) -> bool:
    """The monitor's outcome alert (training/monitoring.py), on the policy's exploration picks revealed since its
    last refit: with at least `min_outcomes` of them, the 95 % Wilson interval of their hit rate lies above what
    its model expected of them by more than the tolerance. Fraud the model does not see: the policy refits next
    week instead of waiting for its cadence, as a drift alert triggers retraining."""
    hits, picks, expected = replay.unexpected.get(policy, (0.0, 0, 0.0))
    thresholds = MonitorThresholds()
    if picks < thresholds.min_outcomes:
        return False
    low, _ = wilson(int(hits), picks)
    return low > expected / picks * (1 + thresholds.hit_rate_tolerance)


def _reveal(replay: _Replay, policy: str, week: int, positions: np.ndarray, fs: FeatureSet | None,
            chosen: np.ndarray) -> None:
    """The selected rows' outcomes become known at the week's end, to this policy only."""
    if policy not in replay.knowledge:
        return
    oracle = replay.data.oracle.iloc[positions]
    control = np.full(len(positions), replay.plan.last_day(week).to_datetime64(), dtype="datetime64[us]")
    replay.knowledge[policy].add(positions, oracle["fraud"].to_numpy(), oracle["revenue"].fillna(0.0).to_numpy(),
                                 control, fs.X.iloc[chosen])


def _estimate(replay: _Replay, policy: str, fraud: np.ndarray, picked: Picked) -> dict:
    """The week's Horvitz-Thompson estimate of the fraud rate among all its declarations, from the labels the
    policy's picks revealed and their inclusion probabilities (NaN for a policy with no random part, or a week
    too small to draw one); the week's design is kept for the estimate over the whole replay."""
    if picked.probability is None or not (picked.probability > 0).all():  # no random part this week (a small week)
        return {"estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    outcome = np.full(len(fraud), np.nan)
    outcome[picked.chosen] = fraud[picked.chosen]
    replay.designs.setdefault(policy, []).append((outcome, picked.probability))
    found = fraud_rate(outcome, picked.probability)
    return {k: np.nan if v is None else v for k, v in
            (("estimate", found.estimate), ("ci_low", found.ci_low), ("ci_high", found.ci_high))}


def _pooled(replay: _Replay) -> dict[str, dict]:
    """Each policy's estimate of the fraud rate over every replayed week, from all its weeks' designs at once."""
    out = {}
    for policy, weeks in replay.designs.items():
        found = fraud_rate(np.concatenate([o for o, _ in weeks]), np.concatenate([p for _, p in weeks]))
        out[policy] = {"estimate": found.estimate, "ci_low": found.ci_low, "ci_high": found.ci_high,
                       "level": found.level, "sampled": found.sampled, "method": found.method}
    return out


def _record(replay: _Replay, policy: str, week: int, picked: Picked, timing: dict) -> None:
    """Outcome counts of one policy's week, by the oracle (the only other reader of it besides `_reveal`)."""
    chosen, stratum = picked.chosen, picked.stratum
    lo, hi = replay.plan.bounds[week], replay.plan.bounds[week + 1]
    oracle = replay.data.oracle.iloc[lo:hi]
    fraud = oracle["fraud"].to_numpy().astype("float64")
    revenue = oracle["revenue"].to_numpy()
    has_revenue = not np.isnan(revenue).all()
    explored = np.isin(stratum, ["exploration", "random"]) if policy != "random" else np.zeros(len(chosen), bool)
    number = replay.plan.number(week)
    scheme = (oracle["typology"].to_numpy() == "new_scheme") if "typology" in oracle else None
    replay.records.append({
        "week": number, "week_start": replay.plan.start(week), "policy": policy, "declarations": hi - lo,
        "selected": len(chosen), "frauds_found": fraud[chosen].sum(), "frauds_total": fraud.sum(),
        "revenue_found": np.nansum(revenue[chosen]) if has_revenue else np.nan,
        "revenue_total": np.nansum(revenue) if has_revenue else np.nan,
        "explored": int(explored.sum()), "explored_frauds": fraud[chosen[explored]].sum(),
        "new_scheme_found": int(scheme[chosen].sum()) if scheme is not None else np.nan,
        "new_scheme_total": int(scheme.sum()) if scheme is not None else np.nan,
        "true_rate": fraud.mean(), **_estimate(replay, policy, fraud, picked), **timing,
    })
    found = replay.found.setdefault(policy, [0.0, 0])
    found[0] += replay.records[-1]["frauds_found"]
    found[1] += len(chosen)
    frame = pd.DataFrame({"week": number, "policy": policy, "stratum": stratum,
                          "declaration_id": replay.ids[lo + chosen], "fraud": fraud[chosen]})
    if "typology" in oracle:  # the simulator's fraud scheme of each pick (evaluation only)
        frame["typology"] = oracle["typology"].to_numpy()[chosen]
    replay.selections.append(frame)


def _replay_week(replay: _Replay, week: int) -> None:
    """One week: refit when due, the shared features, then each policy selects, learns its picks and is scored."""
    t = time.perf_counter()
    b = week - replay.plan.warmup
    # The first fit comes with the first week that has declarations (a sparse history may start with empty ones).
    unfitted = any(known.model is None for known in replay.knowledge.values())
    due = unfitted or b % replay.config.retrain_every == 0
    alerted = [] if due else [p for p in replay.knowledge if _alerted(replay, p)]
    for policy in alerted:
        replay.alert_refits[policy] = replay.alert_refits.get(policy, 0) + 1
    if due and b > 0:  # reference bands carry no label: refreshed on every declaration filed so far
        replay.bands = PriceBands.fit(replay.data.frame.iloc[: replay.plan.bounds[week]])
    refitted = list(replay.knowledge) if due else alerted
    fit_seconds = _refit(replay, week, unfitted, refitted) if refitted else {}
    lo, hi = replay.plan.bounds[week], replay.plan.bounds[week + 1]
    rows = replay.data.frame.iloc[lo:hi]
    shared = shared_features(rows, replay.bands)
    queries = Queries.of(rows) if replay.knowledge else None
    if replay.targeted is not None:
        if due and b > 0:
            replay.targeted.refit_anomaly(replay.columns[1])
        replay.targeted.week(rows, shared, lo, replay.plan.start(week))
    shared_seconds = time.perf_counter() - t - sum(fit_seconds.values())
    for policy in replay.config.policies:
        t = time.perf_counter()
        picked = _select(replay, policy, rows, shared, queries)
        _reveal(replay, policy, week, lo + picked.chosen, picked.fs, picked.chosen)
        if policy in replay.knowledge:
            _count_unexpected(replay, policy, picked)
        if picked.selection is not None:  # the bandit and the leads learn from the labels just revealed
            fraud = replay.knowledge[policy].fraud[-1]
            replay.targeted.bandit.update(outcomes(picked.selection, fraud, picked.risk))
            explored = picked.stratum != MODEL
            replay.targeted.learn(lo + picked.chosen[explored], fraud[explored], picked.risk[picked.chosen[explored]],
                                  replay.plan.last_day(week).to_datetime64())
        timing = {"retrained": policy in fit_seconds, "fit_seconds": fit_seconds.get(policy, 0.0),
                  "select_seconds": time.perf_counter() - t, "shared_seconds": shared_seconds}
        _record(replay, policy, week, picked, timing)


def _count_unexpected(replay: _Replay, policy: str, picked: Picked) -> None:
    """Add the week's exploration picks (every stratum but the model's) to what the policy's alert reads."""
    explored = picked.stratum != "model"
    if not explored.any() or picked.risk is None:
        return
    fraud = replay.knowledge[policy].fraud[-1]  # the labels just revealed, in pick order
    hits, picks, expected = replay.unexpected.get(policy, (0.0, 0, 0.0))
    replay.unexpected[policy] = (hits + float(fraud[explored].sum()), picks + int(explored.sum()),
                                 expected + float(picked.risk[picked.chosen[explored]].sum()))


def run_backtest(data: BacktestData, config: BacktestConfig = BacktestConfig(),
                 on_week: Callable[[dict], None] | None = None) -> BacktestResult:
    """Replay the history week by week for every policy; `on_week` receives a progress dict after each week."""
    if len(data.frame) == 0:
        raise UserError("nothing to replay: the history is empty")
    plan = plan_weeks(data.frame["declaration_date"], config)
    replay = _warmup(data, plan, config)
    for week in range(plan.warmup, plan.end):
        if plan.bounds[week + 1] == plan.bounds[week]:
            continue  # a week without declarations: nothing to select
        _replay_week(replay, week)
        if on_week is not None:
            on_week(_progress(replay, week))
    drift = config.drift_date if config.drift_date is not None else data.drift_date
    weekly = weekly_table(pd.DataFrame(replay.records), drift)
    selections = pd.concat(replay.selections, ignore_index=True)
    replay.pooled = _pooled(replay)
    ids = replay.ids
    return BacktestResult(weekly=weekly, summary=summarise(weekly, selections, replay, drift),
                          selections=selections, training_ids={p: ids[k.trained_on] for p, k in replay.knowledge.items()},
                          warmup_labelled_ids=ids[replay.warmup_labelled], config=config)


def _progress(replay: _Replay, week: int) -> dict:
    """Where the replay stands after `week`: cumulative precision per policy so far (running totals: a week's
    progress costs the same in week 1 and week 100)."""
    this_week = replay.records[-len(replay.config.policies):]  # _replay_week records each policy once
    return {"week": replay.plan.number(week), "weeks": replay.plan.end - replay.plan.warmup,
            "week_start": replay.plan.start(week), "retrained": any(r["retrained"] for r in this_week),
            "precision": {p: _ratio(*replay.found[p]) for p in replay.config.policies}}
