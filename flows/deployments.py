"""The deployments in infra/prefect.yaml, served from one process (`aduana schedule`): no work pool, no worker.

infra/prefect.yaml is the one definition. `prefect deploy` reads it for a worker-based set-up; this module reads
the same file, so schedules, parameters and the drift trigger are the same either way.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from prefect import serve
from prefect.events import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron, Interval

REPO = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO / "infra" / "prefect.yaml"


def deployment_specs(path: Path = PREFECT_FILE) -> list[dict]:
    return yaml.safe_load(path.read_text())["deployments"]


def _schedule(spec: dict) -> Cron | Interval:
    if "cron" in spec:
        return Cron(spec["cron"], timezone=spec.get("timezone", "UTC"))
    return Interval(spec["interval"])


def drift_triggers(spec: dict) -> list[DeploymentEventTrigger]:
    return [DeploymentEventTrigger(**{k: v for k, v in t.items() if k != "type"}) for t in spec.get("triggers", [])]


def runner_deployments(names: list[str] | None = None, path: Path = PREFECT_FILE, schedules: bool = True) -> list:
    """RunnerDeployments for `serve`, built from prefect.yaml (all of them, or those named)."""
    specs = [s for s in deployment_specs(path) if names is None or s["name"] in names]
    unknown = set(names or []) - {s["name"] for s in specs}
    if unknown:
        raise ValueError(f"no deployment named {', '.join(sorted(unknown))} in {path}")
    deployments = []
    for spec in specs:
        flow = load_flow_from_entrypoint(str(REPO / spec["entrypoint"]))
        deployments.append(flow.to_deployment(
            name=spec["name"], description=spec.get("description"), tags=spec.get("tags"),
            parameters={k: v for k, v in spec.get("parameters", {}).items() if v is not None},
            schedules=[_schedule(s) for s in spec.get("schedules", [])] if schedules else None,
            concurrency_limit=spec.get("concurrency_limit"), triggers=drift_triggers(spec)))
    return deployments


def serve_deployments(names: list[str] | None = None, schedules: bool = True) -> None:
    """Register the deployments (and their triggers) and run their flows as they come due, until interrupted."""
    serve(*runner_deployments(names, schedules=schedules), print_starting_message=False)


if __name__ == "__main__":  # `python -m flows.deployments [NAME ...]`, as the integration test starts it
    import sys

    serve_deployments(sys.argv[1:] or None)
