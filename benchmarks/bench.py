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
    from features.data.simulator import simulate, write_world

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
    from features.data.ingest import prepare_batch
    from features.data.quality import check_batch
    from features.data.warehouse import Warehouse

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


def stage_flow(work: Path, rows: int) -> dict:
    """`aduana ingest` end to end through Prefect (ephemeral server start included) into a fresh home."""
    env = {**os.environ, "ADUANA_HOME": str(work / "flow-home")}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)
    t = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", str(work / "landing" / "declarations.parquet"),
                             "--json"], capture_output=True, text=True, env=env, check=True)
    total = time.perf_counter() - t
    summary = json.loads(result.stdout)
    return {"rows": rows, "total_s": total, "rows_per_s": rows / total, "stored": summary["stored"]}


def stage_model(work: Path, rows: int) -> dict:
    """Feature building on every declaration, then fitting on the controlled ones (per 100k labelled rows)."""
    import pandas as pd

    from features.build import build_features, integrate, price_bands
    from training.models import FitConfig, fit_risk_model, time_split
    from training.pipeline import labelled_rows

    landing = work / "landing"
    frame = integrate(pd.read_parquet(landing / "declarations.parquet"), pd.read_parquet(landing / "manifests.parquet"),
                      pd.read_parquet(landing / "traders.parquet"))
    frame = frame.sort_values(["declaration_date", "declaration_id"], kind="stable").reset_index(drop=True)
    split = time_split(frame["declaration_date"], labelled_rows(frame))
    t = time.perf_counter()
    features = build_features(frame, bands=price_bands(frame[frame["declaration_date"] < split.valid_start]))
    features_s = time.perf_counter() - t
    t = time.perf_counter()
    model = fit_risk_model(features, split, FitConfig())
    fit_s = time.perf_counter() - t
    labelled = int((split.train | split.valid).sum())
    return {"rows": rows, "features_s": features_s, "features_rows_per_s": rows / features_s,
            "feature_count": len(features.columns), "labelled_rows_fitted": labelled, "fit_s": fit_s,
            "fit_s_per_100k_labelled": fit_s / labelled * 100_000,
            "iterations_used": model.params["best_iteration"] + 1, "peak_rss_mb": _peak_mb()}


STAGES = {"generate": stage_generate, "ingest": stage_ingest, "raw_baseline": stage_raw_baseline, "flow": stage_flow,
          "model": stage_model}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--stage", choices=list(STAGES), help=argparse.SUPPRESS)  # child-process mode
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(STAGES[args.stage](args.work, args.rows)))
        return
    os.environ.update({"GX_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "true",
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
               "rows": args.rows}
    with tempfile.TemporaryDirectory(prefix="aduana-bench-") as tmp:
        for stage in STAGES:
            print(f"bench: {stage}…", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--stage", stage, "--work", tmp, "--rows", str(args.rows)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"bench stage {stage} failed:\n{out.stderr[-3000:]}")
            results[stage] = json.loads(out.stdout.strip().splitlines()[-1])
    results["ingest_vs_raw_throughput"] = results["ingest"]["rows_per_s"] / results["raw_baseline"]["rows_per_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
