"""Train and evaluate: features → time split → full model and raw baseline → holdout metrics → behaviour.

Pure: no MLflow and no Prefect. The retrain flow logs what this returns.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.build import FeatureSet, build_features, price_bands, raw_features
from features.data.errors import DataError
from training.metrics import precision_by_segment, selection_metrics
from training.models import FitConfig, RiskModel, Split, behaviour_checks, fit_risk_model, time_split

SEGMENTS = {"office": "office_id", "hs_chapter": "hs_chapter"}


@dataclass
class Evaluation:
    metrics: dict
    segments: dict[str, pd.DataFrame] = field(default_factory=dict)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)  # holdout: id, labels, scores


@dataclass
class TrainingResult:
    features: FeatureSet
    split: Split
    model: RiskModel
    evaluation: Evaluation
    baseline: RiskModel
    baseline_features: FeatureSet
    baseline_evaluation: Evaluation
    behaviour: dict

    @property
    def counts(self) -> dict[str, int]:
        return {"rows": len(self.features.X), "train": int(self.split.train.sum()),
                "valid": int(self.split.valid.sum()), "holdout": int(self.split.holdout.sum())}


def labelled_rows(frame: pd.DataFrame) -> np.ndarray:
    """Controlled declarations with a known outcome: the only rows trained on."""
    inspected = frame["inspected"].fillna(0).to_numpy() == 1 if "inspected" in frame else frame["fraud"].notna().to_numpy()
    return inspected & frame["fraud"].notna().to_numpy()


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


def train_and_evaluate(frame: pd.DataFrame, config: FitConfig = FitConfig(), split: Split | None = None,
                       history: pd.DataFrame | None = None) -> TrainingResult:
    """Fit the full model and the raw baseline on the same time split, and evaluate both on the same holdout.

    `frame` holds integrated declarations (labelled and not). Without an explicit `split`, labelled rows are cut
    by date into train → validation → holdout; price bands are fitted on rows filed before the validation window.
    """
    frame = frame.sort_values(["declaration_date", "declaration_id"], kind="stable").reset_index(drop=True)
    split = split or time_split(frame["declaration_date"], labelled_rows(frame))
    bands = price_bands(frame[frame["declaration_date"] < split.valid_start])
    features = build_features(frame, history=history, bands=bands)
    model = fit_risk_model(features, split, config)
    model.price_bands = bands
    baseline_features = raw_features(frame)
    baseline = fit_risk_model(baseline_features, split, config, monotone=False)
    return TrainingResult(
        features=features, split=split, model=model, evaluation=evaluate(model, features, split.holdout),
        baseline=baseline, baseline_features=baseline_features,
        baseline_evaluation=evaluate(baseline, baseline_features, split.holdout),
        behaviour=behaviour_checks(model, features.X.loc[split.holdout]),
    )


def explicit_split(train: pd.DataFrame, test: pd.DataFrame, valid_share: float = 0.15) -> tuple[pd.DataFrame, Split, pd.DataFrame]:
    """For `aduana evaluate`: the user's train and test files as one frame, the split, and a label-free history.

    Test labels never feed features: the history holds the test rows' filings but not their outcomes.
    """
    frame = pd.concat([train.assign(_part="train"), test.assign(_part="test")], ignore_index=True)
    frame = frame.sort_values(["declaration_date", "declaration_id"], kind="stable").reset_index(drop=True)
    labelled = labelled_rows(frame)
    is_train = (frame["_part"] == "train").to_numpy()
    train_dates = frame.loc[is_train & labelled, "declaration_date"].sort_values()
    if len(train_dates) < 50 or not (labelled & ~is_train).any():
        raise DataError("evaluate needs at least 50 labelled rows in --train and some labelled rows in --test")
    valid_start = train_dates.iloc[int(len(train_dates) * (1 - valid_share))]
    dates = frame["declaration_date"].to_numpy()
    split = Split(train=is_train & labelled & (dates < valid_start), valid=is_train & labelled & (dates >= valid_start),
                  holdout=~is_train & labelled, valid_start=valid_start,
                  holdout_start=frame.loc[~is_train, "declaration_date"].min())
    label_columns = [c for c in ("inspected", "fraud", "revenue", "critical", "control_date") if c in frame]
    history = frame.copy()
    history.loc[~is_train, label_columns] = np.nan
    return frame.drop(columns="_part"), split, history.drop(columns="_part")
