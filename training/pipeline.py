"""Train and evaluate: time split → features → feature groups that help → engineered model and the reference
(a library-default CatBoost on the mapped columns) → holdout metrics → behaviour.

Features are built only for the rows training reads: the labelled rows of the split and the drift reference sample
(a few percent of a national history), each exactly as it would be among all rows, since the entity profiles, the
first filings and the bill-of-lading totals still come from the whole history. So a retrain's fits follow its labelled
rows, not the declarations it has seen. The history itself is read into pandas here (`featured_in_memory`); beyond
a size, training/snapshot_training.py builds the same features from the warehouse's snapshot through DuckDB, holding
only the featured rows, and both hand them to `fit_and_evaluate`.

Pure: no MLflow and no Prefect. The retrain flow logs what this returns.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from features.build import FeatureSet, build_features
from features.catalogue import ENGINEERED_GROUPS
from features.contract import LABEL_FIELDS
from features.errors import UserError
from features.labels import labelled
from features.prices import PriceBands
from features.profiles import first_filings
from features.progress import Advance, quiet
from training.checks import behaviour_checks
from training.drift import reference_sample
from training.metrics import precision_by_segment, selection_metrics
from training.models import (
    NO_DEADLINE,
    Blend,
    Deadline,
    FitConfig,
    RiskModel,
    Split,
    fit_blended_model,
    fit_reference,
    fit_risk_model,
    time_split,
    validation_score,
)
from training.tuning import tune

SEGMENTS = {"office": "office_id", "hs_chapter": "hs_chapter"}


@dataclass
class Evaluation:
    metrics: dict
    segments: dict[str, pd.DataFrame] = field(default_factory=dict)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)  # holdout: id, labels, scores


@dataclass
class GroupEffect:
    """What one engineered feature group did on the validation window."""

    group: str
    kept: bool
    delta: float | None  # validation PR-AUC with the group minus without it (> 0: the group helps)
    note: str = ""


@dataclass
class TrainingResult:
    """A training's models and what they were fitted and judged on. `features` holds the featured rows only (the
    labelled rows and the drift reference sample); `split` and `drift_rows` are boolean arrays over them."""

    features: FeatureSet
    split: Split
    model: RiskModel
    evaluation: Evaluation
    reference: RiskModel
    reference_evaluation: Evaluation
    behaviour: dict
    reference_behaviour: dict
    drift_rows: np.ndarray  # the drift reference sample among the featured rows
    history_rows: int  # the declarations of the history (the profiles, first filings and bill totals read them all)
    groups: list[GroupEffect] = field(default_factory=list)
    trials: list = field(default_factory=list)  # training.tuning.Trial, when hyperparameters were searched
    blend: Blend | None = None  # the model's members, weights and refit, as chosen on the validation window
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step (features, ablation, fits, tuning)

    @property
    def counts(self) -> dict[str, int]:
        """`rows`: the history's declarations; `featured`: those whose features were built (labelled or drift
        reference); then the split's labelled rows."""
        return {"rows": self.history_rows, "featured": len(self.features.X), "train": int(self.split.train.sum()),
                "valid": int(self.split.valid.sum()), "holdout": int(self.split.holdout.sum())}

    @property
    def drift_reference(self) -> pd.DataFrame:
        """The feature rows monitoring compares recent windows with (training/drift.py `reference_sample`)."""
        return self.features.X.loc[self.drift_rows]

    @property
    def fit_seconds_per_100k_labelled(self) -> float:
        """The retrain's fitting time (the ablation's screening, the model's fits and the reference's; not the
        hyperparameter search, whose time is the user's) per 100k labelled rows fitted on (train + validation)."""
        fitted = int((self.split.train | self.split.valid).sum())
        seconds = sum(self.timings.get(k, 0.0) for k in ("ablation_s", "model_fit_s", "reference_fit_s"))
        return seconds / max(fitted, 1) * 100_000

    @property
    def kept_groups(self) -> list[str]:
        return [g.group for g in self.groups if g.kept]


def evaluate(model: RiskModel, fs: FeatureSet, rows: np.ndarray) -> Evaluation:
    """Holdout metrics of one model, overall and by segment."""
    X = fs.X.loc[rows]
    scores = model.predict(X)
    fraud = fs.meta.loc[rows, "fraud"].astype("float64").to_numpy()
    revenue = fs.meta.loc[rows, "revenue"].astype("float64").to_numpy() if "revenue" in fs.meta else None
    metrics = selection_metrics(fraud, scores["risk_score"].to_numpy(), revenue)
    if revenue is not None and scores["expected_revenue"].notna().all():
        by_value = selection_metrics(fraud, scores["expected_revenue"].to_numpy(), revenue)
        metrics.update({f"{k}_by_expected_revenue": v for k, v in by_value.items() if k.startswith("revenue_at")})
    segments = {name: precision_by_segment(fraud, scores["risk_score"].to_numpy(), X[column])
                for name, column in SEGMENTS.items() if column in X}
    predictions = fs.meta.loc[rows].assign(risk_score=scores["risk_score"].to_numpy(),
                                           expected_revenue=scores["expected_revenue"].to_numpy())
    return Evaluation(metrics=metrics, segments=segments, predictions=predictions.reset_index(drop=True))


SCREENING_ROUNDS = 120  # ablation fits: brisk, to compare groups, not to serve
SCREENING_LEARNING_RATE = 0.25
ABLATION_BUDGET_SHARE = 0.25  # of a retrain's time budget; the rest is the model's


def _informative(fs: FeatureSet, split: Split, group: str) -> bool:
    """Whether a group's columns vary at all on the training rows (absent sources give constant columns)."""
    columns = [c for c in fs.model_columns((group,)) if c not in fs.model_columns(())]
    rows = fs.X.loc[split.train, columns]
    return any(rows[c].nunique(dropna=False) > 1 for c in columns)


def _silent(message: str) -> None:
    pass


def screening_split(split: Split, rows: int, seed: int) -> Split:
    """The split the ablation's screening fits learn from: at most `rows` training rows, a seeded uniform sample
    kept in date order (so its time does not grow with the labelled rows), and the whole validation window."""
    train = np.flatnonzero(split.train)
    if len(train) <= rows:
        return split
    sampled = np.zeros_like(split.train)
    sampled[np.random.default_rng(seed).choice(train, rows, replace=False)] = True
    return replace(split, train=sampled)


def select_groups(fs: FeatureSet, split: Split, config: FitConfig, report: Callable[[str], None] = _silent,
                  advance: Advance = quiet, deadline: Deadline = NO_DEADLINE) -> list[GroupEffect]:
    """Backward ablation: fit with every informative group, then without each one; a group whose removal does
    not lower the validation PR-AUC is left out. Screening fits stop early at a brisker learning rate, on at most
    `config.screening_rows` training rows (`screening_split`)."""
    effects = {g: GroupEffect(g, False, None, "no data: its columns are constant on the training rows")
               for g in ENGINEERED_GROUPS if not _informative(fs, split, g)}
    candidates = tuple(g for g in ENGINEERED_GROUPS if g not in effects)
    if not config.ablation or len(candidates) == 0 or not split.valid.any():
        effects.update({g: GroupEffect(g, True, None, "kept without ablation") for g in candidates})
        return [effects[g] for g in ENGINEERED_GROUPS]
    screening = replace(config, iterations=min(config.iterations, SCREENING_ROUNDS),
                        learning_rate=config.learning_rate or SCREENING_LEARNING_RATE)
    sample = screening_split(split, config.screening_rows, config.seed)
    def score(groups: tuple[str, ...], what: str) -> float:
        model = fit_risk_model(fs, sample, screening, fs.model_columns(groups), revenue=False,
                               what=f"feature groups: {what}", advance=advance, deadline=deadline)
        return validation_score(model, fs, sample)
    if sample is not split:
        report(f"feature groups: screening on a sample of {int(sample.train.sum()):,} of "
               f"{int(split.train.sum()):,} training rows")
    full = score(candidates, "all")
    report(f"feature groups: validation PR-AUC {full:.4f} with all {len(candidates)}; leaving each out in turn…")
    for group in candidates:
        if deadline.spent():  # the ablation's share of the time budget: the rest is kept unscreened
            effects[group] = GroupEffect(group, True, None, "kept without screening: the ablation's share of the "
                                         "time budget is spent")
            continue
        delta = full - score(tuple(g for g in candidates if g != group), f"without {group}")
        kept = bool(delta > 0)
        report(f"  {group}: {'kept' if kept else 'left out'} (without it {full - delta:.4f})")
        effects[group] = GroupEffect(group, kept, delta, "helps on validation" if kept else
                                     "left out: the validation PR-AUC is no lower without it")
    return [effects[g] for g in ENGINEERED_GROUPS]


def featured_rows(frame: pd.DataFrame, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(featured, drift) boolean arrays over `frame`'s rows (date-sorted, a range index): the rows training builds
    features for, and among them the drift reference (training/drift.py `reference_sample`: up to 20k declarations
    filed from the validation window on, labelled or not, as monitoring compares every scored declaration with it;
    controlled ones alone would be a selection on risk)."""
    drift = np.zeros(len(frame), dtype=bool)
    drift[reference_sample(frame[["declaration_date"]], frame["declaration_date"], split.valid_start).index] = True
    return split.train | split.valid | split.holdout | drift, drift


@dataclass
class Featured:
    """What the fits read: the featured rows' features, the split over them, which of them are the drift reference,
    how many declarations the history holds and how long the features took."""

    features: FeatureSet
    split: Split
    drift_rows: np.ndarray
    history_rows: int
    seconds: float


def featured_in_memory(frame: pd.DataFrame, split: Split | None = None, history: pd.DataFrame | None = None,
                       report: Callable[[str], None] = _silent, advance: Advance = quiet) -> Featured:
    """The features of `frame`'s labelled rows and drift reference (`featured_rows`), with the entity profiles of
    `history` (default: `frame`) and the first filings of all of `frame`: what they would be among all rows.
    Without an explicit `split`, labelled rows are cut by date into train → validation → holdout; price bands are
    fitted on rows filed before the validation window."""
    frame = frame.sort_values(["declaration_date", "declaration_id"], kind="stable").reset_index(drop=True)
    split = split or time_split(frame["declaration_date"], labelled(frame),
                                positive=frame["fraud"].fillna(0).to_numpy() == 1)
    bands = PriceBands.fit(frame[frame["declaration_date"] < split.valid_start])
    featured, drift = featured_rows(frame, split)
    report(f"building features for {int(featured.sum()):,} of {len(frame):,} declarations (the controlled ones and "
           "the drift reference; entity profiles from all)…")
    started = time.perf_counter()
    features = build_features(frame[featured], history=frame if history is None else history, bands=bands,
                              advance=advance, batch_first=first_filings(frame))
    split = replace(split, train=split.train[featured], valid=split.valid[featured], holdout=split.holdout[featured])
    return Featured(features, split, drift[featured], len(frame), time.perf_counter() - started)


def train_and_evaluate(frame: pd.DataFrame, config: FitConfig = FitConfig(), split: Split | None = None,
                       history: pd.DataFrame | None = None, tune_seconds: float | None = None,
                       report: Callable[[str], None] = _silent, starting: Callable[[str], None] = _silent,
                       advance: Advance = quiet) -> TrainingResult:
    """Fit the engineered model and the reference on the same time split, and evaluate both on the same holdout.

    `frame` holds integrated declarations (labelled and not); `split` and `history` as `featured_in_memory` takes
    them. A history too large for pandas trains from the warehouse's snapshot instead
    (training/snapshot_training.py), through `fit_and_evaluate` as here."""
    starting("model")
    return fit_and_evaluate(featured_in_memory(frame, split, history, report, advance), config, tune_seconds,
                            report, starting, advance)


def fit_and_evaluate(featured: Featured, config: FitConfig = FitConfig(), tune_seconds: float | None = None,
                     report: Callable[[str], None] = _silent, starting: Callable[[str], None] = _silent,
                     advance: Advance = quiet) -> TrainingResult:
    """The fits and their evaluation on featured rows: feature groups that help, the engineered model, the reference.

    `tune_seconds`: search hyperparameters with Optuna for this long (on the validation window) before the final fit.
    `report` receives a line as each step starts or ends (the flows pass their progress), `advance` the progress
    within a step (feature parts, boosting rounds).
    `starting` is told whose work begins: "reference" just before the reference's fit (the caller tells "model" as
    the features start; the flows open each one's MLflow run then, so that the run spans its own training).
    """
    features, split = featured.features, featured.split
    timings = {"features_s": featured.seconds}
    report(f"{len(features.columns)} features; split {int(split.train.sum()):,} train, {int(split.valid.sum()):,} "
           f"validation, {int(split.holdout.sum()):,} holdout controlled declarations")
    deadline = Deadline(config.time_budget_s)
    started = time.perf_counter()
    screening = Deadline(None if config.time_budget_s is None else config.time_budget_s * ABLATION_BUDGET_SHARE)
    groups = select_groups(features, split, config, report, advance, screening)
    timings["ablation_s"] = time.perf_counter() - started
    kept = tuple(g.group for g in groups if g.kept)
    columns = features.model_columns(kept)
    trials = []
    if tune_seconds:
        started = time.perf_counter()
        config, trials = tune(features, split, columns, config, tune_seconds, advance)
        timings["tuning_s"] = time.perf_counter() - started
    started = time.perf_counter()
    report(f"fitting the risk model on {len(columns)} columns (at most {config.iterations:,} rounds)…")
    model, blend = fit_blended_model(features, split, config, columns, advance, deadline)
    timings["model_fit_s"] = time.perf_counter() - started
    report(f"risk model: {describe_blend(blend)}, in {timings['model_fit_s']:.0f} s; "
           "fitting the reference (library-default CatBoost)…")
    model.params["feature_groups"] = list(kept)
    starting("reference")
    started = time.perf_counter()
    reference = fit_reference(features, split, config, advance)
    timings["reference_fit_s"] = time.perf_counter() - started
    report(f"reference: {reference.classifier.tree_count_:,} rounds in {timings['reference_fit_s']:.0f} s; "
           "evaluating both on the holdout…")
    holdout = features.X.loc[split.holdout]
    return TrainingResult(
        features=features, split=split, model=model, evaluation=evaluate(model, features, split.holdout),
        reference=reference, reference_evaluation=evaluate(reference, features, split.holdout),
        behaviour=behaviour_checks(model, holdout), reference_behaviour=behaviour_checks(reference, holdout),
        drift_rows=featured.drift_rows, history_rows=featured.history_rows, groups=groups, trials=trials, timings=timings,
        blend=blend,
    )


def describe_blend(blend: Blend | None) -> str | None:
    """One line: which members the model holds, with their weights and rounds, and whether they were refitted."""
    if blend is None:
        return None
    parts = [f"{m.name} ×{m.weight:g} ({m.rounds:,} rounds)" for m in blend.members if m.weight > 0]
    left = [m.name for m in blend.members if m.weight == 0]
    text = " + ".join(parts) + (f"; {', '.join(left)} weighted 0 on validation" if left else "")
    return text + ("; refitted on train + validation" if blend.refit else "") + (f"; {blend.note}" if blend.note else "")


def explicit_split(train: pd.DataFrame, test: pd.DataFrame, valid_share: float = 0.15) -> tuple[pd.DataFrame, Split, pd.DataFrame]:
    """For `aduana evaluate`: the user's train and test files as one frame, the split, and a label-free history.

    Test labels never feed features: the history holds the test rows' filings but not their outcomes.
    """
    frame = pd.concat([train.assign(_part="train"), test.assign(_part="test")], ignore_index=True)
    frame = frame.sort_values(["declaration_date", "declaration_id"], kind="stable").reset_index(drop=True)
    known = labelled(frame)
    is_train = (frame["_part"] == "train").to_numpy()
    train_dates = frame.loc[is_train & known, "declaration_date"].sort_values()
    if len(train_dates) < 50 or not (known & ~is_train).any():
        raise UserError("evaluate needs at least 50 labelled rows in --train and some labelled rows in --test")
    valid_start = train_dates.iloc[int(len(train_dates) * (1 - valid_share))]
    dates = frame["declaration_date"].to_numpy()
    split = Split(train=is_train & known & (dates < valid_start), valid=is_train & known & (dates >= valid_start),
                  holdout=~is_train & known, valid_start=valid_start,
                  holdout_start=frame.loc[~is_train, "declaration_date"].min())
    label_columns = [c for c in LABEL_FIELDS if c in frame]
    history = frame.copy()
    history.loc[~is_train, label_columns] = np.nan
    return frame.drop(columns="_part"), split, history.drop(columns="_part")
