"""The bench's child processes: running one and timing it, a stage's peak memory, `aduana` calls on a home; a
load's summary and a PostgreSQL cluster for the stages that need one."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ENTRY = Path(__file__).with_name("bench.py")  # the bench's command line, which each child process runs


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(command: list[str], env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run a child process: its wall time, its CPU time (user + system, its own children's included) and result."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, result


def cli_cpu(env: dict, *args: str, check: bool = True) -> tuple[float, float, subprocess.CompletedProcess]:
    wall, cpu, result = run_child([sys.executable, "-m", "flows.cli", *args], env)
    if check and result.returncode != 0:
        raise RuntimeError(f"aduana {' '.join(args)} failed: {result.stderr[-2000:]}")
    return wall, cpu, result


def cli(env: dict, *args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess]:
    wall, _, result = cli_cpu(env, *args, check=check)
    return wall, result


def home_env(home: Path, **extra: str) -> dict:
    env = {**os.environ, "ADUANA_HOME": str(home), **extra}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)
    return env



def summary(ms, wall_s: float, load_cpu_s: float | None = None) -> dict:  # noqa: ANN001 - milliseconds
    """A load's latency percentiles and its throughput; with the load generator's CPU seconds, those and their
    share of the wall time (the CPU the generator took from the machine the server runs on)."""
    import numpy as np

    out = {"requests": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
           "requests_per_s": len(ms) / wall_s}
    if load_cpu_s is not None:
        out |= {"load_cpu_s": load_cpu_s, "load_cpu_per_request_ms": 1000 * load_cpu_s / len(ms),
                "load_cpu_share_of_wall": load_cpu_s / wall_s}
    return out


def postgres_cluster(work: Path):  # noqa: ANN201 - a flows.orchestration.postgres.Cluster, or None
    """A PostgreSQL cluster for a stage (Debian's server, started in the work folder), or None where it is not
    installed; the stage removes it."""
    from flows.orchestration import postgres

    if not postgres.available():
        return None
    import secrets

    return postgres.Cluster(work / "postgres", postgres.free_port(), secrets.token_urlsafe(16)).start()


def fitted_world(work: Path, name: str, seed: int, iterations: int = 100):  # noqa: ANN201
    """A 20,000-row simulated world stored in a warehouse of its own (`work/<name>-home`), and a scorer on it with a
    model fitted on its history (100 rounds): the API stages' fixture. Returns (world, scorer)."""
    from features.intake.prepared import prepare_batch
    from features.simulator import simulate, write_world
    from features.warehouse import Warehouse
    from serving.lanes import LanePolicy
    from serving.model_source import FixedSource
    from serving.scorer import Scorer
    from training.models import FitConfig
    from training.pipeline import train_and_evaluate

    world = simulate(20_000, seed=seed)
    write_world(world, work / f"{name}-landing", "parquet")
    warehouse = Warehouse(work / f"{name}-home" / "warehouse.duckdb")
    for kind in ("traders", "manifests", "declarations"):
        warehouse.store(prepare_batch(work / f"{name}-landing" / f"{kind}.parquet"))
    scorer = Scorer(warehouse, LanePolicy(), FixedSource({}, None), reload_seconds=3600)
    model = train_and_evaluate(scorer.context().history, FitConfig(iterations=iterations)).model
    scorer.source = FixedSource({"bench": model}, "bench")
    scorer.refresh_model(force=True)
    return world, scorer
