"""`make bench`: throughput and peak memory of each stage, next to the raw libraries measured in the same run.

Each stage runs in its own child process so that its peak RSS is its own. Results go to one JSON file.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS = 1_000_000


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_generate(work: Path, rows: int) -> dict:
    from features.simulator import simulate, write_world

    t = time.perf_counter()
    world = simulate(rows, seed=7)
    simulate_s = time.perf_counter() - t
    t = time.perf_counter()
    write_world(world, work / "landing", "parquet")
    write_s = time.perf_counter() - t
    return {"rows": rows, "simulate_s": simulate_s, "write_s": write_s,
            "rows_per_s": rows / (simulate_s + write_s), "peak_rss_mb": _peak_mb()}


def stage_ingest(work: Path, rows: int) -> dict:
    """The ingest pipeline without Prefect: read → map → pandera → GX (sample) → DuckDB, for 1M declarations."""
    from expectations.checkpoint import check_batch
    from features.intake.batch import prepare_batch
    from features.warehouse import Warehouse

    path = work / "landing" / "declarations.parquet"
    timings = {}
    t = time.perf_counter()
    batch = prepare_batch(path)
    timings["read_map_validate_rows_s"] = time.perf_counter() - t
    t = time.perf_counter()
    report = check_batch(batch.valid, "declarations", work / "home", sample_rows=200_000)
    timings["great_expectations_s"] = time.perf_counter() - t
    t = time.perf_counter()
    summary = Warehouse(work / "home" / "warehouse.duckdb").store(batch, report.passed, report.failures)
    timings["store_s"] = time.perf_counter() - t
    total = sum(timings.values())
    assert summary.reconciles and summary.stored == rows, summary
    return {"rows": rows, **timings, "total_s": total, "rows_per_s": rows / total,
            "gx_evaluated_rows": report.evaluated_rows, "peak_rss_mb": _peak_mb()}


def stage_raw_baseline(work: Path, rows: int) -> dict:
    """The floor: pandas reads the same Parquet file and DuckDB inserts it, with no mapping or validation."""
    import duckdb
    import pandas as pd

    t = time.perf_counter()
    frame = pd.read_parquet(work / "landing" / "declarations.parquet")
    con = duckdb.connect(str(work / "raw.duckdb"))
    con.register("frame", frame)
    con.execute("CREATE TABLE declarations AS SELECT * FROM frame")
    con.close()
    total = time.perf_counter() - t
    return {"rows": rows, "total_s": total, "rows_per_s": rows / total, "peak_rss_mb": _peak_mb()}


def _run(command: list[str], env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run a child process: its wall time, its CPU time (user + system, its own children's included) and result."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, result


def _cli_cpu(env: dict, *args: str, check: bool = True) -> tuple[float, float, subprocess.CompletedProcess]:
    wall, cpu, result = _run([sys.executable, "-m", "flows.cli", *args], env)
    if check and result.returncode != 0:
        raise RuntimeError(f"aduana {' '.join(args)} failed: {result.stderr[-2000:]}")
    return wall, cpu, result


def _cli(env: dict, *args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    wall, _, result = _cli_cpu(env, *args, check=check)
    return wall, result


def _home_env(home: Path, **extra: str) -> dict:
    env = {**os.environ, "ADUANA_HOME": str(home), **extra}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)
    return env


def stage_flow(work: Path, rows: int) -> dict:
    """`aduana ingest` end to end through Prefect into a fresh home (its Prefect server's start included)."""
    from flows import server

    env = _home_env(work / "flow-home")
    try:
        total, result = _cli(env, "ingest", str(work / "landing" / "declarations.parquet"), "--json")
    finally:
        server.stop(work / "flow-home" / "prefect")
    summary = json.loads(result.stdout)
    return {"rows": rows, "total_s": total, "rows_per_s": rows / total, "stored": summary["stored"]}


def ingest_work(home: Path, path: str) -> float:
    """The work of `aduana ingest PATH` on this home, timed in this fresh process with no Prefect run: the ingest
    flow's own task bodies (read, map, pandera; GX with its import; store, Data Docs and the reference profile).
    What the CLI spends beyond this is its fixed cost: start-up and imports, Prefect's runs, exit."""
    from flows import runtime

    runtime.settle_gc()  # the CLI's garbage-collector settings, set before the imports as the CLI sets them
    from flows.ingest import store_batch, validate_batch, validate_rows
    from flows.settings import Settings

    rt = runtime.Runtime(Settings(home=home))
    t = time.perf_counter()
    batch = validate_rows.fn(path, None, None)
    store_batch.fn(rt, batch, validate_batch.fn(rt, batch))
    return time.perf_counter() - t


def ingest_work_cpu(home: Path, path: str) -> tuple[float, float]:
    """ingest_work's wall time and this process's CPU time over it."""
    cpu = time.process_time()
    wall = ingest_work(home, path)
    return wall, time.process_time() - cpu


def _in_process(env: dict, home: Path, path: str) -> tuple[float, float]:
    """ingest_work in a fresh process, as the CLI's own process is: its wall and CPU seconds."""
    _, _, out = _run([sys.executable, __file__, "--ingest-work", path, "--work", str(home)], env)
    if out.returncode != 0:
        raise RuntimeError(f"in-process ingest failed: {out.stderr[-2000:]}")
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def stage_cli(work: Path, rows: int) -> dict:
    """A CLI call's fixed cost: `aduana ingest` of 2,000 rows through the home's Prefect server (cold, then warm)
    and through Prefect's ephemeral server, against the same work on the same home done in a fresh process with
    no Prefect run (ingest_work). Warm calls and in-process runs alternate, so that both see the same load."""
    import statistics

    from features.simulator import simulate, write_world
    from flows import server

    small = work / "cli-landing"
    write_world(simulate(2_000, seed=11), small, "csv")
    path = str(small / "declarations.csv")
    home = work / "cli-home"
    env = _home_env(home)
    out: dict = {"rows": 2_000, "load_average_at_start": os.getloadavg()[0]}
    out["in_process_first_ingest_s"], _ = _in_process(env, work / "cli-inproc", path)
    out["help_s"], _ = _cli(env, "--help")
    out["usage_error_s"], _ = _cli(env, "ingest", str(small / "missing.csv"), check=False)
    warm, in_process = [], []
    try:
        out["home_server_cold_s"], _ = _cli(env, "ingest", path, "--json")
        for _ in range(3):  # the same re-ingest of the same file on the same home, each way in turn
            warm.append(_cli_cpu(env, "ingest", path, "--json")[:2])
            in_process.append(_in_process(env, home, path))
        out["promote_s"], _ = _cli(env, "promote", "--json")
    finally:
        server.stop(home / "prefect")
    out["home_server_warm_s"] = statistics.median(w for w, _ in warm)
    out["in_process_work_s"] = statistics.median(w for w, _ in in_process)
    # CPU seconds say the same on a busy machine, where wall times stretch (the server's own CPU is not counted)
    out["home_server_warm_cpu_s"] = statistics.median(c for _, c in warm)
    out["in_process_work_cpu_s"] = statistics.median(c for _, c in in_process)
    out["fixed_cost_home_server_cpu_s"] = out["home_server_warm_cpu_s"] - out["in_process_work_cpu_s"]
    ephemeral_home = work / "cli-ephemeral"
    ephemeral_env = _home_env(ephemeral_home, ADUANA_PREFECT_SERVER="ephemeral")
    out["ephemeral_first_s"], _ = _cli(ephemeral_env, "ingest", path, "--json")
    out["ephemeral_s"] = statistics.median(_cli(ephemeral_env, "ingest", path, "--json")[0] for _ in range(2))
    out["fixed_cost_home_server_s"] = out["home_server_warm_s"] - out["in_process_work_s"]
    # not alternated with the in-process runs as the home server's calls are: a rougher figure
    out["fixed_cost_ephemeral_s"] = out["ephemeral_s"] - out["in_process_work_s"]
    out["load_average_at_end"] = os.getloadavg()[0]
    return out


def stage_model(work: Path, rows: int) -> dict:
    """Feature building on every declaration, then fitting on the controlled ones (per 100k labelled rows)."""
    import pandas as pd

    from features.build import build_features, integrate
    from features.prices import PriceBands
    from training.models import FitConfig, fit_risk_model, time_split
    from training.pipeline import labelled_rows

    landing = work / "landing"
    frame = integrate(pd.read_parquet(landing / "declarations.parquet"), pd.read_parquet(landing / "manifests.parquet"),
                      pd.read_parquet(landing / "traders.parquet"))
    frame = frame.sort_values(["declaration_date", "declaration_id"], kind="stable").reset_index(drop=True)
    split = time_split(frame["declaration_date"], labelled_rows(frame))
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
            "iterations_used": model.params["best_iteration"] + 1, "peak_rss_mb": _peak_mb()}


class _Fixed:
    """Model source for the bench: the model trained in this stage, as version 'bench'."""

    def __init__(self, model):  # noqa: ANN001
        self.model = model

    def champion_version(self) -> str:
        return "bench"

    def load(self, version: str):  # noqa: ANN201
        return self.model


def stage_serving(work: Path, rows: int) -> dict:
    """Batch scoring end to end on every declaration vs CatBoost's own predict_proba, where the time goes, then
    API latency from a load generator in its own process."""
    import threading

    import numpy as np
    import pandas as pd
    import uvicorn

    from features.build import build_features, integrate
    from features.intake.batch import prepare_batch
    from features.intake.mapping import ColumnMapping
    from features.intake.validation import check_rows
    from features.warehouse import Warehouse
    from serving.api import create_app, server_config
    from serving.batch import score_file, write_output
    from serving.lanes import RED, YELLOW, LanePolicy, allocate
    from serving.reasons import explain
    from serving.scorer import Scorer, Thresholds
    from training.models import FitConfig
    from training.pipeline import train_and_evaluate

    landing = work / "landing"
    warehouse = Warehouse(work / "serving-home" / "warehouse.duckdb")
    for kind in ("traders", "manifests", "declarations"):
        warehouse.store(prepare_batch(landing / f"{kind}.parquet"))
    scorer = Scorer(warehouse, LanePolicy(), _Fixed(None), reload_seconds=3600)
    history = scorer.context().history  # the warehouse snapshot: built once, outside the timings
    model = train_and_evaluate(history, FitConfig(iterations=300)).model
    scorer.source = _Fixed(model)
    scorer.refresh_model(force=True)

    t = time.perf_counter()
    scored = score_file(landing / "declarations.parquet", scorer)
    write_output(scored.output, work / "scores.parquet")
    e2e_s = time.perf_counter() - t

    # The same work again, step by step, to show where the time goes.
    steps = {}
    t = time.perf_counter()
    declarations = check_rows(pd.read_parquet(landing / "declarations.parquet"), "declarations", ColumnMapping()).valid
    steps["read_validate_s"], t = time.perf_counter() - t, time.perf_counter()
    frame = integrate(declarations.reset_index(drop=True), context=scorer.context())
    X = build_features(frame, bands=model.price_bands, profiles=scorer.context().profiles).X[model.columns]
    steps["features_s"], t = time.perf_counter() - t, time.perf_counter()
    scores = model.predict(X)
    steps["predict_s"], t = time.perf_counter() - t, time.perf_counter()
    lanes = allocate(pd.concat([frame, scores], axis=1), scorer.policy)
    steps["lanes_s"], t = time.perf_counter() - t, time.perf_counter()
    chosen = lanes["lane"].isin([RED, YELLOW]).to_numpy()
    explain(model, X[chosen], frame[chosen])
    steps["reasons_s"] = time.perf_counter() - t

    t = time.perf_counter()
    pool = model.pool(X)
    pool_s = time.perf_counter() - t
    t = time.perf_counter()
    model.classifier.predict_proba(pool)
    raw_s = time.perf_counter() - t
    result = {"rows": rows, "batch_end_to_end_s": e2e_s, "batch_rows_per_s": rows / e2e_s,
              "catboost_predict_proba_s": raw_s, "catboost_rows_per_s": rows / raw_s,
              "catboost_pool_from_dataframe_s": pool_s,
              "batch_vs_raw_throughput": raw_s / e2e_s,
              "batch_vs_raw_including_pool": (raw_s + pool_s) / e2e_s,
              "batch_steps": steps, "explained_rows": int(chosen.sum())}

    thresholds = Thresholds.from_decisions(scored.output.assign(batch_id="bench"), "risk_score", scorer.policy.seed)
    apps, servers = {}, {}
    for port, decision_log in ((8765, True), (8766, False)):  # the second app leaves its answers out of the log
        apps[port] = app = create_app(scorer, api_key="", decision_log=decision_log)
        app.state.service.pin(thresholds)
        servers[port] = uvicorn.Server(server_config(app, "127.0.0.1", port, log_level="error"))
        threading.Thread(target=servers[port].run, daemon=True).start()
        while not servers[port].started:
            time.sleep(0.05)
    sample = pd.read_parquet(landing / "declarations.parquet").tail(2000)
    bodies = [{k: (str(v.date()) if k == "declaration_date" else (None if pd.isna(v) else v))
               for k, v in r.items() if k not in ("inspected", "fraud", "revenue", "critical", "control_date")}
              for r in sample.to_dict("records")]
    (work / "bodies.json").write_text(json.dumps(bodies, default=float))

    def measure(concurrency: int, requests: int, port: int = 8765) -> tuple[np.ndarray, float]:
        out = subprocess.run([sys.executable, __file__, "--load", f"http://127.0.0.1:{port}", "--work", str(work),
                              "--rows", str(requests), "--concurrency", str(concurrency)],
                             capture_output=True, text=True, check=True)
        measured = json.loads(out.stdout)
        return np.array(measured["latencies"]) * 1000, measured["wall_s"]

    def summary(ms: np.ndarray, wall_s: float) -> dict:
        return {"requests": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                "requests_per_s": len(ms) / wall_s}

    def run(concurrency: int, requests: int, port: int = 8765) -> dict:
        return summary(*measure(concurrency, requests, port))

    run(1, 20)  # warm-up
    run(1, 20, port=8766)
    # What logging every answer costs a call: the same calls against the app with the log on (8765) and off
    # (8766), in rounds ordered on, off, off, on so that a drift in the machine's load favours neither. A log-on
    # round holds its background flushes (once a second); what is left at its end is written before the next
    # round, so that no flush lands in a log-off round's timings.
    rounds: dict[int, list] = {8765: [], 8766: []}
    for port in (8765, 8766, 8766, 8765):
        rounds[port].append(measure(1, 250, port))
        apps[8765].state.decision_log.flush()
    on, off = ({"ms": np.concatenate([m for m, _ in rounds[p]]), "wall": sum(w for _, w in rounds[p])}
               for p in (8765, 8766))
    result["api_concurrency_1"] = summary(on["ms"], on["wall"])
    result["api_concurrency_1_decision_log_off"] = summary(off["ms"], off["wall"])
    result["api_concurrency_1_decision_log_cost_ms"] = {
        q: result["api_concurrency_1"][f"{q}_ms"] - result["api_concurrency_1_decision_log_off"][f"{q}_ms"]
        for q in ("p50", "p99")}
    result["api_concurrency_16"] = run(16, 800)
    apps[8765].state.decision_log.flush()
    for server in servers.values():
        server.should_exit = True
    result["decisions_logged"] = int(warehouse.read(
        "SELECT count(*) AS n FROM decisions WHERE request_id IS NOT NULL")["n"].iloc[0])
    result["peak_rss_mb"] = _peak_mb()
    return result


def load(url: str, work: Path, requests: int, concurrency: int) -> dict:
    """The API load generator, in a process of its own so that it does not share the server's interpreter."""
    import threading

    import httpx

    bodies = [json.dumps(b) for b in json.loads((work / "bodies.json").read_text())]
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for i in range(offset, requests, concurrency):
                start = time.perf_counter()
                response = client.post("/v1/score", content=bodies[i % len(bodies)],
                                       headers={"content-type": "application/json"})
                elapsed = time.perf_counter() - start
                assert response.status_code == 200, response.text
                with lock:
                    latencies.append(elapsed)

    t = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(o,)) for o in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {"latencies": latencies, "wall_s": time.perf_counter() - t}


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
            "peak_rss_mb": _peak_mb()}


QUALITY_METRICS = ("precision_at_5pct", "precision_at_10pct", "pr_auc")
# What a practitioner gets from the same library with patience: a lower rate, many rounds, 300 rounds' patience.
PRACTITIONER = {"learning_rate": 0.05, "iterations": 5000, "early_stopping_rounds": 300, "eval_metric": "AUC"}


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
    from features.intake.batch import prepare_batch
    from features.intake.mapping import load_mapping
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
    return {**out, "peak_rss_mb": _peak_mb()}


QUALITY_ROWS = {"default": 200_000, "islas": 50_000}
WORST_BODIES = ("empty_objects_100k", "fields_50k", "valid_list_100", "chunked_2mb")


def stage_worst_request(work: Path, rows: int) -> dict:
    """The costliest bodies a client can send the API (100,000 empty objects in 400 KB, one object with 50,000
    fields, the largest valid list, a 2 MB chunked body), each timed while another process polls /healthz
    every 10 ms: the request's time to answer and /healthz's latency meanwhile."""
    import threading

    import uvicorn

    from features.intake.batch import prepare_batch
    from features.simulator import simulate, write_world
    from features.warehouse import Warehouse
    from serving.api import create_app, server_config
    from serving.lanes import LanePolicy
    from serving.scorer import Scorer
    from training.models import FitConfig
    from training.pipeline import train_and_evaluate

    world = simulate(20_000, seed=7)
    write_world(world, work / "worst-landing", "parquet")
    warehouse = Warehouse(work / "worst-home" / "warehouse.duckdb")
    for kind in ("traders", "manifests", "declarations"):
        warehouse.store(prepare_batch(work / "worst-landing" / f"{kind}.parquet"))
    scorer = Scorer(warehouse, LanePolicy(), _Fixed(None), reload_seconds=3600)
    scorer.source = _Fixed(train_and_evaluate(scorer.context().history, FitConfig(iterations=100)).model)
    scorer.refresh_model(force=True)
    labels = ("inspected", "fraud", "revenue", "critical", "control_date")
    valid = [{k: (str(v.date()) if k == "declaration_date" else (None if v != v or v is None else v))
              for k, v in r.items() if k not in labels} for r in world.declarations.tail(100).to_dict("records")]
    bodies = {"empty_objects_100k": b"[" + b", ".join([b"{}"] * 100_000) + b"]",
              "fields_50k": json.dumps({f"k{i}": 0 for i in range(50_000)}).encode(),
              "valid_list_100": json.dumps(valid, default=float).encode()}
    for name, body in bodies.items():
        (work / f"worst-{name}.json").write_bytes(body)
    server = uvicorn.Server(server_config(create_app(scorer, api_key=""), "127.0.0.1", 8767, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    rss = lambda: int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20  # noqa: E731
    before = rss()
    probe = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                            f"import bench; bench._probe_worst('http://127.0.0.1:8767', {str(work)!r})"],
                           capture_output=True, text=True, check=True)
    server.should_exit = True
    return {**json.loads(probe.stdout.strip().splitlines()[-1]), "server_rss_mb_before": before,
            "server_rss_mb_after": rss(), "peak_rss_mb": _peak_mb()}


def _probe_worst(url: str, work: str) -> None:
    """stage_worst_request's client, in a process of its own: each body sent while a thread polls /healthz."""
    import threading

    import httpx
    import numpy as np

    def chunks():  # noqa: ANN202
        for _ in range(20):
            yield b" " * 100_000

    out = {}
    httpx.post(f"{url}/v1/score", content=b"{}", timeout=60)  # warm-up: the first call's one-off costs
    for name in WORST_BODIES:
        body = chunks() if name == "chunked_2mb" else (Path(work) / f"worst-{name}.json").read_bytes()
        stop, latencies = threading.Event(), []

        def poll(stop: threading.Event = stop, latencies: list[float] = latencies) -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                while not stop.is_set():
                    t = time.perf_counter()
                    client.get("/healthz")
                    latencies.append(time.perf_counter() - t)
                    time.sleep(0.01)

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.3)
        t = time.perf_counter()
        response = httpx.post(f"{url}/v1/score", content=body, headers={"content-type": "application/json"},
                              timeout=120)
        elapsed = time.perf_counter() - t
        time.sleep(0.3)
        stop.set()
        poller.join()
        ms = np.array(latencies) * 1000
        out[name] = {"status": response.status_code, "answer_s": elapsed, "answer_bytes": len(response.content),
                     "healthz_polls": len(ms), "healthz_p50_ms": float(np.percentile(ms, 50)),
                     "healthz_p99_ms": float(np.percentile(ms, 99)), "healthz_max_ms": float(ms.max())}
    print(json.dumps(out))


STAGES = {"generate": stage_generate, "ingest": stage_ingest, "raw_baseline": stage_raw_baseline, "flow": stage_flow,
          "cli": stage_cli, "model": stage_model, "serving": stage_serving, "backtest": stage_backtest, "quality": stage_quality,
          "worst_request": stage_worst_request}
SELF_CONTAINED = {"backtest", "quality", "worst_request", "cli"}  # stages that simulate their own data: no landing files needed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--stage", choices=list(STAGES), help=argparse.SUPPRESS)  # child-process mode
    parser.add_argument("--only", nargs="*", choices=list(STAGES),
                        help="run only these stages (generate is implied, except for self-contained ones: backtest, quality)")
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)  # load-generator mode: the API's URL
    parser.add_argument("--ingest-work", help=argparse.SUPPRESS)  # the cli stage's in-process ingest of this file
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(args.load, args.work, args.rows, args.concurrency)))
        return
    if args.ingest_work:
        print(json.dumps(ingest_work_cpu(args.work, args.ingest_work)))
        return
    if args.stage:
        print(json.dumps(STAGES[args.stage](args.work, args.rows)))
        return
    os.environ.update({"GX_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "true",
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
               "rows": args.rows}
    if args.only and args.out.exists():  # re-measure some stages, keep the others' figures
        results = {**json.loads(args.out.read_text()), **results}
    with tempfile.TemporaryDirectory(prefix="aduana-bench-") as tmp:
        chosen = [s for s in STAGES if s != "generate" and (not args.only or s in args.only)]
        landing = not args.only or "generate" in args.only or any(s not in SELF_CONTAINED for s in chosen)
        stages = ["generate"] * landing + chosen
        for stage in stages:
            print(f"bench: {stage}…", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--stage", stage, "--work", tmp, "--rows", str(args.rows)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"bench stage {stage} failed:\n{out.stderr[-3000:]}")
            results[stage] = json.loads(out.stdout.strip().splitlines()[-1])
    if "ingest" in results and "raw_baseline" in results:
        results["ingest_vs_raw_throughput"] = results["ingest"]["rows_per_s"] / results["raw_baseline"]["rows_per_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
