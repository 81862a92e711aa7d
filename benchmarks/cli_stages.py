"""The stages through the command line: `aduana ingest` end to end through Prefect, and a CLI call's fixed cost
against the same work done in a fresh process with no Prefect run."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from processes import ENTRY, cli, cli_cpu, home_env, run_child


def stage_flow(work: Path, rows: int) -> dict:
    """`aduana ingest` end to end through Prefect into a fresh home (its Prefect server's start included)."""
    from flows.orchestration import server

    env = home_env(work / "flow-home")
    try:
        total, result = cli(env, "ingest", str(work / "landing" / "declarations.parquet"), "--json")
    finally:
        server.stop(work / "flow-home" / "prefect")
    summary = json.loads(result.stdout)
    return {"rows": rows, "total_s": total, "rows_per_s": rows / total, "stored": summary["stored"]}


def ingest_work(home: Path, path: str) -> float:
    """The work of `aduana ingest PATH` on this home, timed in this fresh process with no Prefect run: the ingest
    flow's own task bodies (read, map, pandera; GX with its import; store, Data Docs and the reference profile).
    What the CLI spends beyond this is its fixed cost: start-up and imports, Prefect's runs, exit."""
    from flows.orchestration import runtime

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
    _, _, out = run_child([sys.executable, str(ENTRY), "--ingest-work", path, "--work", str(home)], env)
    if out.returncode != 0:
        raise RuntimeError(f"in-process ingest failed: {out.stderr[-2000:]}")
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def stage_cli(work: Path, rows: int) -> dict:
    """A CLI call's fixed cost: `aduana ingest` of 2,000 rows through the home's Prefect server (cold, then warm)
    and through Prefect's ephemeral server, against the same work on the same home done in a fresh process with
    no Prefect run (ingest_work). Warm calls and in-process runs alternate, so that both see the same load."""
    import statistics

    from features.simulator import simulate, write_world
    from flows.orchestration import server

    small = work / "cli-landing"
    write_world(simulate(2_000, seed=11), small, "csv")
    path = str(small / "declarations.csv")
    home = work / "cli-home"
    env = home_env(home)
    out: dict = {"rows": 2_000, "load_average_at_start": os.getloadavg()[0]}
    out["in_process_first_ingest_s"], _ = _in_process(env, work / "cli-inproc", path)
    out["help_s"], _ = cli(env, "--help")
    out["usage_error_s"], _ = cli(env, "ingest", str(small / "missing.csv"), check=False)
    warm, in_process = [], []
    try:
        out["home_server_cold_s"], _ = cli(env, "ingest", path, "--json")
        for _ in range(3):  # the same re-ingest of the same file on the same home, each way in turn
            warm.append(cli_cpu(env, "ingest", path, "--json")[:2])
            in_process.append(_in_process(env, home, path))
        out["promote_s"], _ = cli(env, "promote", "--json")
    finally:
        server.stop(home / "prefect")
    out["home_server_warm_s"] = statistics.median(w for w, _ in warm)
    out["in_process_work_s"] = statistics.median(w for w, _ in in_process)
    # CPU seconds say the same on a busy machine, where wall times stretch (the server's own CPU is not counted)
    out["home_server_warm_cpu_s"] = statistics.median(c for _, c in warm)
    out["in_process_work_cpu_s"] = statistics.median(c for _, c in in_process)
    out["fixed_cost_home_server_cpu_s"] = out["home_server_warm_cpu_s"] - out["in_process_work_cpu_s"]
    ephemeral_home = work / "cli-ephemeral"
    ephemeral_env = home_env(ephemeral_home, ADUANA_PREFECT_SERVER="ephemeral")
    out["ephemeral_first_s"], _ = cli(ephemeral_env, "ingest", path, "--json")
    out["ephemeral_s"] = statistics.median(cli(ephemeral_env, "ingest", path, "--json")[0] for _ in range(2))
    out["fixed_cost_home_server_s"] = out["home_server_warm_s"] - out["in_process_work_s"]
    # not alternated with the in-process runs as the home server's calls are: a rougher figure
    out["fixed_cost_ephemeral_s"] = out["ephemeral_s"] - out["in_process_work_s"]
    out["load_average_at_end"] = os.getloadavg()[0]
    return out

