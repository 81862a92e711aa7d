"""The model stages: feature building and fitting, the backtest's weekly step, and the model's quality against
the plain library on the same holdout."""
from __future__ import annotations

import time
from pathlib import Path

from processes import peak_mb


def stage_model(work: Path, rows: int) -> dict:
    """Feature building on every declaration, then fitting on the controlled ones (per 100k labelled rows)."""
    import pandas as pd

    from features.build import build_features, integrate
    from features.labels import labelled
    from features.prices import PriceBands
    from training.models import FitConfig, fit_risk_model, time_split

    landing = work / "landing"
    frame = integrate(pd.read_parquet(landing / "declarations.parquet"), pd.read_parquet(landing / "manifests.parquet"),
                      pd.read_parquet(landing / "traders.parquet"))
    frame = frame.sort_values(["declaration_date", "declaration_id"], kind="stable").reset_index(drop=True)
    split = time_split(frame["declaration_date"], labelled(frame))
    t = time.perf_counter()
    features = build_features(frame, bands=PriceBands.fit(frame[frame["declaration_date"] < split.valid_start]))
    features_s = time.perf_counter() - t
    t = time.perf_counter()
    model = fit_risk_model(features, split, FitConfig())
    fit_s = time.perf_counter() - t
    labelled = int((split.train | split.valid).sum())
    return {"rows": rows, "features_s": features_s, "features_rows_per_s": rows / features_s,
            "feature_count": len(features.columns), "labelled_rows_fitted": labelled, "fit_s": fit_s,
            "fit_s_per_100k_labelled": fit_s / labelled * 100_000,
            "iterations_used": model.params["best_iteration"] + 1, "peak_rss_mb": peak_mb()}


BACKTEST_WEEKLY = 100_000  # declarations per replayed week

BACKTEST_WARMUP = 4


def stage_backtest(work: Path, rows: int) -> dict:
    """The backtest's weekly step at 100k declarations a week: shared features, then each policy selects, learns
    its picks and is scored; model policies refit every 2 weeks here (every 4 by default) so refits are timed too."""
    from features.simulator import simulate
    from serving.backtest import REFIT_ITERATIONS, BacktestConfig, from_world, run_backtest
    from training.models import FitConfig

    weeks = max(BACKTEST_WARMUP + 4, rows // BACKTEST_WEEKLY)
    t = time.perf_counter()
    data = from_world(simulate(weeks * BACKTEST_WEEKLY, seed=7, days=7 * weeks))
    simulate_s = time.perf_counter() - t
    config = BacktestConfig(warmup_weeks=BACKTEST_WARMUP, retrain_every=2, max_weeks=weeks - BACKTEST_WARMUP,
                            fit=FitConfig(iterations=REFIT_ITERATIONS))  # whole weeks only: filings spill past the end
    t = time.perf_counter()
    result = run_backtest(data, config)
    replay_s = time.perf_counter() - t
    weekly = result.weekly
    steady = weekly[~weekly["week"].isin(weekly.loc[weekly["retrained"], "week"])]  # weeks without a refit
    refits = weekly[weekly["retrained"] & (weekly["week"] > 1)]  # the first fit is shared by model and hybrid
    per_policy = steady.groupby("policy", sort=False)["select_seconds"].mean()
    shared = float(weekly.groupby("week")["shared_seconds"].first().mean())
    refit = refits.groupby("policy", sort=False)["fit_seconds"].mean()
    week_s = shared + float(per_policy.sum())
    declarations = float(weekly.groupby("week")["declarations"].first().mean())
    return {"declarations_per_week": declarations, "warmup_weeks": BACKTEST_WARMUP,
            "timed_weeks": int(weekly["week"].nunique()), "warmup_labelled": result.summary.warmup_labelled,
            "refit_iterations": REFIT_ITERATIONS, "simulate_s": simulate_s, "replay_s": replay_s,
            "shared_features_s_per_week": shared,
            "select_s_per_week": {p: float(v) for p, v in per_policy.items()},
            "refit_s": {p: float(v) for p, v in refit.items()},
            "refit_rows": int(len(result.training_ids["model"])),
            "week_s_all_policies": week_s, "rows_per_s_all_policies": declarations / week_s,
            "week_s_all_policies_with_refit_every_4": week_s + float(refit.sum()) / 4,
            "peak_rss_mb": peak_mb()}


QUALITY_METRICS = ("precision_at_5pct", "precision_at_10pct", "pr_auc")
# What a practitioner gets from the same library with patience: a lower rate, many rounds, 300 rounds' patience.
PRACTITIONER = {"learning_rate": 0.05, "iterations": 5000, "early_stopping_rounds": 300, "eval_metric": "AUC"}

QUALITY_ROWS = {"default": 200_000, "islas": 50_000}


def _holdout(fraud, scores) -> dict:  # noqa: ANN001
    from training.metrics import selection_metrics

    metrics = selection_metrics(fraud, scores)
    return {m: metrics[m] for m in QUALITY_METRICS}


def _quality(result, counts_rows: int) -> dict:  # noqa: ANN001 - a TrainingResult
    """The model against the library-default CatBoost reference and a patient practitioner's CatBoost (both on the
    mapped columns) on the same holdout, with each technique's measured effect (validation window unless said)."""
    from dataclasses import replace

    from training.models import FitConfig, fit_risk_model, validation_score

    fs, split = result.features, result.split
    labelled = int((split.train | split.valid).sum())
    per_100k = 100_000 / labelled
    fraud = fs.meta.loc[split.holdout, "fraud"].astype("float64").to_numpy()
    holdout_X = fs.X.loc[split.holdout]
    started = time.perf_counter()
    practitioner = fit_risk_model(fs, split, FitConfig(**PRACTITIONER), fs.reference_columns, monotone=False,
                                  revenue=False, what="practitioner")
    practitioner_s = time.perf_counter() - started
    model = {m: result.evaluation.metrics[m] for m in QUALITY_METRICS}
    reference = {m: result.reference_evaluation.metrics[m] for m in QUALITY_METRICS}
    patient = _holdout(fraud, practitioner.risk(holdout_X))
    blend, engineered = result.blend, result.blend.members[0]
    columns = engineered.columns
    base = FitConfig()

    def variant(config: FitConfig) -> float:
        return validation_score(fit_risk_model(fs, split, config, columns, revenue=False), fs, split)

    techniques = {
        "feature_groups (validation PR-AUC with the group minus without it)":
            {g.group: g.delta for g in result.groups},
        "patient rate and patience from the data's size, vs CatBoost's own rate over 1,000 rounds with 100 rounds' "
        "patience (engineered columns)":
            engineered.validation_pr_auc - variant(replace(base, learning_rate=None, iterations=1000,
                                                           early_stopping_rounds=100)),
        "has_time: ordered statistics in date order (engineered columns)":
            variant(replace(base, has_time=True)) - engineered.validation_pr_auc,
        "early stopping on PR-AUC instead of AUC (engineered columns)":
            variant(replace(base, eval_metric="PRAUC")) - engineered.validation_pr_auc,
        "blend with the mapped columns' patient CatBoost, weight chosen on validation (vs the engineered alone)":
            blend.validation_pr_auc - engineered.validation_pr_auc,
    }
    if blend.refit:
        before = blend.train_only_logits(fs, split.holdout)
        techniques["refit on train + validation (HOLDOUT PR-AUC, the validation window being in the refit)"] = (
            model["pr_auc"] - _holdout(fraud, before)["pr_auc"])
    return {
        "labelled_rows_fitted": labelled, "holdout_rows": int(split.holdout.sum()), "rows": counts_rows,
        "holdout_positives": int(fraud.sum()),
        "model": model, "reference_default_catboost": reference, "practitioner_patient_catboost": patient,
        "model_minus_reference": {m: model[m] - reference[m] for m in QUALITY_METRICS},
        "model_minus_practitioner": {m: model[m] - patient[m] for m in QUALITY_METRICS},
        "model_at_or_above_both_on_pr_auc": model["pr_auc"] >= max(reference["pr_auc"], patient["pr_auc"]),
        "blend": [{"member": m.name, "weight": m.weight, "rounds": m.rounds, "validation_pr_auc": m.validation_pr_auc}
                  for m in blend.members], "refitted": blend.refit,
        "feature_groups_kept": result.kept_groups,
        "technique_effects_on_pr_auc": techniques,
        "model_fit_s_per_100k_labelled": result.timings["model_fit_s"] * per_100k,
        "model_fit_with_ablation_s_per_100k_labelled":
            (result.timings["model_fit_s"] + result.timings["ablation_s"]) * per_100k,
        "reference_fit_s_per_100k_labelled": result.timings["reference_fit_s"] * per_100k,
        "practitioner_fit_s_per_100k_labelled": practitioner_s * per_100k,
        "practitioner_rounds": practitioner.classifier.tree_count_,
    }


def rare_label_mapping(mapping_path: Path, out: Path) -> Path:
    """The islas mapping with the serious-fraud flag as the target, as an administration would write it: the
    three-valued critical column read as fraud (2 → 1, 0 and 1 → 0)."""
    import yaml

    spec = yaml.safe_load(mapping_path.read_text())
    source = spec["labels"].pop("critical")
    spec["labels"]["fraud"] = source
    spec["values"]["fraud"] = spec["values"].pop("critical")
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def stage_quality(work: Path, rows: int) -> dict:
    """Model quality on both embedded worlds and on islas' rare label, each through its real intake (islas with its
    mapping file): the model as `aduana train` fits it, the library-default CatBoost reference and a patient
    practitioner's CatBoost, on the same holdout."""
    from features.build import integrate
    from features.intake.mapping import load_mapping
    from features.intake.prepared import prepare_batch
    from features.simulator import simulate, simulate_islas, write_islas
    from training.models import FitConfig
    from training.pipeline import explicit_split, train_and_evaluate

    out = {}
    world = simulate(QUALITY_ROWS["default"], seed=7)
    result = train_and_evaluate(integrate(world.declarations, world.manifests, world.traders), FitConfig())
    out["default_world"] = {"seed": 7, **_quality(result, QUALITY_ROWS["default"])}
    paths = write_islas(simulate_islas(QUALITY_ROWS["islas"], seed=7), work / "islas")
    for case, mapping_path in (("islas_world", paths["mapping"]),
                               ("islas_rare_label", rare_label_mapping(paths["mapping"], work / "islas_rare.yaml"))):
        mapping = load_mapping(mapping_path)
        parts = {name: prepare_batch(paths[name], "declarations", mapping) for name in ("train", "test")}
        frame, split, history = explicit_split(*(p.rows for p in parts.values()))
        result = train_and_evaluate(frame, FitConfig(), split, history)
        out[case] = {"seed": 7, "quarantined": sum(len(p.rejected) for p in parts.values()),
                     **_quality(result, QUALITY_ROWS["islas"])}
    return {**out, "peak_rss_mb": peak_mb()}

