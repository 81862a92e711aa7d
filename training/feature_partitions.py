"""Training's feature building in partitions, for a Dask cluster (prefect-dask) or any map over processes.

The featured rows (the labelled declarations and the drift reference, integrated: their bills' totals, manifests and
registry records already joined) are written to a run folder a partition at a time, beside the price bands the
flow fitted and the warehouse's snapshot. Each partition's features are built by a process that reads them itself:
its own TrainingReader indexes the snapshot's entity profiles in DuckDB (once per process and run), looks up its
rows' and builds their features, written back beside them. Given the bands and the profiles, a row's features are
its own (features/build.py), so the partitions' features, put back in order, are those built at once.
"""
from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.build import FeatureSet, build_features, feature_meta
from features.prices import PriceBands
from features.warehouse.training_reads import LookedUp, TrainingReader

REFERENCE = "__price_reference_log"  # each part's price_reference_log, kept beside its features

Each = Callable[[list[int]], list[int]]  # builds the partitions given (in this process, or as tasks), gives back rows


@dataclass
class FeaturePartitions:
    """Where and how a training's features are built in partitions: the run folder, the snapshot each process
    reads, DuckDB's memory limit there, the rows of a partition and the map that builds them (`each`)."""

    folder: Path
    snapshot: dict[str, str]
    memory_limit: str
    rows: int
    each: Each

    def build(self, frame: pd.DataFrame, bands: PriceBands) -> FeatureSet:
        """`build_features` of `frame` with these bands and the snapshot's profiles, a partition at a time."""
        frame = frame.reset_index(drop=True)
        parts = self.write(frame, bands)
        built = self.each(parts)
        if sum(built) != len(frame):
            raise RuntimeError(f"the feature partitions built {sum(built):,} rows of {len(frame):,}")
        return self.read(parts, frame, bands)

    def write(self, frame: pd.DataFrame, bands: PriceBands) -> list[int]:
        self.folder.mkdir(parents=True, exist_ok=True)
        starts = list(range(0, len(frame), self.rows)) or [0]
        for i, start in enumerate(starts):
            frame.iloc[start:start + self.rows].to_parquet(self.folder / f"rows-{i:05d}.parquet")
        bands.table.to_parquet(self.folder / "bands.parquet")
        (self.folder / "run.json").write_text(json.dumps({"snapshot": self.snapshot, "memory_limit": self.memory_limit}))
        return list(range(len(starts)))

    def read(self, parts: list[int], frame: pd.DataFrame, bands: PriceBands) -> FeatureSet:
        X = pd.concat([pd.read_parquet(self.folder / f"features-{i:05d}.parquet") for i in parts], ignore_index=True)
        described = [json.loads((self.folder / f"features-{i:05d}.json").read_text()) for i in parts]
        if any(d != described[0] for d in described):
            raise RuntimeError("the feature partitions disagree on the model's columns")
        reference = X.pop(REFERENCE).rename("price_reference_log")
        return FeatureSet(X=X, meta=feature_meta(frame), price_bands=bands, price_reference_log=reference,
                          **described[0])

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def _reader(folder: str) -> TrainingReader:
    """The run's snapshot, its profiles indexed in DuckDB once per process (the next run's frees this one's)."""
    run = json.loads((Path(folder) / "run.json").read_text())
    return TrainingReader(run["snapshot"], run["memory_limit"])


def build_part(folder: str, i: int) -> int:
    """Partition i's features, written to the run folder from its rows, the bands and the snapshot's profiles.
    Gives back its rows."""
    root = Path(folder)
    frame = pd.read_parquet(root / f"rows-{i:05d}.parquet")
    bands = PriceBands(pd.read_parquet(root / "bands.parquet"))
    profiles = _reader(folder).profiles.lookup(frame)
    features = build_features(frame, bands=bands, profiles=LookedUp(profiles))  # type: ignore[arg-type]
    features.X.assign(**{REFERENCE: features.price_reference_log}).to_parquet(root / f"features-{i:05d}.parquet")
    (root / f"features-{i:05d}.json").write_text(json.dumps({
        "categorical": features.categorical, "numeric": features.numeric,
        "reference_columns": features.reference_columns}))
    return len(frame)


def in_process(folder: Path) -> Each:
    """The map that builds the partitions one after the other in this process."""
    return lambda parts: [build_part(str(folder), i) for i in parts]
