"""The `scale` stage: generate, ingest, train and score at growing sizes, each step's wall time and peak memory, the
scoring and training on the single-process path and on a 2-worker Dask LocalCluster (prefect-dask), then the reads
of a period (`aduana monitor`'s window, `aduana audit`'s month and ratings).

Each step is an `aduana` command in a child process, on a home whose Prefect server is started first; a step's peak
memory is the largest resident size of the command's process tree (its Dask scheduler and workers included), sampled
every 0.2 s. A step that would take the machine's memory is
stopped at MEMORY_GUARD and recorded as such; the size's later steps are then skipped. The sizes come from
BENCH_SCALE_SIZES (default 1M, 3M and 10M rows): it is a benchmark, the suite uses small sizes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from processes import home_env

SIZES = (1_000_000, 3_000_000, 10_000_000)
MEMORY_GUARD = 0.85  # a step stops at this share of the machine's memory
TRAIN = {"ADUANA_TRAIN_ITERATIONS": "300", "ADUANA_TRAIN_ABLATION": "false"}  # one fit, the same at every size
# The 2-worker LocalCluster's steps: its workers share the machine, so each gets half of the default DuckDB memory.
LOCAL_CLUSTER = {"ADUANA_SCORE_MEMORY_LIMIT": "512MB"}


def measured(command: list[str], env: dict) -> dict:
    """Run `command`: wall seconds, peak resident MB of its process tree, and how it ended."""
    guard = psutil.virtual_memory().total * MEMORY_GUARD
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, stopped = [0.0], [False]

    def sample() -> None:
        while process.poll() is None:
            try:
                tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
                rss = sum(p.memory_info().rss for p in tree if p.is_running())
            except psutil.Error:
                rss = 0
            peak[0] = max(peak[0], rss)
            if rss > guard:
                stopped[0] = True
                for p in reversed(tree):
                    p.kill()
            time.sleep(0.2)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, err = process.communicate()
    watcher.join()
    result = {"wall_s": round(time.perf_counter() - started, 2), "peak_mb": round(peak[0] / 2**20)}
    if stopped[0]:
        result["failed"] = f"stopped at {MEMORY_GUARD:.0%} of the machine's memory"
    elif process.returncode != 0:
        result["failed"] = err.strip().splitlines()[-1][:300] if err.strip() else f"exit {process.returncode}"
    return result


def sizes() -> list[int]:
    given = os.environ.get("BENCH_SCALE_SIZES")
    return [int(s) for s in given.split(",")] if given else list(SIZES)


def one_size(work: Path, rows: int) -> dict:
    home, landing = work / f"scale-{rows}", work / f"scale-{rows}-landing"
    env = home_env(home, **TRAIN)
    aduana = [sys.executable, "-m", "flows.cli"]
    # The home's Prefect server, started before the steps (its memory is not theirs); the Dask workers report to it.
    subprocess.run(aduana + ["server", "start"], env=env, capture_output=True, check=True)
    steps = {
        "generate": aduana + ["generate", "--rows", str(rows), "--out", str(landing)],
        "ingest": aduana + ["ingest", *(str(landing / f"{k}.parquet") for k in ("traders", "manifests", "declarations"))],
        "train": aduana + ["train"],
        "score": aduana + ["score", str(landing / "declarations.parquet"), "--out", str(work / "scores.parquet")],
        "score_dask_local_2": aduana + ["score", str(landing / "declarations.parquet"), "--out",
                                        str(work / "scores-dask.parquet"), "--dask", "local", "--dask-workers", "2"],
        # the features built by a 2-worker LocalCluster from the warehouse's snapshot, the fits in the flow
        "train_dask_local_2": aduana + ["train", "--dask", "local", "--dask-workers", "2"],
        # what a period reads: the monitor's window (its features and outcomes), the audit's month and ratings
        "monitor": aduana + ["monitor"],
        "audit": aduana + ["audit"],
    }
    out: dict = {}
    for name, command in steps.items():
        out[name] = measured(command, {**env, **LOCAL_CLUSTER} if "--dask" in command else env)
        out[name]["rows_per_s"] = round(rows / out[name]["wall_s"])
        print(f"bench: scale {rows:,} {name}: {out[name]}", file=sys.stderr, flush=True)
        if "failed" in out[name]:
            break
    subprocess.run(aduana + ["server", "stop"], env=env, capture_output=True)
    if (work / "scores.parquet").exists() and (work / "scores-dask.parquet").exists():
        out["dask_output_identical"] = (work / "scores.parquet").read_bytes() == (work / "scores-dask.parquet").read_bytes()
    subprocess.run(["rm", "-rf", str(home), str(landing), str(work / "scores.parquet"), str(work / "scores-dask.parquet")])
    return out


def stage_scale(work: Path, rows: int) -> dict:  # noqa: ARG001 - the sizes are the stage's own
    """generate, ingest, train, score, monitor and audit at each size (BENCH_SCALE_SIZES), with time and peak memory."""
    return {"train_config": TRAIN, "local_cluster_config": LOCAL_CLUSTER, "memory_guard": MEMORY_GUARD,
            "sizes": {str(n): one_size(work, n) for n in sizes()}}
