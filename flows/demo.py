"""customs-demo: the main job on the embedded default (generate → ingest → retrain; scoring and audit come next)."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from features.data.simulator import simulate, write_world
from features.settings import get_settings
from flows.ingest import customs_ingest
from flows.retrain import customs_retrain
from flows.runtime import progress


@task(name="generate_world")
def generate_world(rows: int, seed: int, out_dir: str, fmt: str = "parquet") -> list[str]:
    world = simulate(rows, seed=seed)
    paths = write_world(world, Path(out_dir), fmt)
    progress(f"simulated {rows:,} declarations (seed {seed}) into {out_dir}")
    return [str(p) for p in paths.values()]


@flow(name="customs-demo")
def customs_demo(rows: int = 200_000, seed: int = 7) -> dict:
    """Simulate a customs administration, ingest it, retrain and let the gate promote the model."""
    settings = get_settings()
    out_dir = settings.landing_dir / "demo"
    paths = generate_world(rows, seed, str(out_dir))
    summaries = customs_ingest(paths)
    trained = customs_retrain(dataset="demo")
    return {"landing": str(out_dir), "ingest": summaries, "train": trained,
            "data_docs": str(settings.data_docs_index), "warehouse": str(settings.warehouse_path)}
