"""Batch scoring in partitions: a batch of any size scored a fixed number of rows at a time, in this process or as
tasks on a Dask cluster (flows/score.py), with the memory of a partition (and in this process of the history the
scorer holds, unless read through the snapshot), not of the batch.

The input file is read a chunk at a time straight into a run folder (serving/partition_run.py): each chunk's valid
declarations are a partition, its invalid rows' output is ready at once. What whole scoring reads across the batch's
rows (the bills of lading's new items, each entity key's first filing) is settled over the chunks by DuckDB. Then
each partition gets its scores (`score_part`), and gives back only what lane allocation reads of a row; lanes are
allocated over the whole batch at once (capacity is a share of the batch); last, each partition's red and yellow
rows get their features again and their reasons, and its output rows are written beside it (`explain_part`). The
flow then streams the partitions' outputs into the output file and the decision log (`ScoredParts`).

Whoever scores a partition (this process, a Dask worker) reads the run folder itself. What the warehouse holds for
the partition's declarations comes, in this process, from the scorer's history in pandas, as whole scoring reads it
(memory holds the history and a partition, not the batch); on a Dask worker, or for a warehouse beyond what pandas
should hold (`snapshot`), from the warehouse's snapshot through DuckDB, for that partition's declarations only
(features/warehouse/partition_context.py). Nothing large goes through the Dask scheduler. The same folder and the
same functions serve every path: they give the same bytes, and the same output as scoring the batch whole.
"""
from __future__ import annotations

import functools
import itertools
import pickle
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.context import ScoringContext
from features.intake.checked import check_raw, file_sha256
from features.intake.mapping import ColumnMapping, resolve_kind
from features.intake.reader import every_row_of, read_chunks
from features.progress import Advance, quiet
from features.warehouse.partition_context import (
    DEFAULT_MEMORY_LIMIT,
    HeldContext,
    SnapshotReader,
    stored_in,
)
from serving.batch import BatchSummary, ScoredBatch, invalid_output, score_checked
from serving.lanes import LanePolicy, allocated, lane_inputs
from serving.model_source import FixedSource
from serving.partition_run import Chunk, PartitionRun, read_output, write
from serving.scorer import DETAIL_COLUMNS, OUTPUT_COLUMNS, Scorer
from serving.selection import RED, YELLOW
from serving.targeting import Bandit

EXPLAIN_LANES = (RED, YELLOW)


@dataclass(frozen=True)
class _Held:
    """What the process that lays out a run holds for the partitions it scores itself: its scorer, whose champion
    has its SHAP tables and lean revenue copy already made (~2.5 s at load; a Dask worker reads the folder's copy),
    and, where the partitions read the scorer's history in pandas, that context (taken once: the same for every
    partition, whatever the warehouse does meanwhile)."""

    scorer: Scorer
    context: ScoringContext | None


_HELD: dict[str, _Held] = {}  # by run folder
# The expected revenue of a partition scored in the process that laid out its run, where the lanes do not rank by it,
# by (run folder, partition): predicted on another thread, on one core, while this one builds the next partition's
# features (as whole scoring predicts it meanwhile); its explaining step takes it (a Dask worker predicts it at once).
_REVENUE: dict[tuple[str, int], Future] = {}
# How the partitions' steps run: `each(step, partitions)` calls step(folder, i) for each i and gives the results
# in order (this process: one after the other; flows/score.py: Prefect tasks on a Dask cluster).
Each = Callable[[Callable[[str, int], object], list[int]], list]


def in_order(step: Callable[[str, int], object], partitions: list[int], folder: Path,
             advance: Advance = quiet) -> list:
    """`Each` in this process, telling `advance` as each partition is done."""
    out = []
    for i in partitions:
        out.append(step(str(folder), i))
        advance(f"partitions: {step.__name__}", len(out), len(partitions))
    return out


@dataclass
class ScoredParts:
    """A batch scored in partitions: its output rows and quarantine records are in the run folder, a partition at a
    time, until `remove`; the flow streams them into the output file and the decision log."""

    run: PartitionRun
    read: int

    def output_chunks(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        return self.run.outputs(columns)

    def rejected_chunks(self) -> Iterator[pd.DataFrame]:
        return self.run.rejected()

    def summary(self) -> BatchSummary:
        return BatchSummary.combine(BatchSummary.of(part) for part in self.output_chunks(OUTPUT_COLUMNS))

    def remove(self) -> None:
        _forget(str(self.run.folder))
        self.run.remove()


def score_chunks(chunks: Iterable[Chunk], scorer: Scorer, folder: Path, each: Each | None = None,
                 advance: Advance = quiet, memory_limit: str = DEFAULT_MEMORY_LIMIT,
                 snapshot: bool = False) -> ScoredParts:
    """Score a batch given a chunk at a time (each chunk a partition) through a run folder at `folder`; `each` runs
    the partitions' two steps (default: in this process). Partitions scored in this process read the scorer's
    history in pandas, as whole scoring does, unless `snapshot`; those of `each`, or with `snapshot`, read the
    scorer's warehouse snapshot, written to the folder, through DuckDB. The folder stays until the result's `remove`
    (removed at once when the scoring fails)."""
    run = PartitionRun(folder)
    steps = each or (lambda step, partitions: in_order(step, partitions, folder, advance))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if each is not None or snapshot:
            tables = scorer.warehouse.export_tables(folder / "snapshot")
            stored = functools.partial(stored_in, tables["declarations"])
            held = None
        else:  # the snapshot's profiles and known ids as the scorer holds them, taken once
            tables, held = {}, scorer.context()
            stored = lambda ids: held.known_ids.get_indexer(ids) >= 0  # noqa: E731
        if each is None:  # the champion stays in this process: no file of it for other processes (~1 s)
            _HELD[str(folder)] = _Held(scorer, held)
        sizes, read, entities = [], 0, {}
        names = scorer.profiles_read()
        for i, chunk in enumerate(chunks):
            entities.update(dict.fromkeys(run.add(i, chunk, stored, names)))
            sizes.append(len(chunk.valid))
            read += chunk.read
        entities = list(entities)
        run.settle(len(sizes), entities, memory_limit)
        run.write_meta(scorer, tables, sizes, entities, memory_limit, model_file=each is not None)
        scored = [i for i, size in enumerate(sizes) if size]
        write_lanes(run, scored, steps(score_part, scored), sizes, scorer.policy, scorer.bandit())
        steps(explain_part, list(range(len(sizes))))
        return ScoredParts(run, read)
    except BaseException:
        _forget(str(folder))
        run.remove()
        raise


def _forget(folder: str) -> None:
    """What this process holds of a run: its worker, champion and pending revenue predictions (a thread still
    predicting one reads nothing of the folder, and ends with it)."""
    worker.cache_clear()
    _HELD.pop(folder, None)
    for key in [key for key in _REVENUE if key[0] == folder]:
        _REVENUE.pop(key)


def write_lanes(run: PartitionRun, scored: list[int], inputs: list[pd.DataFrame], sizes: list[int],
                policy: LanePolicy, bandit: Bandit | None = None) -> None:
    """Lanes allocated over the whole batch from the `scored` partitions' `lane_inputs` (the list is emptied as
    they are joined, so that they are held once), written back per partition."""
    if not inputs:
        return
    whole = pd.concat(inputs, ignore_index=True)
    inputs.clear()
    lanes = allocated(whole, policy, bandit)
    del whole
    ends = np.cumsum([0, *[sizes[i] for i in scored]]).tolist()
    for i, start, stop in zip(scored, ends[:-1], ends[1:], strict=True):
        write(pd.DataFrame({name: column[start:stop] for name, column in lanes.items()}), run.file("lanes", i),
              index=False)


def score_partitioned(declarations: pd.DataFrame, scorer: Scorer, rows: int, folder: Path,
                      each: Each | None = None, advance: Advance = quiet,
                      memory_limit: str = DEFAULT_MEMORY_LIMIT, snapshot: bool = False) -> pd.DataFrame:
    """`scorer.score(declarations)` (valid canonical declarations), `rows` at a time, as one frame (`score_chunks`)."""
    declarations = declarations.reset_index(drop=True)
    empty = pd.DataFrame(columns=OUTPUT_COLUMNS + DETAIL_COLUMNS)
    chunks = (Chunk(declarations.iloc[start:start + rows], empty, pd.DataFrame(), min(rows, len(declarations) - start))
              for start in range(0, len(declarations), max(rows, 1)))
    scored = score_chunks(chunks, scorer, folder, each, advance, memory_limit, snapshot)
    try:
        return pd.concat(list(scored.output_chunks()), ignore_index=True)
    finally:
        scored.remove()


@functools.lru_cache(maxsize=1)
def worker(folder: str) -> tuple[Scorer, HeldContext | SnapshotReader]:
    """The run's scorer and the reader of what its partitions read of the warehouse and the batch, built once per
    process and run (one run at a time: the next run's frees this one's): the scorer and context the process that
    laid out the run holds, or the champion from its file (or as that process holds it) and the snapshot's profiles
    indexed in DuckDB."""
    run = PartitionRun(Path(folder))
    meta = run.meta
    held = _HELD.get(folder)
    if held is not None and held.context is not None:
        return held.scorer, HeldContext(held.context)
    model = held.scorer.model if held is not None else pickle.loads((Path(folder) / "model.pkl").read_bytes())
    scorer = Scorer(None, LanePolicy.model_validate(meta["policy"]),  # type: ignore[arg-type] - no warehouse: the
                    FixedSource({meta["version"]: model}, meta["version"]))  # contexts come from the reader
    scorer.refresh_model(force=True)
    if (anomaly := Path(folder) / "anomaly.pkl").exists():
        scorer.anomaly = pickle.loads(anomaly.read_bytes())
    if (leads := Path(folder) / "leads.pkl").exists():
        scorer.leads = pickle.loads(leads.read_bytes())
    batch = [str(run.part(i)) for i, size in enumerate(meta["sizes"]) if size]  # what the run will ask about
    return scorer, SnapshotReader(meta["snapshot"], meta["memory_limit"], names=tuple(meta["entities"]), batch=batch)


def score_part(folder: str, i: int) -> pd.DataFrame:
    """The first step: partition i's scores, written to the run folder; gives back its rows' `lane_inputs`."""
    scorer, reader = worker(folder)
    run = PartitionRun(Path(folder))
    part = pd.read_parquet(run.part(i))
    later = folder in _HELD and scorer.policy.rank_by != "expected_revenue"
    scored, revenue = scorer.score_partition(part, reader.batch_state(run.batch_tables(), part), reader.context(part),
                                             revenue_later=later)
    if later:
        _REVENUE[(folder, i)] = revenue
    else:
        scored.insert(scored.columns.get_loc("risk_score") + 1, "expected_revenue", revenue.result())
    write(scored, run.file("scores", i), index=False)
    return lane_inputs(scored, scorer.policy).reset_index(drop=True)


def explain_part(folder: str, i: int) -> int:
    """The second step: partition i's output rows (its valid rows with the batch's lanes and their reasons, its
    invalid rows' validation output), in file order, written to the run folder. Gives back how many."""
    run = PartitionRun(Path(folder))
    part, invalid = pd.read_parquet(run.part(i)), read_output(run.file("invalid", i))
    frames = [invalid]
    if len(part):
        scorer, reader = worker(folder)
        scores = pd.read_parquet(run.file("scores", i))
        if (revenue := _REVENUE.pop((folder, i), None)) is not None:
            scores.insert(scores.columns.get_loc("risk_score") + 1, "expected_revenue", revenue.result())
        scored = pd.concat([scores, pd.read_parquet(run.file("lanes", i))], axis=1)
        explained = part[scored["lane"].isin(EXPLAIN_LANES).to_numpy()]  # the warehouse is read for these only
        batch, context = ((reader.batch_state(run.batch_tables(), explained), reader.context(explained))
                          if len(explained) else (None, None))
        output = scorer.explain_partition(part, scored, batch, EXPLAIN_LANES, context)
        frames = [output[OUTPUT_COLUMNS + DETAIL_COLUMNS].set_axis(part.index), invalid]
    output = pd.concat([f for f in frames if len(f)]).sort_index() if any(len(f) for f in frames) else invalid
    write(output, run.file("out", i))
    return len(output)


def score_source(path: Path, scorer: Scorer, rows: int, folder: Path, mapping: ColumnMapping | None = None,
                 each: Each | None = None, advance: Advance = quiet, memory_limit: str = DEFAULT_MEMORY_LIMIT,
                 snapshot: bool = False) -> ScoredBatch | ScoredParts:
    """A file of declarations (in the mapping's layout) scored: whole when it holds at most `rows` rows (and
    `snapshot` is not asked), else read `rows` at a time straight into partitions (`score_chunks`; with `snapshot`,
    the warehouse read through its snapshot in DuckDB, never whole in pandas). Either way a row has the same verdict
    and the batch the same output; a malformed row refuses the file (scoring answers every row)."""
    mapping = mapping or ColumnMapping()
    kind, source = resolve_kind(path, "declarations", mapping), str(path.resolve())
    if each is None and not snapshot:  # the history in pandas: read while the file is
        scorer.read_ahead()
    raws = read_chunks(path, rows, mapping.delimiter, mapping.encoding)
    first = next(raws)
    second = next(raws, None)
    if second is None and not snapshot:
        checked = check_raw(every_row_of(path, first), kind, mapping, source, file_sha256(path))
        first = None  # the file's rows as read go before the scoring: it reads the checked ones
        return score_checked(checked, scorer, advance)

    def chunks() -> Iterator[Chunk]:
        for raw in itertools.chain([first], [] if second is None else [second], raws):
            checked = check_raw(every_row_of(path, raw), kind, mapping, source)
            invalid = invalid_output(checked, scorer) if len(checked.rejected) else \
                pd.DataFrame(columns=OUTPUT_COLUMNS + DETAIL_COLUMNS)
            yield Chunk(checked.valid, invalid, checked.rejected, checked.read)
    return score_chunks(chunks(), scorer, folder, each, advance, memory_limit, snapshot)
