"""Batch scoring in partitions: a batch of any size scored a fixed number of rows at a time, in this process or on a
Dask cluster (flows/score.py), with the same bytes as scoring it whole.

What whole scoring reads across a batch's rows is computed once first (features/context.py `BatchState`: the bills
of lading's new items, each entity key's first filing); then each partition gets its scores; lanes are allocated
over the whole batch at once (capacity is a share of the batch), from the scores and the few columns allocation
reads; last, each partition's red and yellow rows get their features again and their reasons.

A Dask worker reads what it needs itself (`PartitionRun`): its partition, the batch's state and the warehouse's
snapshot as Parquet files, the champion as a pickled file, all in one run folder; nothing large goes through the
scheduler but the scores coming back.
"""
from __future__ import annotations

import functools
import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from features.context import BatchState, ScoringContext
from features.progress import Advance, quiet
from serving.lanes import LanePolicy, allocate
from serving.model_source import FixedSource
from serving.scorer import DETAIL_COLUMNS, OUTPUT_COLUMNS, Scorer
from serving.selection import RED, YELLOW

EXPLAIN_LANES = (RED, YELLOW)


def bounds(rows: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) of each partition of `size` rows (the last one shorter)."""
    return [(start, min(start + size, rows)) for start in range(0, rows, max(size, 1))]


def lanes_of(scored: list[pd.DataFrame], policy: LanePolicy) -> list[pd.DataFrame]:
    """Each partition's scores with the lanes allocated over the whole batch (lane, selected_by, rule added)."""
    whole = pd.concat(scored, ignore_index=True)
    whole = pd.concat([whole, allocate(whole, policy)], axis=1)
    ends = np.cumsum([0, *[len(part) for part in scored]]).tolist()
    return [whole.iloc[start:stop].reset_index(drop=True) for start, stop in zip(ends[:-1], ends[1:], strict=True)]


def output_columns(output: pd.DataFrame) -> pd.DataFrame:
    return output[OUTPUT_COLUMNS + DETAIL_COLUMNS]


def score_in_partitions(declarations: pd.DataFrame, scorer: Scorer, rows: int,
                        advance: Advance = quiet) -> pd.DataFrame:
    """`scorer.score(declarations)`, `rows` declarations at a time, in this process."""
    declarations = declarations.reset_index(drop=True)
    batch = BatchState.of(declarations, scorer.context().stored(declarations["declaration_id"]))
    parts = [declarations.iloc[start:stop] for start, stop in bounds(len(declarations), rows)]
    what = f"scoring {len(declarations):,} declarations in {len(parts)} partitions"
    advance(what, 0, 2 * len(parts))
    scored = []
    for part in parts:
        scored.append(scorer.score_partition(part, batch))
        advance(what, len(scored), 2 * len(parts))
    outputs = []
    for part, with_lanes in zip(parts, lanes_of(scored, scorer.policy), strict=True):
        outputs.append(scorer.explain_partition(part, with_lanes, batch, EXPLAIN_LANES))
        advance(what, len(parts) + len(outputs), 2 * len(parts))
    return output_columns(pd.concat(outputs, ignore_index=True))


@dataclass(frozen=True)
class PartitionRun:
    """A run folder that Dask workers read: `part-NNNNN.parquet` (the batch's declarations), the batch's state,
    the warehouse's snapshot (`snapshot/*.parquet`) and the champion (`model.pkl`, `run.json`)."""

    folder: Path

    def part(self, i: int) -> Path:
        return self.folder / f"part-{i:05d}.parquet"

    @property
    def partitions(self) -> int:
        return json.loads((self.folder / "run.json").read_text())["partitions"]

    @classmethod
    def write(cls, folder: Path, declarations: pd.DataFrame, scorer: Scorer, snapshot: dict[str, str],
              rows: int) -> PartitionRun:
        """Lay out the run: `snapshot` maps each canonical table to a Parquet file the warehouse wrote."""
        run = cls(folder)
        folder.mkdir(parents=True, exist_ok=True)
        declarations = declarations.reset_index(drop=True)
        limits = bounds(len(declarations), rows)
        for i, (start, stop) in enumerate(limits):
            declarations.iloc[start:stop].to_parquet(run.part(i), index=False)
        stored = _stored(declarations["declaration_id"], snapshot["declarations"])
        state = BatchState.of(declarations, stored)
        state.bill_totals.to_parquet(folder / "bill_totals.parquet")
        for name, first in state.first_filed.items():
            pd.DataFrame({"key": first.index.to_numpy(dtype=object), "first": first.to_numpy()}).to_parquet(
                folder / f"first-{name}.parquet", index=False)
        (folder / "model.pkl").write_bytes(pickle.dumps(scorer.model))
        (folder / "run.json").write_text(json.dumps({
            "partitions": len(limits), "version": scorer.version, "policy": scorer.policy.model_dump(mode="json"),
            "snapshot": snapshot, "entities": list(state.first_filed)}))
        return run

    def lanes(self, i: int) -> Path:
        return self.folder / f"lanes-{i:05d}.parquet"

    def write_lanes(self, with_lanes: list[pd.DataFrame]) -> None:
        """Each partition's scores with the batch's lanes (`lanes_of`), for the workers' second step."""
        for i, part in enumerate(with_lanes):
            part.to_parquet(self.lanes(i), index=False)

    def state(self) -> BatchState:
        entities = json.loads((self.folder / "run.json").read_text())["entities"]
        first = {}
        for name in entities:
            table = pd.read_parquet(self.folder / f"first-{name}.parquet")
            first[name] = pd.Series(table["first"].to_numpy(), index=pd.Index(table["key"].to_numpy(dtype=object)))
        return BatchState(bill_totals=pd.read_parquet(self.folder / "bill_totals.parquet"), first_filed=first)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _stored(ids: pd.Series, declarations_parquet: str) -> np.ndarray:
    """Which ids the snapshot's declarations hold (read by DuckDB from the Parquet file, not into pandas)."""
    con = duckdb.connect()
    try:
        con.register("batch_ids", pd.DataFrame({"declaration_id": ids.astype("str").to_numpy()}))
        found = con.execute("SELECT DISTINCT declaration_id FROM read_parquet(?) WHERE declaration_id IN "
                            "(SELECT declaration_id FROM batch_ids)", [declarations_parquet]).df()
    finally:
        con.close()
    return ids.astype("str").isin(found["declaration_id"]).to_numpy()


@functools.lru_cache(maxsize=2)
def worker_scorer(folder: str) -> tuple[Scorer, BatchState]:
    """The run's scorer and batch state, built once per worker process and run: the champion from its file, the
    snapshot from the run's Parquet files (read through DuckDB, as the warehouse reads its tables)."""
    run = PartitionRun(Path(folder))
    meta = json.loads((run.folder / "run.json").read_text())
    model = pickle.loads((run.folder / "model.pkl").read_bytes())
    tables = {name: _read(path) for name, path in meta["snapshot"].items()}
    context = ScoringContext.from_tables(tables["declarations"], tables["manifests"], tables["traders"])
    scorer = Scorer(None, LanePolicy.model_validate(meta["policy"]),  # type: ignore[arg-type] - no warehouse
                    FixedSource({meta["version"]: model}, meta["version"]), pinned=context)
    scorer.refresh_model(force=True)
    return scorer, run.state()


def _read(path: str) -> pd.DataFrame:
    con = duckdb.connect()
    try:
        return con.execute("SELECT * FROM read_parquet(?)", [path]).df()
    finally:
        con.close()


def score_part(folder: str, i: int) -> pd.DataFrame:
    """A worker's first step: partition i's scores (Scorer.score_partition)."""
    scorer, state = worker_scorer(folder)
    return scorer.score_partition(pd.read_parquet(PartitionRun(Path(folder)).part(i)), state)


def explain_part(folder: str, i: int) -> pd.DataFrame:
    """A worker's second step: partition i's output, from its scores with the batch's lanes (`write_lanes`)."""
    scorer, state = worker_scorer(folder)
    run = PartitionRun(Path(folder))
    with_lanes = pd.read_parquet(run.lanes(i))
    return output_columns(scorer.explain_partition(pd.read_parquet(run.part(i)), with_lanes, state, EXPLAIN_LANES))
