"""What a backtest found: the weekly table, the typed summary per policy, and plain-sentence findings.

The oracle reaches these figures through the replay's records only. `BacktestSummary.to_dict()` is the
JSON-able form flows, the CLI and tracking read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from serving.selection import capacity

if TYPE_CHECKING:
    from serving.backtest.replay import _Replay

AT_RANDOM_WEEKS = 12  # the scheme's first weeks whose detection chance at random the summary lists
COLLAPSE_RATIO = 0.5  # model-only "collapses" when post-drift precision falls below half its pre-drift value


def _ratio(found: float, total: float) -> float:
    return float(found / total) if total and not np.isnan(total) else np.nan


def _json(value: float) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), 4)


def weekly_table(records: pd.DataFrame, drift_date: pd.Timestamp | None = None) -> pd.DataFrame:
    """Per (week, policy): precision, recall and revenue share of the week, and the same cumulated since the start.

    precision = frauds found / selected; recall = frauds found / all frauds of the week (by the oracle);
    revenue share = revenue found / all revenue at stake that week (NaN when the data has no revenue).
    """
    out = records.sort_values(["policy", "week"], kind="stable").reset_index(drop=True)
    out["precision"] = out["frauds_found"] / out["selected"].where(out["selected"] > 0)
    out["recall"] = out["frauds_found"] / out["frauds_total"].where(out["frauds_total"] > 0)
    out["revenue_share"] = out["revenue_found"] / out["revenue_total"].where(out["revenue_total"] > 0)
    sums = out.groupby("policy", sort=False)[["selected", "frauds_found", "frauds_total", "revenue_found",
                                             "revenue_total", "explored", "explored_frauds"]].cumsum()
    for column in sums.columns:
        out[f"cum_{column}"] = sums[column]
    out["cum_precision"] = out["cum_frauds_found"] / out["cum_selected"].where(out["cum_selected"] > 0)
    out["cum_recall"] = out["cum_frauds_found"] / out["cum_frauds_total"].where(out["cum_frauds_total"] > 0)
    out["cum_revenue_share"] = out["cum_revenue_found"] / out["cum_revenue_total"].where(out["cum_revenue_total"] > 0)
    out["after_drift"] = (out["week_start"] >= drift_date) if drift_date is not None else False
    return out.sort_values(["week", "policy"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------- the typed summary


@dataclass(frozen=True)
class Totals:
    """One policy's figures over a set of replayed weeks (rates rounded to 4 places; None when undefined)."""

    weeks: int
    selected: int
    frauds_found: int
    frauds_total: int
    precision: float | None
    recall: float | None
    revenue_share: float | None  # None when the data has no revenue

    @classmethod
    def of(cls, rows: pd.DataFrame) -> Totals | None:
        """The totals of weekly-table rows; None when there are none (e.g. no week after the drift)."""
        if rows.empty:
            return None
        revenue_total = rows["revenue_total"].sum(skipna=False)
        return cls(weeks=int(rows["week"].nunique()), selected=int(rows["selected"].sum()),
                   frauds_found=int(rows["frauds_found"].sum()), frauds_total=int(rows["frauds_total"].sum()),
                   precision=_json(_ratio(rows["frauds_found"].sum(), rows["selected"].sum())),
                   recall=_json(_ratio(rows["frauds_found"].sum(), rows["frauds_total"].sum())),
                   revenue_share=_json(_ratio(rows["revenue_found"].sum(skipna=False), revenue_total)))

    def to_dict(self) -> dict:
        return {"weeks": self.weeks, "selected": self.selected, "frauds_found": self.frauds_found,
                "frauds_total": self.frauds_total, "precision": self.precision, "recall": self.recall,
                "revenue_share": self.revenue_share}


@dataclass(frozen=True)
class HitRates:
    """The hit rate of each stratum, for a policy that explored: its random draws and its model picks."""

    exploration: float | None
    exploitation: float | None  # None when the whole capacity was explored


@dataclass(frozen=True)
class PolicySummary:
    """One policy's figures: over the whole replay, before and after the drift, and what its weeks cost."""

    overall: Totals
    pre_drift: Totals | None  # None without a drift date, or with no replayed week before it
    post_drift: Totals | None
    refits: int
    seconds_per_week: float  # selection and refits
    hit_rates: HitRates | None = None  # only when the policy explored
    found_by_typology: dict[str, int] | None = None  # frauds found per simulated scheme (simulator only)
    revenue_found: float | None = None  # None when the data has no revenue
    new_scheme_frauds_found: int | None = None  # None when the data names no new scheme (simulator only)
    weeks_to_first_detection: int | None = None  # 1 = the scheme's first week; None when never found
    # the chance that the capacity drawn at random each week would have found the scheme by that week (`at_random`)
    detection_chance_at_random: float | None = None
    compliance_estimate: dict | None = None  # a policy with a random part: the HT estimate of the fraud rate
    strata: dict[str, dict] | None = None  # the targeted policy: picks, frauds and hit rate per source
    bandit: dict[str, dict] | None = None  # the targeted policy: each arm's posterior hit rate at the end
    alert_refits: int | None = None  # a model policy: refits its exploration's outcome alert brought forward

    def to_dict(self) -> dict:
        out = {**self.overall.to_dict(), "pre_drift": _or_none(self.pre_drift), "post_drift": _or_none(self.post_drift),
               "refits": self.refits, "seconds_per_week": self.seconds_per_week,
               "revenue_found": self.revenue_found, "new_scheme_frauds_found": self.new_scheme_frauds_found,
               "weeks_to_first_detection": self.weeks_to_first_detection}
        if self.detection_chance_at_random is not None:
            out["detection_chance_at_random"] = self.detection_chance_at_random
        if self.hit_rates is not None:
            out["exploration_hit_rate"] = self.hit_rates.exploration
            out["exploitation_hit_rate"] = self.hit_rates.exploitation
        if self.found_by_typology is not None:
            out["found_by_typology"] = dict(self.found_by_typology)
        for name in ("alert_refits", "compliance_estimate", "strata", "bandit"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def _or_none(totals: Totals | None) -> dict | None:
    return None if totals is None else totals.to_dict()


@dataclass(frozen=True)
class BacktestSummary:
    """The set-up of a replay, each policy's figures and the findings."""

    source: str
    universe_rows: int
    unlabelled_rows_left_out: int
    weeks_total: int
    warmup_weeks: int
    weeks: int  # replayed
    replay_start: str  # ISO date of the first replayed week
    replay_rows: int
    warmup_labelled: int
    drift_date: str | None  # ISO date
    capacity: float
    exploration: float
    retrain_every: int
    iterations: int
    seed: int
    policies: dict[str, PolicySummary]  # in the configuration's order
    rulebook: dict[str, int] | None = None  # risky segments of the rules policy, when it ran
    frauds_by_typology: dict[str, int] | None = None  # replayed frauds per simulated scheme (simulator only)
    scheme_at_random: dict | None = None  # the new scheme's detection by the capacity drawn at random (`at_random`)
    findings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """The JSON-able summary (flows, `--json`, tracking)."""
        out = {
            "source": self.source, "universe_rows": self.universe_rows,
            "unlabelled_rows_left_out": self.unlabelled_rows_left_out, "weeks_total": self.weeks_total,
            "warmup_weeks": self.warmup_weeks, "weeks": self.weeks, "replay_start": self.replay_start,
            "replay_rows": self.replay_rows, "warmup_labelled": self.warmup_labelled, "drift_date": self.drift_date,
            "capacity": self.capacity, "exploration": self.exploration, "retrain_every": self.retrain_every,
            "iterations": self.iterations, "seed": self.seed,
            "policies": {name: p.to_dict() for name, p in self.policies.items()},
        }
        if self.rulebook is not None:
            out["rulebook"] = dict(self.rulebook)
        if self.frauds_by_typology is not None:
            out["frauds_by_typology"] = dict(self.frauds_by_typology)
        if self.scheme_at_random is not None:
            out["scheme_at_random"] = dict(self.scheme_at_random)
        out["findings"] = list(self.findings)
        return out


def _scheme_start(rows: pd.DataFrame) -> int | None:
    """The replay week of the new scheme's first fraud (evaluation: the oracle's counts); None without a scheme."""
    if rows["new_scheme_total"].isna().all() or rows["new_scheme_total"].sum() == 0:
        return None
    return int(rows.loc[rows["new_scheme_total"] > 0, "week"].min())


def _first_detection(rows: pd.DataFrame) -> int | None:
    """Weeks from the scheme's first replayed fraud to the policy's first find of one (1: the same week)."""
    start = _scheme_start(rows)
    found = rows.loc[rows["new_scheme_found"] > 0, "week"]
    return int(found.min() - start + 1) if start is not None and len(found) else None


def at_random(weekly: pd.DataFrame, share: float) -> list[float] | None:
    """For each week from the new scheme's first (evaluation: the oracle's counts), the chance that ⌈share·N⌉
    declarations drawn at random each week would have found one of its frauds by then: 1 − Π P(none in week w), where
    P(none) is the hypergeometric chance that the week's k draws of its N declarations miss all its S frauds. How much
    a first detection owes to luck: a random policy's week 2 may be a 30 % chance on one world and a 90 % one on
    another. None without a scheme."""
    start = _scheme_start(weekly)
    if start is None:
        return None
    weeks = weekly.drop_duplicates("week").set_index("week")
    missed, out = 0.0, []  # log P(no find so far); a week without declarations changes nothing
    for week in range(start, int(weeks.index.max()) + 1):
        if week in weeks.index:
            n, s = int(weeks.at[week, "declarations"]), int(weeks.at[week, "new_scheme_total"])
            k = capacity(n, share)
            missed += _log_choose(n - s, k) - _log_choose(n, k) if n - s >= k else -np.inf
        out.append(float(1 - np.exp(missed)))
    return out


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _scheme_at_random(chance: list[float] | None) -> dict | None:
    """The summary's view of `at_random`: the chance by each of the scheme's first weeks, and the first week by
    which it is at least even."""
    if chance is None:
        return None
    even = next((week for week, c in enumerate(chance, start=1) if c >= 0.5), None)
    return {"chance_by_week": [round(c, 4) for c in chance[:AT_RANDOM_WEEKS]], "median_week": even}


def _compliance(rows: pd.DataFrame, pooled: dict | None) -> dict | None:
    """The estimate over the whole replay (pooled), its weekly intervals' coverage of the true weekly rate, and
    the true rate over the replay (evaluation: the oracle)."""
    estimated = rows[rows["ci_low"].notna()]
    if pooled is None or estimated.empty:
        return None
    covered = (estimated["ci_low"] <= estimated["true_rate"] + 1e-12) & (estimated["true_rate"] <= estimated["ci_high"] + 1e-12)
    truth = estimated["frauds_total"].sum() / estimated["declarations"].sum()  # over the weeks it estimated
    return {**pooled, "truth": _json(truth), "weeks_estimated": len(estimated),
            "weekly_coverage": _json(float(covered.mean())),
            "weekly_width": _json(float((estimated["ci_high"] - estimated["ci_low"]).median()))}


def _strata(selections: pd.DataFrame) -> dict[str, dict]:
    counts = selections.groupby("stratum", sort=True)["fraud"].agg(["size", "sum"])
    return {str(k): {"picks": int(r["size"]), "frauds": int(r["sum"]), "hit_rate": _json(r["sum"] / r["size"])}
            for k, r in counts.iterrows()}


def _policy_summary(weekly: pd.DataFrame, selections: pd.DataFrame, policy: str,
                    replay: _Replay | None = None, chance: list[float] | None = None) -> PolicySummary:
    rows = weekly[weekly["policy"] == policy]
    mine = selections[selections["policy"] == policy]
    hit_rates = found = None
    if rows["explored"].sum() > 0:
        exploit = rows["selected"].sum() - rows["explored"].sum()
        hit_rates = HitRates(
            exploration=_json(_ratio(rows["explored_frauds"].sum(), rows["explored"].sum())),
            exploitation=_json(_ratio(rows["frauds_found"].sum() - rows["explored_frauds"].sum(), exploit)))
    if "typology" in selections:
        frauds = mine[mine["typology"] != ""]
        found = {str(k): int(v) for k, v in frauds["typology"].value_counts().sort_index().items()}
    scheme = None if rows["new_scheme_total"].isna().all() else int(rows["new_scheme_found"].sum())
    revenue = rows["revenue_found"].sum(skipna=False)
    targeted = policy == "targeted" and replay is not None and replay.targeted is not None
    pooled = replay.pooled.get(policy) if replay is not None else None
    first = _first_detection(rows)
    return PolicySummary(overall=Totals.of(rows), pre_drift=Totals.of(rows[~rows["after_drift"]]),
                         post_drift=Totals.of(rows[rows["after_drift"]]), refits=int(rows["retrained"].sum()),
                         seconds_per_week=round(float((rows["select_seconds"] + rows["fit_seconds"]).mean()), 3),
                         hit_rates=hit_rates, found_by_typology=found,
                         revenue_found=None if np.isnan(revenue) else round(float(revenue), 2),
                         new_scheme_frauds_found=scheme, weeks_to_first_detection=first,
                         detection_chance_at_random=None if chance is None or first is None
                         else round(chance[first - 1], 4),
                         compliance_estimate=_compliance(rows, pooled),
                         strata=_strata(mine) if targeted else None,
                         bandit=replay.targeted.bandit.to_dict() if targeted else None,
                         alert_refits=replay.alert_refits.get(policy, 0)
                         if replay is not None and policy in replay.knowledge else None)


def summarise(weekly: pd.DataFrame, selections: pd.DataFrame, replay: _Replay,
              drift: pd.Timestamp | None) -> BacktestSummary:
    """The summary: the set-up, and per policy the cumulative and pre/post-drift figures."""
    data, plan, config = replay.data, replay.plan, replay.config
    replayed = slice(plan.bounds[plan.warmup], plan.bounds[plan.end])
    by_typology = None
    if "typology" in data.oracle:
        truth = data.oracle["typology"].iloc[replayed]
        by_typology = {str(k): int(v) for k, v in truth[truth != ""].value_counts().sort_index().items()}
    chance = at_random(weekly, config.capacity)
    policies = {policy: _policy_summary(weekly, selections, policy, replay, chance) for policy in config.policies}
    drift_date = str(drift.date()) if drift is not None else None
    return BacktestSummary(
        source=data.source, universe_rows=len(data.frame), unlabelled_rows_left_out=data.left_out,
        weeks_total=len(plan.bounds) - 1, warmup_weeks=plan.warmup, weeks=plan.end - plan.warmup,
        replay_start=str(plan.start(plan.warmup).date()), replay_rows=int(replayed.stop - replayed.start),
        warmup_labelled=len(replay.warmup_labelled), drift_date=drift_date, capacity=config.capacity,
        exploration=config.exploration, retrain_every=config.retrain_every, iterations=config.fit.iterations,
        seed=config.seed, policies=policies,
        rulebook=replay.rulebook.describe() if replay.rulebook is not None else None,
        frauds_by_typology=by_typology, scheme_at_random=_scheme_at_random(chance),
        findings=tuple(findings(policies, drift_date, by_typology)))


# ---------------------------------------------------------------- findings


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def findings(policies: dict[str, PolicySummary], drift_date: str | None,
             frauds_by_typology: dict[str, int] | None = None) -> list[str]:
    """Plain sentences on the question the protocol asks: does model-only exploitation collapse under drift,
    and does the hybrid's exploration fix it? Only what the numbers say."""
    out = []
    if drift_date is None:
        return ["no drift date: pre/post-drift figures are not computed (pass one to compare the two periods)"]
    for name in ("model", "hybrid", "targeted", "random", "rules"):
        p = policies.get(name)
        if p and p.pre_drift and p.post_drift:
            out.append(f"{name}: precision {_pct(p.pre_drift.precision)} before the drift, "
                       f"{_pct(p.post_drift.precision)} after; recall {_pct(p.pre_drift.recall)} → "
                       f"{_pct(p.post_drift.recall)}")
    model, hybrid = policies.get("model"), policies.get("hybrid")
    if model and model.pre_drift and model.post_drift and model.pre_drift.precision:
        ratio = (model.post_drift.precision or 0) / model.pre_drift.precision
        verdict = "collapses" if ratio < COLLAPSE_RATIO else "does not collapse"
        out.append(f"model-only {verdict}: its post-drift precision is {ratio:.2f}× its pre-drift precision "
                   f"(collapse = below {COLLAPSE_RATIO}×)")
    if model and hybrid and model.post_drift and hybrid.post_drift:
        d_recall = (hybrid.post_drift.recall or 0) - (model.post_drift.recall or 0)
        d_precision = (hybrid.post_drift.precision or 0) - (model.post_drift.precision or 0)
        out.append(f"hybrid vs model-only after the drift: recall {100 * d_recall:+.1f} pts, "
                   f"precision {100 * d_precision:+.1f} pts")
    scheme = (frauds_by_typology or {}).get("new_scheme")
    if scheme:  # the simulator's post-drift fraud scheme: what exploitation alone may never look at
        found = {n: (p.found_by_typology or {}).get("new_scheme", 0) for n, p in policies.items()}
        out.append(f"new-scheme frauds found (of {scheme} replayed): "
                   + ", ".join(f"{n} {k}" for n, k in found.items()))
        if "model" in found and "random" in found and found["model"] < found["random"]:
            out.append("model-only is blind to the new scheme: it found fewer of its frauds than random selection")
    targeted = policies.get("targeted")
    if targeted and model and model.overall.precision:
        kept = (targeted.overall.precision or 0) / model.overall.precision
        out.append(f"targeted exploration kept {kept:.1%} of model-only precision"
                   + (f" and found {targeted.new_scheme_frauds_found} new-scheme frauds against model-only's "
                      f"{model.new_scheme_frauds_found}" if targeted.new_scheme_frauds_found is not None else ""))
    return out
