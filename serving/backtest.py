"""The BACUDA simulation protocol: replay labelled history week by week under an inspection capacity.

After WCO BACUDA, "Active Learning for Human-in-the-Loop Customs Inspection". Each week every policy selects
⌈capacity·N⌉ of that week's declarations. Only its selections reveal their labels, at the week's end (their
control date is the week's last day, so later weeks' entity profiles can use them but the same week cannot).
Model policies refit on what they have revealed every K weeks. Every policy has its own revealed set and its
own model.

The oracle (the simulator's hidden truth, or a user's own labels) is read in two places only: `_reveal`
(a selected row's label) and the metrics. Features see the warm-up's historical labels and the policy's own
reveals, never anything else.

Pure: no Prefect, no MLflow.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from features.build import BASE_NUMERIC, FeatureSet, build_features, integrate
from features.contract import LABEL_FIELDS
from features.errors import UserError
from features.prices import PriceBands
from features.profiles import LABEL_LAG_DAYS, PRIOR_WEIGHT, ProfileIndex
from features.simulator import World
from serving.selection import Rules, capacity, exploration_draw, lowest_draws, rule_hits, select, top_k
from training.models import FitConfig, RiskModel, Split, fit_risk_model
from training.pipeline import labelled_rows

POLICIES = ("model", "hybrid", "random", "rules")
MODEL_POLICIES = ("model", "hybrid")
DRAW_OFFSET = {"model": 0, "hybrid": 1, "random": 2, "rules": 3}  # independent seeded draws per policy
PROFILE_COLUMNS = ["declaration_id", "declaration_date", "importer_id", "declarant_id", "exporter_id", "hs_code",
                   "origin_country", "office_id"]
HISTORY_LABELS = ["inspected", "fraud", "revenue", "control_date"]
# The rules policy flags a segment whose smoothed warm-up hit rate is RISKY_LIFT times the overall rate,
# once it has at least this many warm-up inspections.
RISKY_LIFT = 2.0
MIN_INSPECTIONS = {"hs_chapter": 30, "origin_country": 30, "importer_id": 3}
UNDERPRICE_ZSCORE = -2.0  # unit price this many robust deviations below its HS×origin reference band
HARD_RULE_WEIGHT = 10.0  # a watch-list / prohibited-goods hit outranks any combination of risk flags
COLLAPSE_RATIO = 0.5  # model-only "collapses" when post-drift precision falls below half its pre-drift value
REFIT_ITERATIONS = 100  # boosting rounds per refit: a replay refits each model policy every few weeks


@dataclass(frozen=True)
class BacktestConfig:
    capacity: float = 0.05  # inspections per week, as a share of the week's declarations: ⌈capacity·N⌉
    exploration: float = 0.10  # hybrid: share of the capacity drawn at random
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

    def params(self) -> dict:
        """Flat parameters, for tracking."""
        out = {k: v for k, v in asdict(self).items() if k not in ("fit", "rules", "policies")}
        out.update({f"fit_{k}": v for k, v in asdict(self.fit).items()})
        out["policies"] = ",".join(self.policies)
        out["rules"] = self.rules.model_dump_json()
        return out


@dataclass
class BacktestData:
    """What a backtest replays: label-free declarations, the historical labels, and the oracle (all aligned)."""

    frame: pd.DataFrame  # integrated declarations by date, without label columns
    history_labels: pd.DataFrame  # inspected, fraud, revenue, control_date: what the historical policy found
    oracle: pd.DataFrame  # fraud (0/1), revenue (NaN when the data has none), optionally typology
    source: str
    drift_date: pd.Timestamp | None = None
    left_out: int = 0  # unlabelled rows of a user's file: outside the universe


def _assemble(frame: pd.DataFrame, oracle: pd.DataFrame, source: str, drift_date: pd.Timestamp | None,
              left_out: int = 0) -> BacktestData:
    order = np.lexsort((frame["declaration_id"].to_numpy(), frame["declaration_date"].to_numpy()))
    frame, oracle = frame.iloc[order].reset_index(drop=True), oracle.iloc[order].reset_index(drop=True)
    labels = frame.reindex(columns=HISTORY_LABELS)
    labels["control_date"] = pd.to_datetime(labels["control_date"]).astype("datetime64[us]")
    return BacktestData(frame=frame.drop(columns=[c for c in LABEL_FIELDS if c in frame]), history_labels=labels,
                        oracle=oracle, source=source, drift_date=drift_date, left_out=left_out)


def from_world(world: World, source: str = "simulator") -> BacktestData:
    """The embedded default: every declaration is in the universe; the oracle is the simulator's hidden truth."""
    frame = integrate(world.declarations, world.manifests, world.traders)
    truth = world.truth.set_index("declaration_id").reindex(frame["declaration_id"].to_numpy())
    oracle = pd.DataFrame({"fraud": truth["is_fraud"].astype("int8").to_numpy(),
                           "revenue": truth["revenue_at_stake"].astype("float64").to_numpy(),
                           "typology": truth["typology"].to_numpy()})
    return _assemble(frame, oracle, source, world.drift_date)


def from_labelled(declarations: pd.DataFrame, source: str, manifests: pd.DataFrame | None = None,
                  traders: pd.DataFrame | None = None) -> BacktestData:
    """A user's labelled history: the universe is the rows with a fraud label; the oracle is their own labels."""
    if "fraud" not in declarations:
        raise UserError(f"{source}: a backtest needs a fraud label column (map it under 'labels')")
    labelled = labelled_rows(declarations)
    if not labelled.any():
        raise UserError(f"{source}: no row carries a fraud label")
    universe = declarations[labelled].assign(inspected=1)  # the contract's rule: a fraud value means controlled
    frame = integrate(universe, manifests, traders)
    revenue = (frame["revenue"].astype("float64").fillna(0.0) if "revenue" in frame and frame["revenue"].notna().any()
               else pd.Series(np.nan, index=frame.index))
    oracle = pd.DataFrame({"fraud": frame["fraud"].astype("int8").to_numpy(), "revenue": revenue.to_numpy()})
    return _assemble(frame, oracle, source, None, left_out=int((~labelled).sum()))


# ---------------------------------------------------------------- selection


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
        segments = labelled.assign(hs_chapter=labelled["hs_code"].astype("str").str[:2], fraud=fraud)
        base = float(np.mean(fraud)) if len(fraud) else 0.0
        risky = {}
        for column, minimum in MIN_INSPECTIONS.items():
            stats = segments.groupby(column)["fraud"].agg(["sum", "size"])
            rate = (stats["sum"] + PRIOR_WEIGHT * base) / (stats["size"] + PRIOR_WEIGHT)
            risky[column] = frozenset(stats.index[(stats["size"] >= minimum) & (rate >= RISKY_LIFT * base) & (base > 0)])
        return cls(risky=risky, rules=rules)

    def score(self, frame: pd.DataFrame, X: pd.DataFrame) -> np.ndarray:
        """One point per flag (far under the price band, risky chapter, origin, importer); hard rules on top."""
        score = (X["unit_price_zscore"].to_numpy() <= UNDERPRICE_ZSCORE).astype("float64")
        chapters = frame["hs_code"].astype("str").str[:2]
        for column, values in (("hs_chapter", chapters), ("origin_country", frame["origin_country"]),
                               ("importer_id", frame["importer_id"])):
            score += values.isin(self.risky[column]).to_numpy()
        return score + HARD_RULE_WEIGHT * (rule_hits(frame, self.rules).to_numpy() != "")

    def describe(self) -> dict[str, int]:
        return {f"risky_{k}": len(v) for k, v in self.risky.items()}


# ---------------------------------------------------------------- features from what a policy knows


class _NoProfiles:
    """Stands in for a ProfileIndex when the week's shared features are built (profiles differ per policy)."""

    def lookup(self, queries: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(index=queries.index)


def shared_features(rows: pd.DataFrame, bands: PriceBands) -> FeatureSet:
    """The label-free part of the features (values, documents, registry), built once a week for every policy."""
    return build_features(rows, bands=bands, profiles=_NoProfiles())


def with_profiles(shared: FeatureSet, rows: pd.DataFrame, profiles: ProfileIndex) -> FeatureSet:
    """The full feature matrix: the shared part plus a policy's entity profiles, in build_features' column order."""
    found = profiles.lookup(rows.reset_index(drop=True)).astype("float64")
    extra = [c for c in shared.numeric if c not in BASE_NUMERIC]
    X = pd.concat([shared.X[shared.categorical + BASE_NUMERIC], found, shared.X[extra]], axis=1)
    return FeatureSet(X=X, meta=shared.meta, categorical=shared.categorical,
                      numeric=BASE_NUMERIC + list(found.columns) + extra, price_bands=shared.price_bands)


def label_free(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns entity profiles are keyed on, with no label at all (for the shared filings index)."""
    out = frame[[c for c in PROFILE_COLUMNS if c in frame]].copy()
    return out.assign(inspected=0, fraud=np.nan, revenue=np.nan, control_date=pd.NaT)


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

    def add(self, positions: np.ndarray, fraud: np.ndarray, revenue: np.ndarray, control: np.ndarray,
            X: pd.DataFrame) -> None:
        self.positions.append(positions)
        self.fraud.append(fraud)
        self.revenue.append(revenue)
        self.control.append(control)
        self.X.append(X.reset_index(drop=True))

    def copy(self) -> Knowledge:
        return Knowledge(list(self.positions), list(self.fraud), list(self.revenue), list(self.control), list(self.X),
                         self.model, self.trained_on)

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


# ---------------------------------------------------------------- the replay


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
    summary: dict
    selections: pd.DataFrame  # week, policy, declaration_id, stratum
    training_ids: dict[str, np.ndarray]  # per model policy: the declarations its last model was fitted on
    warmup_labelled_ids: np.ndarray
    config: BacktestConfig

    @property
    def params(self) -> dict:
        return {**self.config.params(), "source": self.summary["source"], "universe_rows": self.summary["universe_rows"]}


@dataclass
class _Replay:
    """The state of one replay: shared indexes, each policy's knowledge, and what has been recorded."""

    data: BacktestData
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


def _warmup(data: BacktestData, plan: Plan, config: BacktestConfig) -> _Replay:
    """The initial history: the historical policy's labels of the warm-up weeks, the same for every policy."""
    cut = plan.bounds[plan.warmup]
    history = data.history_labels.iloc[:cut]
    labelled = np.flatnonzero((history["inspected"].fillna(0).to_numpy() == 1) & history["fraud"].notna().to_numpy())
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
    fs = with_profiles(shared_features(rows, bands), rows, revealed_profiles(start.labels_frame(keyed), filings))
    start.X = [fs.X]
    rulebook = RuleBook.from_warmup(rows, fraud, config.rules) if "rules" in config.policies else None
    knowledge = {p: start.copy() for p in config.policies if p in MODEL_POLICIES}
    return _Replay(data=data, config=config, plan=plan, filings=filings, keyed=keyed, bands=bands, rulebook=rulebook,
                   knowledge=knowledge, columns=(fs.categorical, fs.numeric), warmup_labelled=labelled)


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


def _select(replay: _Replay, policy: str, rows: pd.DataFrame, shared: FeatureSet) -> tuple[np.ndarray, np.ndarray, FeatureSet | None]:
    """(positions chosen within the week, their stratum, the policy's features) for one policy."""
    k = capacity(len(rows), replay.config.capacity)
    draw = draws(rows["declaration_id"], replay.config.seed, policy)
    if policy == "random":
        chosen = lowest_draws(draw, k)
        return chosen, np.full(len(chosen), "random", dtype=object), None
    if policy == "rules":
        chosen = top_k(replay.rulebook.score(rows.reset_index(drop=True), shared.X), k, draw)
        return chosen, np.full(len(chosen), "rules", dtype=object), None
    known = replay.knowledge[policy]
    fs = with_profiles(shared, rows, revealed_profiles(known.labels_frame(replay.keyed), replay.filings))
    scores = known.model.risk(fs.X)
    if policy == "model":
        chosen = top_k(scores, k, draw)
        return chosen, np.full(len(chosen), "model", dtype=object), fs
    exploit, explored = select(scores, k, replay.config.exploration, draw)
    stratum = np.array(["model"] * len(exploit) + ["exploration"] * len(explored), dtype=object)
    return np.concatenate([exploit, explored]), stratum, fs


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
    picked = pd.DataFrame({"week": number, "policy": policy, "stratum": stratum,
                           "declaration_id": replay.data.frame["declaration_id"].to_numpy()[lo + chosen]})
    if "typology" in oracle:  # the simulator's fraud scheme of each pick (evaluation only)
        picked["typology"] = oracle["typology"].to_numpy()[chosen]
    replay.selections.append(picked)


def _replay_week(replay: _Replay, week: int) -> None:
    """One week: refit when due, the shared features, then each policy selects, learns its picks and is scored."""
    t = time.perf_counter()
    b = week - replay.plan.warmup
    due = b % replay.config.retrain_every == 0
    if due and b > 0:  # reference bands carry no label: refreshed on every declaration filed so far
        replay.bands = PriceBands.fit(replay.data.frame.iloc[: replay.plan.bounds[week]])
    fit_seconds = _refit(replay, week, first=b == 0) if due else {}
    lo, hi = replay.plan.bounds[week], replay.plan.bounds[week + 1]
    rows = replay.data.frame.iloc[lo:hi]
    shared = shared_features(rows, replay.bands)
    shared_seconds = time.perf_counter() - t - sum(fit_seconds.values())
    for policy in replay.config.policies:
        t = time.perf_counter()
        chosen, stratum, fs = _select(replay, policy, rows, shared)
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
    ids = data.frame["declaration_id"].to_numpy()
    return BacktestResult(weekly=weekly, summary=summarise(weekly, selections, replay, drift),
                          selections=selections, training_ids={p: ids[k.trained_on] for p, k in replay.knowledge.items()},
                          warmup_labelled_ids=ids[replay.warmup_labelled], config=config)


def _progress(replay: _Replay, week: int) -> dict:
    """Where the replay stands after `week`: cumulative precision per policy so far."""
    done = pd.DataFrame(replay.records)
    totals = done.groupby("policy")[["frauds_found", "selected"]].sum()
    return {"week": replay.plan.number(week), "weeks": replay.plan.end - replay.plan.warmup,
            "week_start": replay.plan.start(week),
            "retrained": bool(done.loc[done["week"] == replay.plan.number(week), "retrained"].any()),
            "precision": {p: _ratio(totals.loc[p, "frauds_found"], totals.loc[p, "selected"])
                          for p in replay.config.policies}}


# ---------------------------------------------------------------- metrics


def _ratio(found: float, total: float) -> float:
    return float(found / total) if total and not np.isnan(total) else np.nan


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


def _totals(rows: pd.DataFrame) -> dict | None:
    if rows.empty:
        return None
    revenue_total = rows["revenue_total"].sum(skipna=False)
    return {"weeks": int(rows["week"].nunique()), "selected": int(rows["selected"].sum()),
            "frauds_found": int(rows["frauds_found"].sum()), "frauds_total": int(rows["frauds_total"].sum()),
            "precision": _json(_ratio(rows["frauds_found"].sum(), rows["selected"].sum())),
            "recall": _json(_ratio(rows["frauds_found"].sum(), rows["frauds_total"].sum())),
            "revenue_share": _json(_ratio(rows["revenue_found"].sum(skipna=False), revenue_total))}


def _json(value: float) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), 4)


def _policy_summary(weekly: pd.DataFrame, selections: pd.DataFrame, policy: str) -> dict:
    rows = weekly[weekly["policy"] == policy]
    out = {**_totals(rows), "pre_drift": _totals(rows[~rows["after_drift"]]),
           "post_drift": _totals(rows[rows["after_drift"]]), "refits": int(rows["retrained"].sum()),
           "seconds_per_week": round(float((rows["select_seconds"] + rows["fit_seconds"]).mean()), 3)}
    if rows["explored"].sum() > 0:
        out["exploration_hit_rate"] = _json(_ratio(rows["explored_frauds"].sum(), rows["explored"].sum()))
        exploit = rows["selected"].sum() - rows["explored"].sum()
        out["exploitation_hit_rate"] = _json(_ratio(rows["frauds_found"].sum() - rows["explored_frauds"].sum(), exploit))
    if "typology" in selections:
        mine = selections[(selections["policy"] == policy) & (selections["typology"] != "")]
        out["found_by_typology"] = {str(k): int(v) for k, v in mine["typology"].value_counts().sort_index().items()}
    return out


def summarise(weekly: pd.DataFrame, selections: pd.DataFrame, replay: _Replay, drift: pd.Timestamp | None) -> dict:
    """A JSON-able summary: the set-up, and per policy the cumulative and pre/post-drift figures."""
    data, plan, config = replay.data, replay.plan, replay.config
    replayed = slice(plan.bounds[plan.warmup], plan.bounds[plan.end])
    summary = {
        "source": data.source, "universe_rows": len(data.frame), "unlabelled_rows_left_out": data.left_out,
        "weeks_total": len(plan.bounds) - 1, "warmup_weeks": plan.warmup, "weeks": plan.end - plan.warmup,
        "replay_start": str(plan.start(plan.warmup).date()), "replay_rows": int(replayed.stop - replayed.start),
        "warmup_labelled": len(replay.warmup_labelled), "drift_date": str(drift.date()) if drift is not None else None,
        "capacity": config.capacity, "exploration": config.exploration, "retrain_every": config.retrain_every,
        "iterations": config.fit.iterations, "seed": config.seed, "policies": {},
    }
    if replay.rulebook is not None:
        summary["rulebook"] = replay.rulebook.describe()
    if "typology" in data.oracle:
        truth = data.oracle["typology"].iloc[replayed]
        summary["frauds_by_typology"] = {str(k): int(v) for k, v in truth[truth != ""].value_counts().sort_index().items()}
    for policy in config.policies:
        summary["policies"][policy] = _policy_summary(weekly, selections, policy)
    summary["findings"] = findings(summary)
    return summary


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def findings(summary: dict) -> list[str]:
    """Plain sentences on the question the protocol asks: does model-only exploitation collapse under drift,
    and does the hybrid's exploration fix it? Only what the numbers say."""
    policies = summary["policies"]
    out = []
    if summary.get("drift_date") is None:
        return ["no drift date: pre/post-drift figures are not computed (pass one to compare the two periods)"]
    for name in ("model", "hybrid", "random", "rules"):
        p = policies.get(name)
        if p and p["pre_drift"] and p["post_drift"]:
            out.append(f"{name}: precision {_pct(p['pre_drift']['precision'])} before the drift, "
                       f"{_pct(p['post_drift']['precision'])} after; recall {_pct(p['pre_drift']['recall'])} → "
                       f"{_pct(p['post_drift']['recall'])}")
    model, hybrid = policies.get("model"), policies.get("hybrid")
    if model and model["pre_drift"] and model["post_drift"] and model["pre_drift"]["precision"]:
        ratio = (model["post_drift"]["precision"] or 0) / model["pre_drift"]["precision"]
        verdict = "collapses" if ratio < COLLAPSE_RATIO else "does not collapse"
        out.append(f"model-only {verdict}: its post-drift precision is {ratio:.2f}× its pre-drift precision "
                   f"(collapse = below {COLLAPSE_RATIO}×)")
    if model and hybrid and model["post_drift"] and hybrid["post_drift"]:
        d_recall = (hybrid["post_drift"]["recall"] or 0) - (model["post_drift"]["recall"] or 0)
        d_precision = (hybrid["post_drift"]["precision"] or 0) - (model["post_drift"]["precision"] or 0)
        out.append(f"hybrid vs model-only after the drift: recall {100 * d_recall:+.1f} pts, "
                   f"precision {100 * d_precision:+.1f} pts")
    scheme = summary.get("frauds_by_typology", {}).get("new_scheme")
    if scheme:  # the simulator's post-drift fraud scheme: what exploitation alone may never look at
        found = {n: p.get("found_by_typology", {}).get("new_scheme", 0) for n, p in policies.items()}
        out.append(f"new-scheme frauds found (of {scheme} replayed): "
                   + ", ".join(f"{n} {k}" for n, k in found.items()))
        if "model" in found and "random" in found and found["model"] < found["random"]:
            out.append("model-only is blind to the new scheme: it found fewer of its frauds than random selection")
    return out


def report_markdown(summary: dict) -> str:
    """The summary as a short markdown report (Prefect artifact, CLI)."""
    rows = ["| policy | precision | recall | revenue share | precision pre → post drift | recall pre → post drift |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, p in summary["policies"].items():
        pre, post = p["pre_drift"] or {}, p["post_drift"] or {}
        rows.append(f"| {name} | {_pct(p['precision'])} | {_pct(p['recall'])} | {_pct(p['revenue_share'])} | "
                    f"{_pct(pre.get('precision'))} → {_pct(post.get('precision'))} | "
                    f"{_pct(pre.get('recall'))} → {_pct(post.get('recall'))} |")
    setup = (f"{summary['source']}: {summary['universe_rows']:,} declarations over {summary['weeks_total']} weeks; "
             f"warm-up {summary['warmup_weeks']} weeks, {summary['weeks']} weeks replayed from "
             f"{summary['replay_start']}; capacity {_pct(summary['capacity'])} of each week, hybrid exploration "
             f"{_pct(summary['exploration'])} of the capacity, refit every {summary['retrain_every']} weeks; "
             f"drift date {summary['drift_date'] or 'none'}.")
    if summary["unlabelled_rows_left_out"]:
        setup += f" {summary['unlabelled_rows_left_out']:,} unlabelled rows were left out of the universe."
    return ("## Backtest (BACUDA protocol)\n\n" + setup + "\n\n" + "\n".join(rows) + "\n\n"
            + "\n".join(f"- {line}" for line in summary["findings"]))
