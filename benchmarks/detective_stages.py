"""The detective stage: does targeted exploration find an emerging scheme, on every seed, at the model's precision?

Backtests (serving/backtest) of a world whose new scheme starts mid-history: the default world (200k
declarations) and Islas with its scheme (200k), each on seeds 5, 7 and 8, with the model-only, hybrid-random,
targeted, random and rules policies side by side. Per run, each policy's new-scheme frauds found, weeks to first
detection, precision and revenue found; for the targeted policy, its estimate of the fraud rate and how often its
weekly 90 % intervals covered the true weekly rate; the chance that the capacity drawn at random would have found
the scheme by each of its first weeks, and by each policy's first detection (how much a first week owes to luck).
`goals` checks the issue's bars on every run.
"""
from __future__ import annotations

import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from processes import peak_mb

SEEDS = (5, 7, 8)
ROWS = 200_000
PRECISION_KEPT = 0.95  # the targeted policy keeps at least this share of model-only precision
COVERAGE = 0.85  # its weekly 90 % intervals cover the true weekly rate at least this often
COMPARED = ("model", "hybrid", "random")  # the targeted policy must find at least the best of these, no later
PARALLEL = min(2, os.cpu_count() or 1)  # replays at a time: each is mostly one core's work


def _world(name: str, seed: int):  # noqa: ANN202 - BacktestData
    from features.simulator import simulate
    from features.simulator.islas import simulate_islas
    from serving.backtest import from_islas, from_world

    if name == "islas":
        return from_islas(simulate_islas(ROWS, seed=seed, scheme=True), source=f"islas (rows={ROWS}, seed={seed}, scheme)")
    return from_world(simulate(ROWS, seed=seed), source=f"simulator (rows={ROWS}, seed={seed})")


def _run(name: str, seed: int) -> dict:
    from serving.backtest import BacktestConfig, run_backtest
    from training.models import FitConfig

    started = time.perf_counter()
    data = _world(name, seed)
    config = BacktestConfig(seed=seed, fit=FitConfig(iterations=100, seed=seed))
    summary = run_backtest(data, config).summary.to_dict()
    keep = ("precision", "recall", "revenue_found", "new_scheme_frauds_found", "weeks_to_first_detection",
            "detection_chance_at_random", "seconds_per_week")
    policies = {p: {k: v.get(k) for k in keep} for p, v in summary["policies"].items()}
    targeted = summary["policies"]["targeted"]
    policies["targeted"].update({"compliance_estimate": targeted.get("compliance_estimate"),
                                 "strata": targeted.get("strata"), "bandit": targeted.get("bandit")})
    return {"world": name, "seed": seed, "rows": summary["universe_rows"], "weeks": summary["weeks"],
            "new_scheme_frauds": (summary.get("frauds_by_typology") or {}).get("new_scheme"),
            "scheme_at_random": summary.get("scheme_at_random"),
            "policies": policies, "goals": goals(policies), "seconds": round(time.perf_counter() - started, 1)}


def goals(policies: dict) -> dict:
    """The issue's bars on one run: finds at least the best of model, hybrid and random; detects no later than
    the earliest of them; keeps 95 % of model-only precision; covers the true weekly rate in 85 % of weeks."""
    targeted = policies["targeted"]
    found = {p: policies[p]["new_scheme_frauds_found"] or 0 for p in COMPARED if p in policies}
    weeks = [policies[p]["weeks_to_first_detection"] for p in COMPARED
             if p in policies and policies[p]["weeks_to_first_detection"] is not None]
    mine = targeted["weeks_to_first_detection"]
    coverage = (targeted.get("compliance_estimate") or {}).get("weekly_coverage")
    return {"finds_at_least_the_best": (targeted["new_scheme_frauds_found"] or 0) >= max(found.values()),
            "detects_no_later": mine is not None and (not weeks or mine <= min(weeks)),
            "precision_kept": round((targeted["precision"] or 0) / policies["model"]["precision"], 4),
            "keeps_precision": (targeted["precision"] or 0) >= PRECISION_KEPT * policies["model"]["precision"],
            "weekly_coverage": coverage, "covers": coverage is not None and coverage >= COVERAGE}


def stage_detective(work: Path, rows: int) -> dict:  # noqa: ARG001 - its worlds are its own size
    """The six replays, `PARALLEL` at a time, each in a process of its own (each run's `seconds` is its wall time
    beside the others')."""
    worlds = [(name, seed) for name in ("default", "islas") for seed in SEEDS]
    with ProcessPoolExecutor(PARALLEL, mp_context=get_context("spawn")) as pool:
        runs = list(pool.map(_run, *zip(*worlds, strict=True)))
    met = {bar: all(r["goals"][bar] for r in runs)
           for bar in ("finds_at_least_the_best", "detects_no_later", "keeps_precision", "covers")}
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest replay's
    return {"rows_per_world": ROWS, "seeds": list(SEEDS), "parallel": PARALLEL, "runs": runs, "goals_met": met,
            "peak_rss_mb": max(peak_mb(), children)}
