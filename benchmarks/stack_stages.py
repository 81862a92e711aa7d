"""The production stack's stage: the API's throughput with 1, 2 and 4 uvicorn worker processes, every answer durable
in the operational log (PostgreSQL, and the home's journal beside it), each worker a real process as
`aduana serve --workers N` starts them (serving/api/fixed.py: the same app on a fixed model)."""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

from processes import ENTRY, fitted_world, peak_mb, postgres_cluster, summary

WORKERS = (1, 2, 4)
REQUESTS, CONCURRENCY = 800, 16


def stage_workers(work: Path, rows: int) -> dict:
    """A 20,000-row world and a model fitted on it; then, per log and worker count, a c=16 load of 800 calls."""
    import numpy as np
    import psycopg

    world, scorer = fitted_world(work, "workers", seed=11)
    (work / "workers-model.pickle").write_bytes(pickle.dumps(scorer.model))
    labels = ("inspected", "fraud", "revenue", "critical", "control_date")
    unlabelled = world.declarations.drop(columns=list(labels), errors="ignore")
    scorer.score(unlabelled).assign(batch_id="pinned").to_parquet(work / "workers-pinned.parquet")  # real time's cut-offs
    bodies = [{k: (str(v.date()) if k == "declaration_date" else (None if v != v or v is None else v))
               for k, v in r.items() if k not in labels} for r in world.declarations.tail(2000).to_dict("records")]
    (work / "bodies.json").write_text(json.dumps(bodies, default=float))

    cluster = postgres_cluster(work)
    stores = {"journal": None} | ({"postgres": cluster.create_database("workers_ops")} if cluster else {})
    result: dict = {"requests": REQUESTS, "concurrency": CONCURRENCY, "cpus": os.cpu_count()}
    for store, url in stores.items():
        for workers in WORKERS:
            with _api(work, workers, url) as base:
                _load(base, work, 40, 4)  # warm-up: every worker's first calls
                ms, wall = _load(base, work, REQUESTS, CONCURRENCY)
            figures = summary(np.array(ms), wall)
            if url:
                with psycopg.connect(url) as con:
                    figures["log_rows"] = con.execute("SELECT count(*) FROM decisions").fetchone()[0]
                    con.execute("TRUNCATE decisions")
                figures["log_rows_equal_answers"] = figures["log_rows"] == REQUESTS + 40
            result[f"{store}_{workers}_workers"] = figures
        base = result[f"{store}_1_workers"]["requests_per_s"]
        result[f"{store}_speedup"] = {n: result[f"{store}_{n}_workers"]["requests_per_s"] / base for n in WORKERS}
    if cluster is not None:
        cluster.remove()
    result["peak_rss_mb"] = peak_mb()
    return result


@contextlib.contextmanager
def _api(work: Path, workers: int, ops_url: str | None):  # noqa: ANN202
    """`uvicorn serving.api.fixed:app --workers N` in its own process group, every worker started (each logs
    uvicorn's "Application startup complete"); stopped however the block ends."""
    from flows.orchestration.postgres import free_port

    port = free_port()
    given = {"model": str(work / "workers-model.pickle"), "warehouse": str(work / "workers-home" / "warehouse.duckdb"),
             "ops_url": ops_url, "pinned": str(work / "workers-pinned.parquet")}
    log = work / f"workers-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "serving.api.fixed:app", "--factory", "--port",
                                 str(port), "--workers", str(workers), "--log-level", "info", "--no-access-log"],
                                env={**os.environ, "ADUANA_FIXED_API": json.dumps(given)}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=Path(__file__).parent.parent)
    try:
        deadline = time.monotonic() + 300
        while log.read_text().count("Application startup complete") < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API with {workers} workers did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _load(url: str, work: Path, requests: int, concurrency: int) -> tuple[list[float], float]:
    """The load generator in its own process (the bench's `--load` mode): latencies in ms and the wall time."""
    out = subprocess.run([sys.executable, str(ENTRY), "--load", url, "--work", str(work),
                          "--rows", str(requests), "--concurrency", str(concurrency)],
                         capture_output=True, text=True, check=True)
    measured = json.loads(out.stdout)
    return [t * 1000 for t in measured["latencies"]], measured["wall_s"]
