"""customs-ingest: landing files → column mapping → pandera rows → GX batch → warehouse or quarantine."""
from __future__ import annotations

from functools import partial
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from expectations.checkpoint import QualityReport, check_batch, name_docs_after_batch
from expectations.reference import caught_up, record_batch
from features.contract import KINDS
from features.errors import UserError
from features.intake.mapping import load_mapping
from features.intake.prepared import PreparedBatch, prepare_batch, reject_batch
from features.warehouse import IngestSummary, ingest_turn
from flows import bars
from flows.orchestration import runtime
from flows.orchestration.runtime import Runtime, file_away, landing_files, progress
from flows.render import ingest_markdown

INGEST_TURN_WAIT = 600.0  # seconds an ingest waits for another one into the same home (a large file takes minutes)
STAGING = "staging"  # the folder under the home where a file's checked rows wait to be stored (one folder per run)


def _retry_unless_bad_input(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's hook signature
    """Retry transient I/O failures, never input that is wrong (it will be just as wrong next time)."""
    try:
        state.result()
    except UserError:
        return False
    except Exception:
        return True
    return False


@task(name="validate_rows", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_unless_bad_input)
def validate_rows(path: str, kind: str | None, mapping_path: str | None, staging: str | None = None,
                  chunk_rows: int | None = None) -> PreparedBatch:
    """Read and check the file, `chunk_rows` rows at a time, into a staging folder under `staging` (None: the whole
    file at once, in memory). The caller discards the batch once stored."""
    batch = prepare_batch(Path(path), kind, load_mapping(Path(mapping_path) if mapping_path else None),
                          Path(staging) if staging else None, chunk_rows)
    progress(f"{Path(path).name}: read {batch.read:,} {batch.kind} rows, {len(batch.valid_rows):,} valid, "
             f"{batch.rejected_count:,} rejected, {batch.duplicates:,} repeated in the file")
    if batch.unknown_columns:
        progress(f"{Path(path).name}: ignored unknown columns {batch.unknown_columns} (map them to keep them)")
    return batch


def _caught_up_reference(rt: Runtime, kind: str) -> dict | None:
    """The kind's reference profile, with every accepted batch the warehouse holds (said when one was missing)."""
    reference, folded = caught_up(rt.settings.reference_dir, kind, partial(rt.warehouse.accepted_profiles, kind))
    if folded:
        progress(f"the {kind} reference profile lacked {len(folded)} stored batch(es) that passed or were "
                 f"acknowledged (an earlier run stopped before updating it): folded in {', '.join(folded)}")
    return reference


@task(name="validate_batch", cache_policy=NO_CACHE)
def validate_batch(rt: Runtime, batch: PreparedBatch) -> QualityReport:
    settings = rt.settings
    # the warehouse assigns the batch id when it stores the batch: until then the file's hash stands in for it
    report = check_batch(batch.valid_rows, batch.kind, settings.gx_root, settings.gx_sample_rows,
                         reference=_caught_up_reference(rt, batch.kind),
                         batch_id=f"sha256-{batch.source_sha256[:12]}", source=batch.source)
    status = "passed" if report.passed else ("REJECTED the batch" if report.rejected else "warned")
    baseline = "" if report.compared or not report.evaluated_rows else \
        f" (no {batch.kind} reference yet: this batch helps set it)"
    progress(f"expectations on {report.evaluated_rows:,} rows {status}{baseline}"
             + "".join(f"\n  - {f}" for f in report.failures))
    if report.docs_note:
        progress(report.docs_note)
    return report


@task(name="store_batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_unless_bad_input)
def store_batch(rt: Runtime, batch: PreparedBatch, report: QualityReport) -> IngestSummary:
    if report.rejected:
        batch = reject_batch(batch, "; ".join(f for f in report.failures if f.startswith("critical")))
    settings = rt.settings
    summary = rt.warehouse.store(batch, report.passed, report.failures, report.profile)
    if docs_problem := name_docs_after_batch(report, settings.gx_root, summary.batch_id, batch.source):
        progress(docs_problem)
    if not summary.reconciles:  # a bug, not bad input: the transaction has committed, so say so loudly
        raise RuntimeError(f"counts do not reconcile for {batch.source}: {summary.to_dict()}")
    if summary.stored and report.profile is not None:  # only after the commit: the reference never runs ahead
        try:
            record_batch(settings.reference_dir, summary.batch_id, report.profile, accepted=report.passed)
        except OSError as exc:  # the batch is stored; retrying the task would store it again, so only say so
            progress(f"{summary.batch_id}: could not update the {batch.kind} reference profile ({exc}); the warehouse "
                     f"keeps it with the batch, and the next {batch.kind} ingest folds it in once accepted")
        if not report.passed:
            progress(f"{summary.batch_id} warned: its profile joins the {batch.kind} reference once acknowledged "
                     f"('aduana warnings --ack {summary.batch_id} --reason TEXT')")
    progress(f"stored {summary.stored:,} (updated {summary.updated:,}), quarantined {summary.quarantined:,}, "
             f"duplicates {summary.duplicates:,} — read {summary.read:,} = stored + quarantined + duplicates")
    return summary


def _ingest_order(paths: list[str], kind: str | None) -> list[str]:
    """Registry and manifests before declarations, outcomes last, so joins and relabels find their rows."""
    def rank(p: str) -> int:
        name = Path(p).name.lower()
        return next((i for i, k in enumerate(KINDS) if name.startswith(k.rstrip("s"))), len(KINDS))
    return paths if kind else sorted(paths, key=rank)


def ingest_file(rt: Runtime, path: str, kind: str | None, mapping: str | None) -> IngestSummary:
    """One file through the three tasks, its progress told as each ends (a bar on the CLI's terminal).

    The file is read and checked row by row on its own, ADUANA_INGEST_CHUNK_ROWS rows at a time, into a staging
    folder under the home (STAGING) that goes once the file is stored or refused; from the dataset-level check to the
    reference's update, the run takes its turn on the home (features/warehouse/connection.ingest_turn): concurrent
    ingests wait, and one that waits longer than INGEST_TURN_WAIT gives up with IngestBusy (the CLI's exit 75: retry
    later)."""
    what = f"ingesting {Path(path).name}"

    def waiting(holder: str | None) -> None:
        by = f" (process {holder})" if holder else ""
        progress(f"{Path(path).name}: waiting for another ingest into this home to finish{by}, "
                 f"at most {INGEST_TURN_WAIT:.0f} s")

    bars.advance(what, 0, 3)
    batch = None
    try:
        batch = validate_rows(path, kind, mapping, str(rt.settings.root / STAGING), rt.settings.ingest_chunk_rows)
        bars.advance(what, 1, 3)
        with ingest_turn(rt.settings.locks_dir / "ingest.lock", INGEST_TURN_WAIT, on_wait=waiting):
            report = validate_batch(rt, batch)
            bars.advance(what, 2, 3)
            return store_batch(rt, batch, report)
    finally:
        if batch is not None:
            batch.discard()
        bars.advance(what, 3, 3)


@flow(name="customs-ingest")
def customs_ingest(paths: list[str], kind: str | None = None, mapping: str | None = None) -> list[dict]:
    """Ingest landing files into the warehouse; each file is one atomic, reconciled batch."""
    rt = runtime.current()
    summaries = [ingest_file(rt, path, kind, mapping) for path in _ingest_order(paths, kind)]
    create_markdown_artifact(key="customs-ingest-summary", markdown=ingest_markdown([s.to_dict() for s in summaries]),
                             description="Rows read, stored, quarantined and duplicated per file")
    return [s.to_dict() for s in summaries]


@flow(name="customs-ingest-landing")
def customs_ingest_landing(folder: str | None = None, mapping: str | None = None) -> dict:
    """Ingest every file waiting in the landing folder (default ADUANA_HOME/landing), then file it away.

    Ingested files move to `processed/`; a file refused whole moves to `refused/` with its reason beside it,
    and the others still go in. Re-delivered files are recognised by content and add nothing."""
    rt = runtime.current()
    root = Path(folder) if folder else rt.settings.landing_dir
    paths = _ingest_order([str(p) for p in landing_files(root)], None)
    summaries, refused = [], {}
    for path in paths:
        try:
            summaries.append(ingest_file(rt, path, None, mapping))
            file_away(Path(path), root / "processed")
        except UserError as exc:
            refused[Path(path).name] = str(exc)
            file_away(Path(path), root / "refused", str(exc))
            progress(f"refused {Path(path).name}: {exc}")
    if paths:
        create_markdown_artifact(key="customs-ingest-summary",
                                 markdown=ingest_markdown([s.to_dict() for s in summaries], refused),
                                 description="Rows read, stored, quarantined and duplicated per landing file")
    progress(f"landing {root}: {len(summaries)} file(s) ingested, {len(refused)} refused")
    return {"folder": str(root), "ingested": [s.to_dict() for s in summaries], "refused": refused}
