"""The production stack's stage: the API's throughput with 1, 2 and 4 uvicorn worker processes, every answer durable
in the operational log (PostgreSQL, and the home's journal beside it), each worker a real process as
`aduana serve --workers N` starts them (serving/api/fixed.py: the same app on a fixed model)."""
from __future__ import annotations

import contextlib
import json
import os
import pickle
from pathlib import Path

from http_load import api_process, measure
from processes import fitted_world, peak_mb, postgres_cluster, summary

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
    scorer.score(unlabelled).drop(columns="contributions").assign(batch_id="pinned").to_parquet(
        work / "workers-pinned.parquet")  # real time's cut-offs (the contributions are not read)
    bodies = [{k: (str(v.date()) if k == "declaration_date" else (None if v != v or v is None else v))
               for k, v in r.items() if k not in labels} for r in world.declarations.tail(2000).to_dict("records")]
    (work / "bodies.json").write_text(json.dumps(bodies, default=float))

    cluster = postgres_cluster(work)
    stores = {"journal": None} | ({"postgres": cluster.create_database("workers_ops")} if cluster else {})
    result: dict = {"requests": REQUESTS, "concurrency": CONCURRENCY, "cpus": os.cpu_count()}
    for store, url in stores.items():
        for workers in WORKERS:
            with _api(work, workers, url) as base:
                measure(base, work, 40, 4)  # warm-up: every worker's first calls
                ms, wall, load_cpu = measure(base, work, REQUESTS, CONCURRENCY)
            figures = summary(np.array(ms), wall, load_cpu)
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
    """serving.api.fixed:app served as `aduana serve --workers N` serves, on the stage's model, every worker started."""
    given = {"model": str(work / "workers-model.pickle"), "warehouse": str(work / "workers-home" / "warehouse.duckdb"),
             "ops_url": ops_url, "pinned": str(work / "workers-pinned.parquet")}
    with api_process("serving.api.fixed:app", {"ADUANA_FIXED_API": json.dumps(given)}, workers,
                     work / f"workers-{workers}-{'pg' if ops_url else 'journal'}.log") as served:
        yield served.url
