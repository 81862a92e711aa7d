"""Fitting the risk models on controlled declarations only (the behavioural checks are in training/checks.py).

- P(fraud): a CatBoost classifier with native categorical features.
- E[revenue | fraud]: a CatBoost regressor on log revenue of the caught frauds (when revenue exists), so that
  expected revenue = P(fraud) × E[revenue | fraud], as in DATE's dual objective.
"""
from __future__ import annotations

import json
import math
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from catboost import CatBoostClassifier, CatBoostRegressor, FeaturesData, Pool, sum_models

from features.build import MONOTONE_INCREASING, FeatureSet
from features.errors import UserError
from features.prices import PriceBands
from features.progress import Advance, quiet
from training.explainer import leaf_shap
from training.leaf_shap import LeafShap
from training.metrics import pr_auc
from training.user_policies import FitConfig

MIN_REVENUE_ROWS = 30
CATBOOST_DEFAULT_ROUNDS = 1000  # CatBoost's own default when `iterations` is not given
# A patient fit, as a practitioner runs one: rate 0.05 with 300 rounds' patience on the validation window. Patience
# is kept as a learning distance (rounds × rate), so a faster rate waits fewer rounds.
PATIENT_RATE = 0.05
PATIENT_ROWS = 100_000  # up to this many labelled training rows; above, the rate grows as √rows (time ∝ √rows)
PATIENCE_DISTANCE = 15.0
MAX_RATE = 0.3
BLEND_WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)  # the engineered member's share of the blend's log-odds
ROUNDS = "boosting rounds"  # what a fit's progress counts


def learning_rate_for(rows: int, iterations: int) -> float:
    """A patient learning rate from the data's size: 0.05 up to 100k labelled training rows, then growing with the
    square root of the rows (so rounds × rows, a fit's time, grow as √rows rather than linearly), and never so slow
    that the round cap cannot cover twice the patience distance (a small cap, as in tests, gets a brisk rate)."""
    by_size = PATIENT_RATE * max(1.0, math.sqrt(rows / PATIENT_ROWS))
    return float(min(MAX_RATE, max(by_size, 2 * PATIENCE_DISTANCE / max(iterations, 1))))


def patience_for(learning_rate: float) -> int:
    """Early-stopping patience in rounds: the patience distance at this rate (300 rounds at 0.05)."""
    return max(20, math.ceil(PATIENCE_DISTANCE / learning_rate))


class Deadline:
    """A retrain's time budget: fits stop boosting once it is spent (None: no budget)."""

    def __init__(self, seconds: float | None):
        self.at = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float:
        return math.inf if self.at is None else self.at - time.monotonic()

    def spent(self) -> bool:
        return self.left() <= 0


NO_DEADLINE = Deadline(None)


@dataclass(frozen=True)
class Split:
    """Labelled rows split by declaration date: train → validation → holdout."""

    train: np.ndarray
    valid: np.ndarray
    holdout: np.ndarray
    valid_start: pd.Timestamp
    holdout_start: pd.Timestamp


def time_split(dates: pd.Series, labelled: np.ndarray, valid_share: float = 0.15, holdout_share: float = 0.15,
               positive: np.ndarray | None = None) -> Split:
    """Cut the labelled rows at date quantiles, so every holdout row is filed after every training row.

    With `positive` (the labelled rows' frauds), each cut is the earlier of the rows' and the frauds' quantile, so a
    rare label still leaves the validation window and the holdout their share of frauds; a window without any is
    refused with a clear message."""
    labelled_dates = dates[labelled].sort_values()
    if len(labelled_dates) < 50:
        raise UserError(f"only {len(labelled_dates)} controlled declarations: need at least 50 to train")

    def cut(share: float) -> pd.Timestamp:
        at = labelled_dates.iloc[int(len(labelled_dates) * share)]
        if positive is not None and (frauds := dates[labelled & positive].sort_values()).size:
            at = min(at, frauds.iloc[int(len(frauds) * share)])
        return at

    valid_start, holdout_start = cut(1 - valid_share - holdout_share), cut(1 - holdout_share)
    d = dates.to_numpy()
    split = Split(
        train=labelled & (d < valid_start), valid=labelled & (d >= valid_start) & (d < holdout_start),
        holdout=labelled & (d >= holdout_start), valid_start=valid_start, holdout_start=holdout_start,
    )
    if positive is not None:
        for name in ("train", "valid", "holdout"):
            if not (getattr(split, name) & positive).any():
                raise UserError(f"the {name} window holds no positive label ({int((labelled & positive).sum())} in "
                                "all): more controlled declarations are needed to train and evaluate")
    return split


SMALL_POOL = 64  # up to this many rows (an API call's), build CatBoost pools from lists and read them on one core:
# CatBoost's other threads would spin longer than the work (measured on one row: a pool's CPU halves, a prediction's
# leaf lookup drops from 0.12 to 0.04 ms of CPU)
_PREDICTORS: dict[int, tuple[CatBoostRegressor, CatBoostRegressor]] = {}  # by the regressor's id, a few at most
_PREDICTORS_LOCK = threading.Lock()


@dataclass
class RiskModel:
    """The fitted models and what is needed to apply them."""

    classifier: CatBoostClassifier
    categorical: list[str]
    numeric: list[str]
    revenue_model: CatBoostRegressor | None = None
    revenue_smearing: float = 1.0  # Duan's smearing factor for a log-scale regression
    params: dict = field(default_factory=dict)
    price_bands: PriceBands | None = None  # the unit-price bands it was trained with, for scoring
    # the classifier's SHAP tables as the model was stored or pickled with them (`shap_tables`)
    stored_tables: LeafShap | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        """A pickled model carries its SHAP tables, so that whoever unpickles it (a Dask worker, a fixed model's
        app) does not make them again."""
        return {**self.__dict__, "stored_tables": self.shap_tables()}

    def shap_tables(self) -> LeafShap | None:
        """The classifier's SHAP tables for the reasons (training/explainer.py `leaf_shap`): those the model was
        stored with, else made now, once per classifier."""
        return leaf_shap(self.classifier, self.stored_tables)

    @property
    def columns(self) -> list[str]:
        return self.categorical + self.numeric

    def pool(self, X: pd.DataFrame) -> Pool:
        """The model's input pool. A few rows (an API call) go in as plain lists: CatBoost reads those ~4× faster
        than a DataFrame, and gives the same predictions."""
        if len(X) <= SMALL_POOL:
            ordered = X if list(X.columns) == self.columns else X[self.columns]
            return self.values_pool(ordered.to_numpy(dtype=object).tolist())
        pool = _arrays_pool(X, self.categorical, self.numeric)
        return pool if pool is not None else Pool(X[self.columns], cat_features=self.categorical)

    def risk(self, X: pd.DataFrame) -> np.ndarray:
        return self.classifier.predict_proba(self.pool(X))[:, 1]

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """risk_score = P(fraud); expected_revenue = P(fraud) × E[revenue | fraud] (NaN without a revenue model)."""
        risk, expected = self.predict_pool(self.pool(X))
        return pd.DataFrame({"risk_score": risk, "expected_revenue": expected}, index=X.index)

    def predict_pool(self, pool: Pool) -> tuple[np.ndarray, np.ndarray]:
        """(risk_score, expected_revenue) of a pool of the model's columns (`pool`, or `values_pool`)."""
        threads = _threads(pool.num_row())
        risk = self.classifier.predict_proba(pool, thread_count=threads)[:, 1]
        return risk, self.expected_revenue(pool, risk, threads)

    def expected_revenue(self, pool: Pool, risk: np.ndarray, thread_count: int = -1) -> np.ndarray:
        """risk × the revenue model's E[revenue | fraud] of `pool` (NaN without a revenue model)."""
        if self.revenue_model is None:
            return np.full(len(risk), np.nan)
        found = revenue_predictor(self.revenue_model).predict(pool, thread_count=thread_count)
        return risk * np.expm1(found).clip(min=0) * self.revenue_smearing

    def values_pool(self, rows: list[list]) -> Pool:
        """The pool of rows given as plain lists in the model's column order (categoricals as text)."""
        return Pool(rows, cat_features=list(range(len(self.categorical))), feature_names=self.columns,
                    thread_count=_threads(len(rows)))


def _arrays_pool(X: pd.DataFrame, categorical: list[str], numeric: list[str]) -> Pool | None:
    """The pool of many rows from two arrays (CatBoost's FeaturesData): the numbers as float32, as CatBoost reads a
    frame's, and the text columns each as its distinct values gathered by code (no string made per cell). CatBoost
    places the columns by name, so the predictions and SHAP values are a frame pool's, bit for bit; at 1M rows of 36
    columns it took 1.9 s against 2.6–3.0 s from the frame, and the pool held about 190 MB more while it lived (RSS
    over the frame: 245 against 59 MB). None where the frame holds what FeaturesData does not read as a frame pool
    would (a text column that is not text, or has a missing value; numbers that are not plain): the frame's pool is
    built then."""
    if not categorical or not numeric:
        return None
    if not all(isinstance(X[c].dtype, pd.StringDtype) and not X[c].hasnans for c in categorical):
        return None
    if not all(isinstance(X[c].dtype, np.dtype) and X[c].dtype.kind in "fiub" for c in numeric):
        return None
    text = np.empty((len(X), len(categorical)), dtype=object)
    for j, column in enumerate(categorical):
        codes, distinct = pd.factorize(X[column])
        text[:, j] = np.asarray(distinct, dtype=object)[codes]
    return Pool(FeaturesData(num_feature_data=X[numeric].to_numpy(dtype=np.float32), cat_feature_data=text,
                             num_feature_names=list(numeric), cat_feature_names=list(categorical)))


def _threads(rows: int) -> int:
    """CatBoost's thread_count for reading `rows` rows: one core for an API call's few, else every core."""
    return 1 if rows <= SMALL_POOL else -1


def revenue_predictor(regressor: CatBoostRegressor) -> CatBoostRegressor:
    """The revenue model to predict with: a copy that keeps of its training parameters (the model's metadata
    "params") only the loss function. CatBoost 1.2 parses those parameters on every regressor prediction, 0.2–0.35
    ms a call whatever the rows (the lean copy predicts one declaration in 0.05–0.10 ms); the copy's trees are the
    model's, and so its predictions, bit for bit. Made once per model; the model itself (what is stored and logged)
    is unchanged."""
    with _PREDICTORS_LOCK:
        found = _PREDICTORS.get(id(regressor))
        if found is not None and found[0] is regressor:
            return found[1]
        lean = regressor.copy()
        meta = lean.get_metadata()
        flat = json.loads(meta["params"]).get("flat_params", {}) if "params" in meta else {}
        meta["params"] = json.dumps(
            {"flat_params": {k: flat[k] for k in ("loss_function",) if k in flat}})
        if len(_PREDICTORS) >= 4:
            _PREDICTORS.pop(next(iter(_PREDICTORS)))
        _PREDICTORS[id(regressor)] = (regressor, lean)
        return lean


def _pool(fs: FeatureSet, rows: np.ndarray, columns: list[str], label: np.ndarray | None = None) -> Pool:
    return Pool(fs.X.loc[rows, columns], label=label, cat_features=[c for c in columns if c in fs.categorical])


def _labels(fs: FeatureSet) -> np.ndarray:
    return fs.meta["fraud"].fillna(0).astype(int).to_numpy()


class _Rounds:
    """A CatBoost callback that tells `advance` of each boosting round, and stops boosting past the deadline."""

    def __init__(self, advance: Advance, what: str, total: int, deadline: Deadline):
        self.advance, self.what, self.total, self.deadline = advance, what, total, deadline

    def after_iteration(self, info) -> bool:  # noqa: ANN001 - CatBoost's callback protocol
        self.advance(self.what, min(info.iteration, self.total), self.total, unit=ROUNDS)
        return not self.deadline.spent()  # False stops boosting (the best round so far is kept)


def _fit(estimator: CatBoostClassifier | CatBoostRegressor, pool: Pool, what: str, advance: Advance,
         deadline: Deadline = NO_DEADLINE, **fit_params) -> None:
    """Fit, telling `advance` of each round (no callback at all when nobody listens and no deadline is set)."""
    total = estimator.get_params().get("iterations") or CATBOOST_DEFAULT_ROUNDS
    listening = advance is not quiet or deadline.at is not None
    estimator.fit(pool, callbacks=[_Rounds(advance, what, total, deadline)] if listening else None, **fit_params)
    advance(what, total, total, unit=ROUNDS)


def _classifier(fs: FeatureSet, split: Split, columns: list[str], params: dict, early_stopping_rounds: int,
                what: str, advance: Advance, deadline: Deadline = NO_DEADLINE) -> CatBoostClassifier:
    """A CatBoost classifier on `columns`, early-stopped on the validation window when it has frauds."""
    y = _labels(fs)
    has_valid = split.valid.any() and y[split.valid].sum() > 0
    classifier = CatBoostClassifier(**params, allow_writing_files=False, verbose=False,
                                    early_stopping_rounds=early_stopping_rounds if has_valid else None)
    _fit(classifier, _pool(fs, split.train, columns, y[split.train]), what, advance, deadline,
         eval_set=_pool(fs, split.valid, columns, y[split.valid]) if has_valid else None, use_best_model=has_valid)
    return classifier


def _model(classifier: CatBoostClassifier, fs: FeatureSet, columns: list[str], params: dict) -> RiskModel:
    return RiskModel(classifier=classifier, categorical=[c for c in columns if c in fs.categorical],
                     numeric=[c for c in columns if c not in fs.categorical],
                     params={**params, "best_iteration": classifier.get_best_iteration()},
                     price_bands=fs.price_bands)


def patient_params(config: FitConfig, train_rows: int) -> tuple[dict, int]:
    """CatBoost parameters and early-stopping patience: the configuration's, with the learning rate and the
    patience taken from the data's size where it leaves them open."""
    params = {**config.catboost_params(), "thread_count": config.threads}
    params.setdefault("learning_rate", learning_rate_for(train_rows, config.iterations))
    return params, config.early_stopping_rounds or patience_for(params["learning_rate"])


def _constraints(columns: list[str], monotone: bool) -> dict:
    return {c: 1 for c in MONOTONE_INCREASING if c in columns} if monotone else {}


def fit_risk_model(fs: FeatureSet, split: Split, config: FitConfig = FitConfig(), columns: list[str] | None = None,
                   monotone: bool = True, revenue: bool = True, what: str = "risk model",
                   advance: Advance = quiet, deadline: Deadline = NO_DEADLINE) -> RiskModel:
    """Fit P(fraud) on `columns` (default: all of `fs`) with early stopping on the validation window, then
    E[revenue | fraud] if revenue exists. `advance` is told of each round as `what`."""
    columns = columns or fs.columns
    params, patience = patient_params(config, int(split.train.sum()))
    params = _member_params(params, columns, monotone)
    classifier = _classifier(fs, split, columns, params, patience, what, advance, deadline)
    model = _model(classifier, fs, columns, params)
    if revenue and "revenue" in fs.meta:
        _fit_revenue(model, fs, split, config, columns, advance)
    return model


@dataclass
class Member:
    """One CatBoost of a blend: its own columns, its weight on the log-odds, its rounds (found on validation, then
    scaled for the refit), and its train-only fit (`train_only`, for the record of what the refit changed)."""

    name: str
    columns: list[str]
    weight: float = 1.0
    rounds: int = 0
    seconds: float = 0.0
    validation_pr_auc: float = float("nan")
    train_only: CatBoostClassifier | None = field(default=None, repr=False)


@dataclass
class Blend:
    """What `fit_blended_model` chose on the validation window, for the run's record."""

    members: list[Member]
    refit: bool
    note: str = ""
    validation_pr_auc: float = float("nan")  # the blend's, train-only members

    def as_params(self) -> dict:
        return {"blend": [{"name": m.name, "weight": m.weight, "rounds": m.rounds, "columns": len(m.columns),
                           "validation_pr_auc": m.validation_pr_auc} for m in self.members],
                "blend_refit": self.refit, "blend_note": self.note}

    def train_only_logits(self, fs: FeatureSet, rows: np.ndarray) -> np.ndarray:
        """The blend's log-odds on `rows` from the members' train-only fits (before any refit)."""
        return sum(m.weight * m.train_only.predict(_pool(fs, rows, m.columns), prediction_type="RawFormulaVal")
                   for m in self.members if m.weight > 0)


def _summed(classifiers: list[CatBoostClassifier], weights: list[float]) -> CatBoostClassifier:
    """One CatBoost model whose log-odds are the weighted sum of the members' (CatBoost's own sum_models: its SHAP
    values are the members' weighted sums, and it is saved and served like any other model)."""
    if len(classifiers) == 1 and weights[0] == 1.0:
        return classifiers[0]
    summed = sum_models(classifiers, weights=weights)
    # sum_models records empty training parameters ({"flat_params": {}}), which CatBoost warns about on every load
    # ("There are invalid params…"); the members' own parameters stay in the model's metadata (model0:params, …).
    summed.get_metadata()["params"] = json.dumps({"flat_params": {"loss_function": "Logloss"}})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "blend.cbm"
        summed.save_model(str(path))
        return CatBoostClassifier().load_model(str(path))


def _member_params(params: dict, columns: list[str], monotone: bool = True) -> dict:
    """`params` with the monotone constraints of those MONOTONE_INCREASING features that are among `columns`."""
    constraints = _constraints(columns, monotone)
    return {**params, "monotone_constraints": constraints} if constraints else params


def fit_blended_model(fs: FeatureSet, split: Split, config: FitConfig, columns: list[str],
                      advance: Advance = quiet, deadline: Deadline = NO_DEADLINE) -> tuple[RiskModel, Blend]:
    """The model `aduana train` serves: a patient CatBoost on `columns` (the engineered model), blended on the
    log-odds with the same patient CatBoost on the mapped columns alone, the weight chosen on the validation window
    (weight 1: the engineered model alone; 0: the mapped columns alone, where the engineered groups do not help),
    then refitted on train + validation with each member's rounds scaled to the larger data (`config.refit`).

    The served model holds exactly the columns of the members with weight: each is fitted on those columns with
    the other's ignored, so that CatBoost can sum them into one model."""
    y = _labels(fs)
    params, patience = patient_params(config, int(split.train.sum()))
    members = [Member("engineered", columns)]
    note = []
    if config.blend and set(fs.reference_columns) != set(columns):
        if y[split.valid].sum() > 0:
            members.append(Member("mapped columns", list(fs.reference_columns)))
        else:
            note.append("no blend: the validation window holds no fraud to weigh the members on")
    valid_logits = []
    for member in members:
        started = time.monotonic()
        member.train_only = _classifier(fs, split, member.columns, _member_params(params, member.columns), patience,
                                        f"risk model: {member.name}", advance, deadline)
        member.rounds, member.seconds = member.train_only.tree_count_, time.monotonic() - started
        if deadline.spent():
            note.append(f"the time budget stopped {member.name} at {member.rounds:,} rounds")
        logits = member.train_only.predict(_pool(fs, split.valid, member.columns), prediction_type="RawFormulaVal")
        member.validation_pr_auc = pr_auc(y[split.valid], logits)
        valid_logits.append(logits)
    if len(members) == 2:
        scored = [(pr_auc(y[split.valid], w * valid_logits[0] + (1 - w) * valid_logits[1]), w) for w in BLEND_WEIGHTS]
        validation, weight = max(scored, key=lambda s: (np.nan_to_num(s[0], nan=-1.0), s[1]))  # ties: engineered
        members[0].weight, members[1].weight = weight, 1 - weight
    else:
        validation = members[0].validation_pr_auc
    chosen = [m for m in members if m.weight > 0]
    train_rows = split.train.sum()
    refit_rows = split.train | split.valid
    scale = refit_rows.sum() / max(train_rows, 1)
    # A refit costs about its rounds × rows: both grow by `scale`.
    refit = config.refit and split.valid.any() and deadline.left() > sum(m.seconds for m in chosen) * scale ** 2
    if config.refit and not refit:
        note.append("no refit: too little of the time budget is left" if split.valid.any()
                    else "no refit: no validation window")
    if not refit and len(chosen) == 2 and deadline.spent():  # no time to fit both on one layout: the better alone
        best = max(chosen, key=lambda m: np.nan_to_num(m.validation_pr_auc, nan=-1.0))
        for m in members:
            m.weight = float(m is best)
        chosen = [best]
        note.append(f"the time budget is spent: {best.name} alone, as it scores higher on validation")
    used = [c for c in fs.columns if any(c in m.columns for m in chosen)]  # categorical first, as RiskModel orders
    if refit or len(chosen) == 2:  # fit each chosen member on the served columns, the others' ignored
        rows = refit_rows if refit else split.train
        classifiers = []
        for member in chosen:
            if refit:
                member.rounds = min(config.iterations, max(1, math.ceil(member.rounds * scale)))
            own = {**_member_params(params, member.columns), "iterations": member.rounds}
            if ignored := [c for c in used if c not in member.columns]:
                own["ignored_features"] = ignored
            final = CatBoostClassifier(**own, allow_writing_files=False, verbose=False)
            _fit(final, _pool(fs, rows, used, y[rows]), f"risk model: {member.name}" + (", refit" if refit else ""),
                 advance)
            classifiers.append(final)
        classifier = _summed(classifiers, [m.weight for m in chosen])
    else:
        classifier = chosen[0].train_only
    blend = Blend(members, refit=bool(refit), note="; ".join(note), validation_pr_auc=validation)
    model = _model(classifier, fs, used, {**params, "patience": patience, **blend.as_params()})
    if "revenue" in fs.meta:
        _fit_revenue(model, fs, split, config, used, advance)
    return model, blend


def fit_reference(fs: FeatureSet, split: Split, config: FitConfig = FitConfig(), advance: Advance = quiet) -> RiskModel:
    """The model a user would try first: a library-default CatBoost (its own defaults, early stopping on the
    validation window) on every mapped column, categoricals native. No revenue model."""
    params = {"random_seed": config.seed, "thread_count": config.threads}
    if config.reference_iterations is not None:
        params["iterations"] = config.reference_iterations
    columns = fs.reference_columns
    return _model(_classifier(fs, split, columns, params, 100, "reference (library-default CatBoost)", advance),
                  fs, columns, params)


def _fit_revenue(model: RiskModel, fs: FeatureSet, split: Split, config: FitConfig, columns: list[str],
                 advance: Advance = quiet) -> None:
    """E[revenue | fraud]: log revenue of the caught frauds, with Duan's smearing back to the money scale.

    Every declaration scored predicts it, so its categorical statistics are chosen on the validation window where
    the configuration leaves them to CatBoost: one categorical at a time (`max_ctr_complexity` 1: at 1M rows a sixth
    of the prediction's time) unless CatBoost's own combinations predict the window's log revenue better."""
    y = _labels(fs)
    revenue = fs.meta["revenue"].astype("float64").to_numpy()
    found = (y == 1) & (np.nan_to_num(revenue) > 0)
    caught = (split.train | split.valid) & found
    if caught.sum() < MIN_REVENUE_ROWS:
        return
    params = {k: v for k, v in config.catboost_params().items() if k != "eval_metric"} | {
        "iterations": min(config.iterations, 400)}
    if "max_ctr_complexity" not in params and _single_statistics_suffice(
            fs, split.train & found, split.valid & found, columns, np.log1p(revenue), params, config, advance):
        params["max_ctr_complexity"] = 1
    regressor = _revenue_regressor(params, config)
    target = np.log1p(revenue[caught])
    _fit(regressor, _pool(fs, caught, columns, target), "revenue model", advance)
    residual = target - regressor.predict(_pool(fs, caught, columns))
    model.revenue_model = regressor
    model.revenue_smearing = float(np.mean(np.exp(residual)))


def _revenue_regressor(params: dict, config: FitConfig) -> CatBoostRegressor:
    return CatBoostRegressor(**params, loss_function="RMSE", thread_count=config.threads, allow_writing_files=False,
                             verbose=False)


def _single_statistics_suffice(fs: FeatureSet, train: np.ndarray, valid: np.ndarray, columns: list[str],
                               target: np.ndarray, params: dict, config: FitConfig, advance: Advance) -> bool:
    """Whether, fit on `train`, the regressor reading each categorical alone predicts `valid`'s `target` at least as
    well (RMSE) as with CatBoost's own combinations of them; False where either holds fewer than MIN_REVENUE_ROWS."""
    if train.sum() < MIN_REVENUE_ROWS or valid.sum() < MIN_REVENUE_ROWS:
        return False
    errors = []
    for tried in ({**params, "max_ctr_complexity": 1}, params):
        regressor = _revenue_regressor(tried, config)
        _fit(regressor, _pool(fs, train, columns, target[train]), "revenue model (its statistics)", advance)
        errors.append(float(np.sqrt(np.mean((regressor.predict(_pool(fs, valid, columns)) - target[valid]) ** 2))))
    return errors[0] <= errors[1]


def validation_score(model: RiskModel, fs: FeatureSet, split: Split) -> float:
    """PR-AUC on the validation window (the ablation's yardstick); NaN without both classes."""
    fraud = fs.meta.loc[split.valid, "fraud"].fillna(0).astype(int).to_numpy()
    return pr_auc(fraud, model.risk(fs.X.loc[split.valid])) if split.valid.any() else float("nan")
