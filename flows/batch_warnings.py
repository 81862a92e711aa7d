"""customs-warnings and customs-acknowledge: the stored batches whose dataset-level expectations failed, and an
analyst's acknowledgement of one (append-only: who, when and why).

An acknowledged batch no longer counts as failed validation for the promotion gate, and its pending profile joins
its kind's reference, so the new codes or ranges it brought become expected."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from expectations.reference import accept_pending
from flows.orchestration import runtime
from flows.orchestration.runtime import Runtime


@task(name="list_failed_batches", cache_policy=NO_CACHE)
def list_failed_batches(rt: Runtime, kind: str | None) -> list[dict]:
    return rt.warehouse.failed_batches(kind)


@task(name="acknowledge_batch", cache_policy=NO_CACHE)
def acknowledge_batch(rt: Runtime, batch_id: str, reason: str, by: str) -> dict:
    record = rt.warehouse.acknowledge(batch_id, reason, by)
    record["reference_updated"] = accept_pending(rt.settings.reference_dir, batch_id)
    return record


@flow(name="customs-warnings")
def customs_warnings(kind: str | None = None) -> list[dict]:
    """Every stored batch (of `kind`, or all) whose dataset-level expectations failed, with its acknowledgement."""
    return list_failed_batches(runtime.current(), kind)


@flow(name="customs-acknowledge")
def customs_acknowledge(batch_id: str, reason: str, by: str) -> dict:
    """Accept a batch's failed expectations, as `by`, for `reason`."""
    return acknowledge_batch(runtime.current(), batch_id, reason, by)
