"""The intake stages: generating the landing files, the ingest pipeline without Prefect, and the raw libraries'
floor on the same file."""
from __future__ import annotations

import time
from pathlib import Path

from processes import peak_mb


def stage_generate(work: Path, rows: int) -> dict:
    from features.simulator import simulate, write_world

    t = time.perf_counter()
    world = simulate(rows, seed=7)
    simulate_s = time.perf_counter() - t
    t = time.perf_counter()
    write_world(world, work / "landing", "parquet")
    write_s = time.perf_counter() - t
    return {"rows": rows, "simulate_s": simulate_s, "write_s": write_s,
            "rows_per_s": rows / (simulate_s + write_s), "peak_rss_mb": peak_mb()}


def stage_ingest(work: Path, rows: int) -> dict:
    """The ingest pipeline without Prefect, as the flow runs it: read → map → pandera a chunk at a time (staged on
    disk) → GX (sample) → DuckDB, for 1M declarations."""
    from expectations.checkpoint import check_batch
    from features.intake.prepared import prepare_batch
    from features.warehouse import Warehouse
    from flows.settings import Settings

    path = work / "landing" / "declarations.parquet"
    timings = {}
    t = time.perf_counter()
    batch = prepare_batch(path, folder=work / "home" / "staging", chunk_rows=Settings().ingest_chunk_rows)
    timings["read_map_validate_rows_s"] = time.perf_counter() - t
    t = time.perf_counter()
    report = check_batch(batch.valid_rows, "declarations", work / "home", sample_rows=200_000)
    timings["great_expectations_s"] = time.perf_counter() - t
    t = time.perf_counter()
    summary = Warehouse(work / "home" / "warehouse.duckdb").store(batch, report.passed, report.failures)
    timings["store_s"] = time.perf_counter() - t
    total = sum(timings.values())
    assert summary.reconciles and summary.stored == rows, summary
    return {"rows": rows, **timings, "total_s": total, "rows_per_s": rows / total,
            "gx_evaluated_rows": report.evaluated_rows, "peak_rss_mb": peak_mb()}


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
    return {"rows": rows, "total_s": total, "rows_per_s": rows / total, "peak_rss_mb": peak_mb()}

