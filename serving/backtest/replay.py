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
from features.prices import PriceBands
from features.profiles import LABEL_LAG_DAYS, ProfileIndex
from serving.backtest.config import BacktestConfig
from serving.backtest.data import BacktestData, label_free
from serving.backtest.policies import (
    Knowledge,
    Queries,
    RuleBook,
    _select,
    fit_on,
    shared_features,
    with_profiles,
)
from serving.backtest.report import BacktestSummary, _ratio, summarise, weekly_table

MODEL_POLICIES = ("model", "hybrid")


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
    return _Replay(data=data, ids=data.frame["declaration_id"].to_numpy(), config=config, plan=plan, filings=filings,
                   keyed=keyed, bands=bands, rulebook=rulebook, knowledge=knowledge,
                   columns=(fs.categorical, fs.numeric), warmup_labelled=labelled)


def _refit(replay: _Replay, week: int, first: bool) -> dict[str, float]:
    """Refit every model policy on what it knew at the week's start (the first fit is shared: same labels)."""
    start = replay.plan.start(week)
    seconds = {}
    shared_model = None
    for policy, known in replay.knowledge.items():
        t = time.perf_counter()
        fs, positions = known.training_set(start, *replay.columns)
        if not (first and shared_model is not None):
            shared_model = fit_on(fs, replay.config.fit)
        known.model, known.trained_on = shared_model, positions
        seconds[policy] = time.perf_counter() - t
    return seconds


def _reveal(replay: _Replay, policy: str, week: int, positions: np.ndarray, fs: FeatureSet | None,
            chosen: np.ndarray) -> None:
    """The selected rows' outcomes become known at the week's end, to this policy only."""
    if policy not in replay.knowledge:
        return
    oracle = replay.data.oracle.iloc[positions]
    control = np.full(len(positions), replay.plan.last_day(week).to_datetime64(), dtype="datetime64[us]")
    replay.knowledge[policy].add(positions, oracle["fraud"].to_numpy(), oracle["revenue"].fillna(0.0).to_numpy(),
                                 control, fs.X.iloc[chosen])


def _record(replay: _Replay, policy: str, week: int, chosen: np.ndarray, stratum: np.ndarray, timing: dict) -> None:
    """Outcome counts of one policy's week, by the oracle (the only other reader of it besides `_reveal`)."""
    lo, hi = replay.plan.bounds[week], replay.plan.bounds[week + 1]
    oracle = replay.data.oracle.iloc[lo:hi]
    fraud = oracle["fraud"].to_numpy().astype("float64")
    revenue = oracle["revenue"].to_numpy()
    has_revenue = not np.isnan(revenue).all()
    explored = stratum == "exploration"
    number = replay.plan.number(week)
    replay.records.append({
        "week": number, "week_start": replay.plan.start(week), "policy": policy, "declarations": hi - lo,
        "selected": len(chosen), "frauds_found": fraud[chosen].sum(), "frauds_total": fraud.sum(),
        "revenue_found": np.nansum(revenue[chosen]) if has_revenue else np.nan,
        "revenue_total": np.nansum(revenue) if has_revenue else np.nan,
        "explored": int(explored.sum()), "explored_frauds": fraud[chosen[explored]].sum(), **timing,
    })
    found = replay.found.setdefault(policy, [0.0, 0])
    found[0] += replay.records[-1]["frauds_found"]
    found[1] += len(chosen)
    picked = pd.DataFrame({"week": number, "policy": policy, "stratum": stratum,
                           "declaration_id": replay.ids[lo + chosen]})
    if "typology" in oracle:  # the simulator's fraud scheme of each pick (evaluation only)
        picked["typology"] = oracle["typology"].to_numpy()[chosen]
    replay.selections.append(picked)


def _replay_week(replay: _Replay, week: int) -> None:
    """One week: refit when due, the shared features, then each policy selects, learns its picks and is scored."""
    t = time.perf_counter()
    b = week - replay.plan.warmup
    # The first fit comes with the first week that has declarations (a sparse history may start with empty ones).
    unfitted = any(known.model is None for known in replay.knowledge.values())
    due = unfitted or b % replay.config.retrain_every == 0
    if due and b > 0:  # reference bands carry no label: refreshed on every declaration filed so far
        replay.bands = PriceBands.fit(replay.data.frame.iloc[: replay.plan.bounds[week]])
    fit_seconds = _refit(replay, week, first=unfitted) if due else {}
    lo, hi = replay.plan.bounds[week], replay.plan.bounds[week + 1]
    rows = replay.data.frame.iloc[lo:hi]
    shared = shared_features(rows, replay.bands)
    queries = Queries.of(rows) if replay.knowledge else None
    shared_seconds = time.perf_counter() - t - sum(fit_seconds.values())
    for policy in replay.config.policies:
        t = time.perf_counter()
        chosen, stratum, fs = _select(replay, policy, rows, shared, queries)
        _reveal(replay, policy, week, lo + chosen, fs, chosen)
        timing = {"retrained": policy in fit_seconds, "fit_seconds": fit_seconds.get(policy, 0.0),
                  "select_seconds": time.perf_counter() - t, "shared_seconds": shared_seconds}
        _record(replay, policy, week, chosen, stratum, timing)


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
