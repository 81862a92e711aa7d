"""customs-score: a landing file → lanes, reasons and an append-only decision log, with a batch report."""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import Flow, flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from features.errors import UserError
from features.intake.checked import Checked, read_checked
from features.intake.mapping import load_mapping
from flows import bars
from flows.orchestration import runtime
from flows.orchestration.runtime import Runtime, file_away, landing_files, progress, staged
from flows.render import score_markdown
from serving.batch import ScoredBatch, score_checked, score_file, write_output
from serving.partitions import explain_part, score_part, score_partitioned
from serving.scorer import Scorer


def make_scorer(rt: Runtime, policy_path: str | None = None) -> Scorer:
    scorer = rt.scorer(policy_path)
    scorer.refresh_model(force=True)
    if not scorer.ready:
        raise UserError(scorer.registry_error or "no customs-risk@champion: train and promote a model first ('aduana train')")
    return scorer


def in_process(rt: Runtime, scorer: Scorer, rows: int, batch_id: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Scoring in this process: whole up to `rows` declarations, beyond in partitions of `rows`."""
    def score(valid: pd.DataFrame) -> pd.DataFrame:
        if len(valid) <= rows:
            return scorer.score(valid, advance=bars.advance)
        return score_partitioned(valid, scorer, rows, rt.settings.work_dir / batch_id, advance=bars.advance,
                                 memory_limit=rt.settings.score_memory_limit)
    return score


@task(name="score_declarations", cache_policy=NO_CACHE)
def score_declarations(rt: Runtime, path: str, mapping: str | None, policy: str | None,
                       rows: int | None = None, batch_id: str | None = None) -> tuple[ScoredBatch, Scorer]:
    scorer = make_scorer(rt, policy)
    scored = score_file(Path(path), scorer, load_mapping(Path(mapping) if mapping else None), bars.advance,
                        in_process(rt, scorer, rows or rt.settings.score_partition_rows, batch_id or new_batch_id()))
    progress(f"scored {scored.read:,} declarations with customs-risk v{scorer.version}")
    return scored, scorer


@task(name="read_declarations", cache_policy=NO_CACHE)
def read_declarations(path: str, mapping: str | None) -> Checked:
    return read_checked(Path(path), "declarations", load_mapping(Path(mapping) if mapping else None), every_row=True)


@task(name="score_partition", cache_policy=NO_CACHE, retries=1)
def score_partition(folder: str, i: int) -> pd.DataFrame:
    """On a Dask worker: partition i's scores, from the run folder's Parquet files (serving/partitions.py)."""
    return score_part(folder, i)


@task(name="explain_partition", cache_policy=NO_CACHE, retries=1)
def explain_partition(folder: str, i: int) -> pd.DataFrame:
    """On a Dask worker: partition i's output, given the lanes the flow allocated over the whole batch."""
    return explain_part(folder, i)


def on_cluster(rt: Runtime, scorer: Scorer, rows: int, batch_id: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Scoring in partitions as tasks on the flow's task runner (a Dask cluster), which read the run folder."""
    def each(step: Callable[[str, int], pd.DataFrame], partitions: list[int]) -> list[pd.DataFrame]:
        folder = str(rt.settings.work_dir / batch_id)
        task_of = score_partition if step is score_part else explain_partition
        return [future.result() for future in [task_of.submit(folder, i) for i in partitions]]

    def score(valid: pd.DataFrame) -> pd.DataFrame:
        progress(f"scoring {len(valid):,} declarations in partitions of {rows:,} on the Dask cluster")
        return score_partitioned(valid, scorer, rows, rt.settings.work_dir / batch_id, each,
                                 memory_limit=rt.settings.score_memory_limit)
    return score


@task(name="record_decisions", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def record_decisions(rt: Runtime, scored: ScoredBatch, scorer: Scorer, source: str, out: str,
                     batch_id: str | None = None) -> dict:
    """Append the decisions (idempotent per batch id, so a retry adds nothing), then let the output file and the
    report appear. Both are written first under temporary names and renamed only once the decisions are
    committed: an officer's system never finds lanes that were not logged, and a failed run leaves a previous
    file at `out` as it was."""
    settings = rt.settings
    decided_at = datetime.now(UTC).replace(tzinfo=None)
    batch_id = batch_id or new_batch_id()
    report = score_markdown(scored.output, batch_id, scorer.version, scorer.policy.digest())
    report_path = settings.reports_dir / f"{batch_id}.md"
    with staged(Path(out)) as lanes_file, staged(report_path) as report_file:
        write_output(scored.output, lanes_file, suffix=Path(out).suffix)  # a file that cannot be written fails here
        report_file.write_text(report)
        decisions = scored.output.assign(position=range(len(scored.output)), policy_hash=scorer.policy.digest())
        quarantined = rt.warehouse.decisions.append_batch(decisions, scored.rejected, batch_id, source, decided_at)
    create_markdown_artifact(key="customs-score-report", markdown=report, description=f"Scoring batch {batch_id}")
    lanes = scored.output["lane"].value_counts().to_dict()
    return {"batch_id": batch_id, "read": scored.read, "scored": int(scored.output["risk_score"].notna().sum()),
            "quarantined": quarantined, "invalid": len(scored.rejected), "lanes": lanes,
            "selected_by": scored.output["selected_by"].value_counts().to_dict(), "model_version": scorer.version,
            "policy_hash": scorer.policy.digest(), "out": out, "report": str(report_path)}


@flow(name="customs-score")
def customs_score(path: str, out: str, mapping: str | None = None, policy: str | None = None,
                  partition_rows: int | None = None, cluster: bool = False) -> dict:
    """Score a file of declarations with the champion; every decision is appended to the warehouse.

    Beyond `partition_rows` declarations (default: the setting) the batch is scored in partitions: in this process,
    or with `cluster`, as tasks on the flow's task runner (`with_dask`)."""
    rt = runtime.current()
    batch_id, rows = new_batch_id(), partition_rows or rt.settings.score_partition_rows
    if not cluster:
        scored, scorer = score_declarations(rt, path, mapping, policy, rows, batch_id)
    else:
        scorer = make_scorer(rt, policy)
        scored = score_checked(read_declarations(path, mapping), scorer, score=on_cluster(rt, scorer, rows, batch_id))
        progress(f"scored {scored.read:,} declarations with customs-risk v{scorer.version} on the Dask cluster")
    return record_decisions(rt, scored, scorer, str(Path(path).resolve()), out, batch_id)


def with_dask(address: str, workers: int | None = None) -> Flow:
    """customs-score on prefect-dask's DaskTaskRunner: the cluster at `address` (tcp://host:8786), or "local" for a
    LocalCluster of `workers` processes (default: one per core) that lives as long as the flow run."""
    from prefect_dask import DaskTaskRunner

    if address == "local":
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": workers or os.cpu_count() or 1, "threads_per_worker": 1,
                                                "processes": True, "dashboard_address": None})
    else:
        runner = DaskTaskRunner(address=address)
    return customs_score.with_options(task_runner=runner)


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
            scored = score_file(path, scorer, load_mapping(Path(mapping) if mapping else None), bars.advance,
                                in_process(rt, scorer, settings.score_partition_rows, batch_id))
        except UserError as exc:
            refused[path.name] = str(exc)
            file_away(path, root / "refused", str(exc))
            progress(f"refused {path.name}: {exc}")
            continue
        out = settings.reports_dir / "scores" / f"{path.stem}-scores.csv"
        batches.append(record_decisions(rt, scored, scorer, str(path.resolve()), str(out), batch_id))
        file_away(path, settings.landing_dir)
    return {"inbox": str(root), "batches": batches, "refused": refused}
