"""`aduana schedule` and `prefect deploy` register the same deployments: running one after the other changes
nothing a worker depends on (entrypoint, pull steps, work pool), and the drift automation stays one."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from flows.orchestration.deployments import deployment_specs

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


async def _registered() -> tuple[dict, list[str]]:
    names = {s["name"] for s in deployment_specs()}
    async with get_client() as client:
        found = [d for d in await client.read_deployments() if d.name in names]
        flows = {f.id: f.name for f in await client.read_flows()}
        automations = await client.read_automations()
    ids = {d.id for d in found}
    linked = sorted(a.name for a in automations if any(getattr(x, "deployment_id", None) in ids for x in a.actions))
    return {f"{flows[d.flow_id]}/{d.name}": {
        "entrypoint": d.entrypoint, "pull_steps": d.pull_steps, "work_pool": d.work_pool_name, "path": d.path,
        "parameters": d.parameters, "tags": sorted(d.tags), "concurrency": d.concurrency_limit,
        "schedules": sorted(json.dumps(s.schedule.model_dump(mode="json", exclude={"anchor_date"}), sort_keys=True)
                            for s in d.schedules),  # an interval's anchor is the moment it was registered
    } for d in found}, linked


def test_schedule_and_prefect_deploy_register_the_same_deployments(prefect_api, home):
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "ADUANA_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", "aduana-local", "--type", "process"],
                   cwd=REPO, env=env, capture_output=True, timeout=300)  # as the README says; it may exist already
    deployed = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file",
                               "infra/prefect.yaml"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert deployed.returncode == 0, deployed.stdout[-2000:]
    by_prefect, automations = asyncio.run(_registered())
    assert len(by_prefect) == len(deployment_specs())
    assert {d["work_pool"] for d in by_prefect.values()} == {"aduana-local"}
    assert automations == ["retrain-on-drift"]

    scheduled = subprocess.run([sys.executable, "-m", "flows.cli", "schedule", "--register-only", "--json"],
                               cwd=home.parent, env=env, capture_output=True, text=True, timeout=300)
    assert scheduled.returncode == 0, scheduled.stderr[-2000:]
    summary = json.loads(scheduled.stdout)
    assert summary["work_pool"] == "aduana-local" and len(summary["registered"]) == len(deployment_specs())
    by_schedule, automations = asyncio.run(_registered())
    for name, fields in by_prefect.items():  # what a worker reads is unchanged: it still runs them
        assert by_schedule[name] == fields, name
    assert automations == ["retrain-on-drift"]  # re-registering replaced the trigger, did not add one


def test_schedule_refuses_an_unknown_deployment_before_registering(prefect_api, home):
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "ADUANA_HOME": str(home)}
    result = subprocess.run([sys.executable, "-m", "flows.cli", "schedule", "nightly-nothing", "--register-only"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no deployment named nightly-nothing" in result.stderr
