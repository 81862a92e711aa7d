"""customs-score: a landing file → lanes, reasons and an append-only decision log, with a batch report."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import Flow, flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from features.errors import UserError
from features.intake.mapping import load_mapping
from flows import bars
from flows.orchestration import runtime
from flows.orchestration.dask import with_dask as on_dask
from flows.orchestration.runtime import Runtime, file_away, landing_files, progress, staged
from flows.render import score_markdown
from serving.batch import BatchSummary, ScoredBatch, write_output
from serving.partitions import ScoredParts, explain_part, score_part, score_source
from serving.scorer import OUTPUT_COLUMNS, Scorer


def make_scorer(rt: Runtime, policy_path: str | None = None) -> Scorer:
    scorer = rt.scorer(policy_path)
    scorer.refresh_model(force=True)
    if not scorer.ready:
        raise UserError(scorer.registry_error or "no customs-risk@champion: train and promote a model first ('aduana train')")
    return scorer


Scored = ScoredBatch | ScoredParts


def score_in_process(rt: Runtime, path: Path, scorer: Scorer, mapping: str | None, rows: int, batch_id: str) -> Scored:
    """Scoring in this process: whole up to `rows` declarations, beyond in partitions of `rows` (the history in
    pandas, as whole scoring reads it); and in partitions however small the file when the warehouse holds more than
    `training_memory_rows` declarations, as a retrain and the monitor read such a history: through its snapshot in
    DuckDB, never whole in pandas."""
    stored = rt.warehouse.counts()["declarations"]
    large = stored > rt.settings.training_memory_rows
    if large:
        progress(f"{stored:,} declarations stored, more than training_memory_rows "
                 f"({rt.settings.training_memory_rows:,}): the warehouse is read through its snapshot in DuckDB")
    return score_source(path, scorer, rows, rt.settings.work_dir / batch_id, load_mapping(Path(mapping) if mapping else None),
                        advance=bars.advance, memory_limit=rt.settings.score_memory_limit, snapshot=large)


@task(name="score_declarations", cache_policy=NO_CACHE)
def score_declarations(rt: Runtime, path: str, mapping: str | None, policy: str | None, rows: int,
                       batch_id: str) -> tuple[Scored, Scorer]:
    scorer = make_scorer(rt, policy)
    scored = score_in_process(rt, Path(path), scorer, mapping, rows, batch_id)
    progress(f"scored {scored.read:,} declarations with customs-risk v{scorer.version}")
    return scored, scorer


@task(name="score_partition", cache_policy=NO_CACHE, retries=1)
def score_partition(folder: str, i: int) -> pd.DataFrame:
    """On a Dask worker: partition i's scores, from the run folder's Parquet files (serving/partitions.py)."""
    return score_part(folder, i)


@task(name="explain_partition", cache_policy=NO_CACHE, retries=1)
def explain_partition(folder: str, i: int) -> int:
    """On a Dask worker: partition i's output rows, given the lanes the flow allocated over the whole batch."""
    return explain_part(folder, i)


def score_on_cluster(rt: Runtime, path: Path, scorer: Scorer, mapping: str | None, rows: int, batch_id: str) -> Scored:
    """Scoring in partitions as tasks on the flow's task runner (a Dask cluster), which read the run folder."""
    def each(step: Callable[[str, int], object], partitions: list[int]) -> list:
        folder = str(rt.settings.work_dir / batch_id)
        task_of = score_partition if step is score_part else explain_partition
        return [future.result() for future in [task_of.submit(folder, i) for i in partitions]]

    progress(f"scoring {path.name} in partitions of {rows:,} declarations on the Dask cluster")
    return score_source(path, scorer, rows, rt.settings.work_dir / batch_id, load_mapping(Path(mapping) if mapping else None),
                        each, memory_limit=rt.settings.score_memory_limit, snapshot=True)


@task(name="record_decisions", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def record_decisions(rt: Runtime, scored: Scored, scorer: Scorer, source: str, out: str,
                     batch_id: str | None = None) -> dict:
    """Append the decisions (idempotent per batch id, so a retry adds nothing), then let the output file and the
    report appear. Both are written first under temporary names and renamed only once the decisions are
    committed: an officer's system never finds lanes that were not logged, and a failed run leaves a previous
    file at `out` as it was. A batch scored in partitions is written and logged a partition at a time."""
    settings = rt.settings
    decided_at = datetime.now(UTC).replace(tzinfo=None)
    batch_id = batch_id or new_batch_id()
    policy_hash = scorer.policy.digest()
    report_path = settings.reports_dir / f"{batch_id}.md"
    summaries: list[BatchSummary] = []

    def noted(parts: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for part in parts:
            summaries.append(BatchSummary.of(part))
            yield part

    def positioned(parts: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        start = 0
        for part in parts:
            yield part.reset_index(drop=True).assign(position=range(start, start + len(part)), policy_hash=policy_hash)
            start += len(part)

    with staged(Path(out)) as lanes_file, staged(report_path) as report_file:
        write_output(noted(scored.output_chunks(OUTPUT_COLUMNS)), lanes_file, suffix=Path(out).suffix)  # or fails
        summary = BatchSummary.combine(summaries)
        report = score_markdown(summary, batch_id, scorer.version, policy_hash)
        report_file.write_text(report)
        quarantined = rt.warehouse.decisions.append_batch(positioned(scored.output_chunks()), scored.rejected_chunks(),
                                                          batch_id, source, decided_at)
    create_markdown_artifact(key="customs-score-report", markdown=report, description=f"Scoring batch {batch_id}")
    return {"batch_id": batch_id, "read": scored.read, "scored": summary.scored, "quarantined": quarantined,
            "invalid": summary.counts("selected_by").get("validation", 0), "lanes": summary.counts("lane"),
            "selected_by": summary.counts("selected_by"), "model_version": scorer.version, "policy_hash": policy_hash,
            "out": out, "report": str(report_path)}


@flow(name="customs-score")
def customs_score(path: str, out: str, mapping: str | None = None, policy: str | None = None,
                  partition_rows: int | None = None, cluster: bool = False) -> dict:
    """Score a file of declarations with the champion; every decision is appended to the warehouse.

    Beyond `partition_rows` declarations (default: the setting) the file is read and scored in partitions: in this
    process, or with `cluster`, as tasks on the flow's task runner (`with_dask`)."""
    rt = runtime.current()
    batch_id, rows = new_batch_id(), partition_rows or rt.settings.score_partition_rows
    if not cluster:
        scored, scorer = score_declarations(rt, path, mapping, policy, rows, batch_id)
    else:
        scorer = make_scorer(rt, policy)
        scored = score_on_cluster(rt, Path(path), scorer, mapping, rows, batch_id)
        progress(f"scored {scored.read:,} declarations with customs-risk v{scorer.version} on the Dask cluster")
    try:
        return record_decisions(rt, scored, scorer, str(Path(path).resolve()), out, batch_id)
    finally:
        scored.remove()


def with_dask(address: str, workers: int | None = None) -> Flow:
    """customs-score on a Dask cluster (flows/orchestration/dask.py)."""
    return on_dask(customs_score, address, workers)


def new_batch_id() -> str:
    return f"score-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@flow(name="customs-score-inbox")
def customs_score_inbox(inbox: str | None = None, policy: str | None = None, mapping: str | None = None) -> dict:
    """Score every file waiting in the inbox (default ADUANA_HOME/landing/to-score).

    Each file's scores go to ADUANA_HOME/reports/scores/; the file then moves on to the landing folder, so that the
    daily ingest stores the declarations (for profiles, outcomes and monitoring)."""
    rt = runtime.current()
    settings = rt.settings
    root = Path(inbox) if inbox else settings.landing_dir / "to-score"
    files = landing_files(root)
    if not files:
        progress(f"nothing to score in {root}")
        return {"inbox": str(root), "batches": [], "refused": {}}
    scorer = make_scorer(rt, policy)
    batches, refused = [], {}
    for path in files:
        batch_id = new_batch_id()
        try:
            scored = score_in_process(rt, path, scorer, mapping, settings.score_partition_rows, batch_id)
        except UserError as exc:
            refused[path.name] = str(exc)
            file_away(path, root / "refused", str(exc))
            progress(f"refused {path.name}: {exc}")
            continue
        out = settings.reports_dir / "scores" / f"{path.stem}-scores.csv"
        try:
            batches.append(record_decisions(rt, scored, scorer, str(path.resolve()), str(out), batch_id))
        finally:
            scored.remove()
        file_away(path, settings.landing_dir)
    return {"inbox": str(root), "batches": batches, "refused": refused}
