"""A flow on a Dask cluster: prefect-dask's DaskTaskRunner, for the flows whose heavy work runs as partitioned tasks
(customs-score's partitions, customs-retrain's feature building)."""
from __future__ import annotations

import os

from prefect import Flow


def with_dask(flow: Flow, address: str, workers: int | None = None) -> Flow:
    """`flow` on prefect-dask's DaskTaskRunner: the cluster at `address` (tcp://host:8786), or "local" for a
    LocalCluster of `workers` processes (default: one per core) that lives as long as the flow run."""
    from prefect_dask import DaskTaskRunner

    if address == "local":
        runner = DaskTaskRunner(cluster_kwargs={"n_workers": workers or os.cpu_count() or 1, "threads_per_worker": 1,
                                                "processes": True, "dashboard_address": None})
    else:
        runner = DaskTaskRunner(address=address)
    return flow.with_options(task_runner=runner)
