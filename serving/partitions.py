"""Batch scoring in partitions: a batch of any size scored a fixed number of rows at a time, in this process or as
tasks on a Dask cluster (flows/score.py), each partition reading only what it needs.

What whole scoring reads across a batch's rows is computed once first (features/context.py `BatchState`: the bills
of lading's new items, each entity key's first filing); then each partition gets its scores; lanes are allocated
over the whole batch at once (capacity is a share of the batch), from the scores and the few columns allocation
reads; last, each partition's red and yellow rows get their features again and their reasons.

Everything a partition needs is in a run folder (`PartitionRun`): the partition, the batch's state and the
warehouse's snapshot as Parquet files, the champion as a pickled file. Whoever scores a partition (this process, a
Dask worker) reads them itself, and reads the warehouse's snapshot through DuckDB for that partition's declarations
only (features/warehouse/partition_context.py): its memory is a partition's and DuckDB's limit, not the history's.
Nothing large goes through the Dask scheduler but the scores coming back. The same folder and the same functions
serve both: the two paths give the same bytes.
"""
from __future__ import annotations

import functools
import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.context import BatchState
from features.progress import Advance, quiet
from features.warehouse.partition_context import DEFAULT_MEMORY_LIMIT, SnapshotReader, stored_in
from serving.lanes import LanePolicy, allocate
from serving.model_source import FixedSource
from serving.scorer import DETAIL_COLUMNS, OUTPUT_COLUMNS, Scorer
from serving.selection import RED, YELLOW

EXPLAIN_LANES = (RED, YELLOW)
# How the partitions' steps run: `each(step, partitions)` calls step(folder, i) for each i and gives the results
# in order (this process: one after the other; flows/score.py: Prefect tasks on a Dask cluster).
Each = Callable[[Callable[[str, int], pd.DataFrame], list[int]], list[pd.DataFrame]]


def bounds(rows: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) of each partition of `size` rows (the last one shorter)."""
    return [(start, min(start + size, rows)) for start in range(0, rows, max(size, 1))]


def lanes_of(scored: list[pd.DataFrame], policy: LanePolicy) -> list[pd.DataFrame]:
    """Each partition's scores with the lanes allocated over the whole batch (lane, selected_by, rule added)."""
    whole = pd.concat(scored, ignore_index=True)
    whole = pd.concat([whole, allocate(whole, policy)], axis=1)
    ends = np.cumsum([0, *[len(part) for part in scored]]).tolist()
    return [whole.iloc[start:stop].reset_index(drop=True) for start, stop in zip(ends[:-1], ends[1:], strict=True)]


def in_order(step: Callable[[str, int], pd.DataFrame], partitions: list[int], folder: Path,
             advance: Advance = quiet) -> list[pd.DataFrame]:
    """`Each` in this process, telling `advance` as each partition is done."""
    out = []
    for i in partitions:
        out.append(step(str(folder), i))
        advance(f"partitions: {step.__name__}", len(out), len(partitions))
    return out


def score_partitioned(declarations: pd.DataFrame, scorer: Scorer, rows: int, folder: Path,
                      each: Each | None = None, advance: Advance = quiet,
                      memory_limit: str = DEFAULT_MEMORY_LIMIT) -> pd.DataFrame:
    """`scorer.score(declarations)`, `rows` declarations at a time, through a run folder at `folder` (removed
    after): the scorer's warehouse snapshot is written there, and `each` runs the partitions' two steps (default:
    in this process)."""
    run_steps = each or (lambda step, partitions: in_order(step, partitions, folder, advance))
    try:
        snapshot = scorer.warehouse.export_tables(folder / "snapshot")
        run = PartitionRun.write(folder, declarations, scorer, snapshot, rows, memory_limit)
        partitions = list(range(run.partitions))
        run.write_lanes(lanes_of(run_steps(score_part, partitions), scorer.policy))
        return pd.concat(run_steps(explain_part, partitions), ignore_index=True)
    finally:
        PartitionRun(folder).remove()


@dataclass(frozen=True)
class PartitionRun:
    """A run folder: `part-NNNNN.parquet` (the batch's declarations), the batch's state, the warehouse's snapshot
    (`snapshot/*.parquet`), the champion (`model.pkl`, `run.json`) and, between the two steps, the partitions'
    scores with the batch's lanes (`lanes-NNNNN.parquet`)."""

    folder: Path

    def part(self, i: int) -> Path:
        return self.folder / f"part-{i:05d}.parquet"

    def lanes(self, i: int) -> Path:
        return self.folder / f"lanes-{i:05d}.parquet"

    @property
    def meta(self) -> dict:
        return json.loads((self.folder / "run.json").read_text())

    @property
    def partitions(self) -> int:
        return self.meta["partitions"]

    @classmethod
    def write(cls, folder: Path, declarations: pd.DataFrame, scorer: Scorer, snapshot: dict[str, str], rows: int,
              memory_limit: str = DEFAULT_MEMORY_LIMIT) -> PartitionRun:
        """Lay out the run: `snapshot` maps each canonical table to a Parquet file the warehouse wrote."""
        run = cls(folder)
        folder.mkdir(parents=True, exist_ok=True)
        declarations = declarations.reset_index(drop=True)
        limits = bounds(len(declarations), rows)
        for i, (start, stop) in enumerate(limits):
            declarations.iloc[start:stop].to_parquet(run.part(i), index=False)
        state = BatchState.of(declarations, stored_in(snapshot["declarations"], declarations["declaration_id"]))
        state.bill_totals.to_parquet(folder / "bill_totals.parquet")
        for name, first in state.first_filed.items():
            pd.DataFrame({"key": first.index.to_numpy(dtype=object), "first": first.to_numpy()}).to_parquet(
                folder / f"first-{name}.parquet", index=False)
        (folder / "model.pkl").write_bytes(pickle.dumps(scorer.model))
        (folder / "run.json").write_text(json.dumps({
            "partitions": len(limits), "version": scorer.version, "policy": scorer.policy.model_dump(mode="json"),
            "snapshot": snapshot, "entities": list(state.first_filed), "memory_limit": memory_limit}))
        return run

    def write_lanes(self, with_lanes: list[pd.DataFrame]) -> None:
        """Each partition's scores with the batch's lanes (`lanes_of`), for the second step."""
        for i, part in enumerate(with_lanes):
            part.to_parquet(self.lanes(i), index=False)

    def state(self) -> BatchState:
        first = {}
        for name in self.meta["entities"]:
            table = pd.read_parquet(self.folder / f"first-{name}.parquet")
            first[name] = pd.Series(table["first"].to_numpy(), index=pd.Index(table["key"].to_numpy(dtype=object)))
        return BatchState(bill_totals=pd.read_parquet(self.folder / "bill_totals.parquet"), first_filed=first)

    def remove(self) -> None:
        worker.cache_clear()
        shutil.rmtree(self.folder, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def worker(folder: str) -> tuple[Scorer, BatchState, SnapshotReader]:
    """The run's scorer, batch state and snapshot reader, built once per process and run: the champion from its
    file, the snapshot's profiles indexed in DuckDB (one run at a time: the next run's frees this one's)."""
    run = PartitionRun(Path(folder))
    meta = run.meta
    model = pickle.loads((run.folder / "model.pkl").read_bytes())
    scorer = Scorer(None, LanePolicy.model_validate(meta["policy"]),  # type: ignore[arg-type] - no warehouse: the
                    FixedSource({meta["version"]: model}, meta["version"]))  # contexts come from the reader
    scorer.refresh_model(force=True)
    return scorer, run.state(), SnapshotReader(meta["snapshot"], meta["memory_limit"])


def score_part(folder: str, i: int) -> pd.DataFrame:
    """The first step: partition i's scores (Scorer.score_partition)."""
    scorer, state, reader = worker(folder)
    part = pd.read_parquet(PartitionRun(Path(folder)).part(i))
    return scorer.score_partition(part, state, reader.context(part))


def explain_part(folder: str, i: int) -> pd.DataFrame:
    """The second step: partition i's output, from its scores with the batch's lanes (`write_lanes`)."""
    scorer, state, reader = worker(folder)
    run = PartitionRun(Path(folder))
    part, with_lanes = pd.read_parquet(run.part(i)), pd.read_parquet(run.lanes(i))
    output = scorer.explain_partition(part, with_lanes, state, EXPLAIN_LANES, reader.context(part))
    return output[OUTPUT_COLUMNS + DETAIL_COLUMNS]
