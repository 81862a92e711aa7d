"""The deployments of infra/prefect.yaml, registered one way whoever registers them.

infra/prefect.yaml is the one definition. `aduana schedule` registers it by running the very command the README
gives, `prefect --no-prompt deploy --prefect-file infra/prefect.yaml`, from the repository root, on the process
work pool the file names (created if missing); then it runs a process worker on that pool with this home's
environment. Registering again, either way, rewrites the same deployments, so neither breaks the other's.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from features.errors import UserError

REPO = Path(__file__).resolve().parents[2]
PREFECT_FILE = REPO / "infra" / "prefect.yaml"


def deployment_specs(path: Path = PREFECT_FILE) -> list[dict]:
    return yaml.safe_load(path.read_text())["deployments"]


def pool_of(specs: list[dict]) -> str:
    pools = {s["work_pool"]["name"] for s in specs}
    if len(pools) != 1:
        raise UserError(f"{PREFECT_FILE} must put every deployment on one work pool, not {sorted(pools)}")
    return pools.pop()


def chosen(names: list[str] | None, path: Path = PREFECT_FILE) -> list[dict]:
    specs = [s for s in deployment_specs(path) if not names or s["name"] in names]
    unknown = set(names or []) - {s["name"] for s in specs}
    if unknown:
        raise UserError(f"no deployment named {', '.join(sorted(unknown))} in {path}; "
                        f"there are {', '.join(s['name'] for s in deployment_specs(path))}")
    return specs


def ensure_pool(name: str) -> bool:
    """Create the process work pool if the API has none of that name. Returns whether it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            return True


def register(names: list[str] | None = None, path: Path = PREFECT_FILE) -> list[str]:
    """Register the deployments (all, or those named) with `prefect deploy`, as a user would from the repository
    root; their triggers become the automations. Returns the names registered."""
    specs = chosen(names, path)
    ensure_pool(pool_of(specs))
    selection = ["--all"] if not names else [a for s in specs for a in ("--name", s["name"])]
    result = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--prefect-file", str(path),
                             *selection], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:]
        raise RuntimeError(f"prefect deploy failed: {' '.join(detail) or f'exit {result.returncode}'}")
    return [s["name"] for s in specs]


def run_worker(pool: str, home: Path) -> int:
    """A process worker on the pool until interrupted: it runs each flow in a subprocess in the folder the
    deployments were registered from, with this environment, so ADUANA_HOME is the home given."""
    env = {**os.environ, "ADUANA_HOME": str(home)}
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type",
                               "process"], cwd=REPO, env=env)
    try:
        return worker.wait()
    except KeyboardInterrupt:
        # The terminal's Ctrl-C reached the worker too: let it shut down (subprocess.call would kill it 0.25 s on).
        return worker.wait()
