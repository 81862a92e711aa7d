"""Service commands: `serve` the scoring API, this home's Prefect `server`, and `schedule` the deployments."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from features.errors import UserError
from flows.cli.output import emit
from flows.cli.root import INPUT, JsonOption, runs_flows, settings
from flows.orchestration import runtime


def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    policy: Annotated[Path | None, typer.Option("--policy", help="YAML lane policy.", **INPUT)] = None,
    max_items: Annotated[int, typer.Option("--max-items", min=1, help="Declarations per request.")] = 100,
    mapping: Annotated[Path | None, typer.Option(
        "--mapping", help="YAML column mapping: /v1/score also takes records in its source layout.", **INPUT)] = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Worker processes (uvicorn's), all writing one decision log.")] = 1,
    allow_open: Annotated[bool, typer.Option(
        "--allow-open", help="Serve on an interface other than loopback without ADUANA_API_KEY: anyone who can "
                             "reach it can score.")] = False,
) -> None:
    """Serve POST /v1/score, /healthz, /readyz and the OpenAPI docs (/docs) with uvicorn.

    Every answer is durable in the decision log before it leaves: the home's journal, or the PostgreSQL database of
    ADUANA_OPS_URL (the production stack), which every worker and replica shares."""
    import ipaddress

    import uvicorn

    from flows.orchestration import api_workers
    from serving.api import server_config
    from serving.api.workers import claim
    from serving.api.workers import run as serve_workers

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        loopback = False
    rt = runtime.current()
    if not loopback and not rt.settings.api_key:
        if not allow_open:
            typer.echo(f"aduana: refusing to serve scoring on {host} without a key: set ADUANA_API_KEY (clients "
                       "then send X-API-Key), or pass --allow-open to serve it open", err=True)
            raise typer.Exit(2)
        typer.echo(f"aduana: warning: serving scoring on {host} with no ADUANA_API_KEY: anyone who can reach it "
                   "can score declarations", err=True)
    claim(host, port)  # a taken port fails here, not after the app (the warehouse's snapshot) is built
    options = {"policy": str(policy) if policy else None, "max_items": max_items,
               "mapping": str(mapping) if mapping else None}
    where = f"on http://{host}:{port} (docs: /docs, analysts' page: /ui), decisions logged to {rt.oplog.where}"
    if workers == 1:
        app_ = api_workers.build(rt, **options)
        runtime.progress(f"serving customs-risk v{app_.state.service.scorer.version or '(none yet)'} {where}")
        uvicorn.Server(server_config(app_, host, port)).run()
        return
    api_workers.hand_over(rt.settings.root, **options)
    runtime.progress(f"serving with {workers} worker processes {where}")
    serve_workers(server_config("flows.orchestration.api_workers:app", host, port, workers=workers), workers)


@runs_flows
def schedule(
    names: Annotated[list[str] | None, typer.Argument(help="Deployments to register (default: all in infra/prefect.yaml).")]
    = None,
    register_only: Annotated[bool, typer.Option("--register-only", help="Register the deployments and exit; "
                                                "a worker elsewhere runs them.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Register infra/prefect.yaml's deployments (schedules and the drift trigger) and run a worker for them.

    Registration is `prefect deploy --prefect-file infra/prefect.yaml` from the repository root, on the work pool
    `aduana-local` (created if missing), so running either command again leaves the same deployments. The worker
    runs until interrupted, with this ADUANA_HOME; runs show in the Prefect UI ('aduana server status')."""
    if not os.environ.get("PREFECT_API_URL"):
        raise UserError("aduana schedule needs a Prefect server that outlives it: unset ADUANA_PREFECT_SERVER=ephemeral "
                        "(the home's server is then used) or set PREFECT_API_URL")
    from flows.orchestration import deployments

    pool = deployments.pool_of(deployments.chosen(names or None))
    registered = deployments.register(names or None)
    result = {"registered": registered, "work_pool": pool, "api": os.environ["PREFECT_API_URL"]}
    emit(result, as_json, f"registered {', '.join(registered)} on work pool {pool}")
    if register_only:
        return
    runtime.progress(f"running a worker on {pool} for {settings().root}; Ctrl-C to stop")
    code = deployments.run_worker(pool, settings().root)
    if code not in (0, -2, 130):  # Ctrl-C ends the worker with SIGINT
        raise RuntimeError(f"the Prefect worker ended with exit code {code}")


server_app = typer.Typer(
    help="This home's local Prefect server. The CLI starts it when a flow first needs it; it stops after "
         "ADUANA_PREFECT_SERVER_IDLE_MINUTES (default 30; 0: never) without a CLI call, flow run or worker, and "
         "at once when its home is deleted. Scripts and CI that want none left running set "
         "ADUANA_PREFECT_SERVER=ephemeral (Prefect's temporary server per call).",
    no_args_is_help=True, rich_markup_mode=None)


def _server_result(found, state: str, servers: list | None = None) -> dict:
    """This home's server, as scripts read it, and (`servers`) every home's server found running."""
    home = settings().prefect_home
    from flows.orchestration.server import auth_file, log_file

    where = {"log": str(log_file(home)), "auth_file": str(auth_file(home))}  # the secret its clients send
    listed = {} if servers is None else {"servers": [resident.describe() for resident in servers]}
    if found is None:
        return {"state": state, "ui": None, "api": None, "pid": None, **where, **listed}
    return {"state": state, "ui": found.ui_url, "api": found.api_url, "pid": found.pid, **where, **listed}


@server_app.command(name="status")
def server_status(as_json: JsonOption = False) -> None:
    """Say whether this home's Prefect server runs, and where its UI is; list every home's server this user
    runs, deleted homes' included ('aduana server stop --all' stops them)."""
    from flows.orchestration import server

    found = server.running(settings().prefect_home)
    result = _server_result(found, "running" if found else "stopped", server.servers())
    lines = [f"Prefect server: {result['state']}" + (f", UI at {result['ui']}" if found else "")]
    if result["servers"]:
        lines.append("servers of this user's homes:")
    lines += [f"  pid {s['pid']}: UI at {s['ui']} for {s['home']}" + ("" if s["home_exists"] else " (home deleted)")
              for s in result["servers"]]
    emit(result, as_json, "\n".join(lines))


@server_app.command(name="start")
def server_start(as_json: JsonOption = False) -> None:
    """Start this home's Prefect server now (flows start it anyway when they need it)."""
    from flows.orchestration import server

    idle_minutes = settings().prefect_server_idle_minutes
    found, started = server.ensure(settings().prefect_home, idle_minutes)
    result = _server_result(found, "started" if started else "running")
    emit(result, as_json, f"Prefect server {result['state']}: UI at {found.ui_url}, API at {found.api_url} "
                          f"({server.lifetime(idle_minutes)})")


@server_app.command(name="stop")
def server_stop(
    every: Annotated[bool, typer.Option("--all", help="Stop every home's server this user runs, deleted homes' "
                                        "included, not only this home's.")] = False,
    under: Annotated[Path | None, typer.Option("--under", help="With --all: only those of the homes inside this "
                                               "folder (a script's temporary homes).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Stop this home's Prefect server (its runs are kept; the next flow starts it again), or with --all every
    home's."""
    from flows.orchestration import server

    if under is not None and not every:
        raise UserError("--under goes with --all")
    if not every:
        found = server.stop(settings().prefect_home)
        result = _server_result(found, "stopped" if found else "not running")
        emit(result, as_json, f"Prefect server {result['state']}")
        return
    found = server.recorded(settings().prefect_home)
    stopped = server.stop_all(under)
    ours = found is not None and any(resident.pid == found.pid for resident in stopped)
    result = _server_result(found if ours else None, "stopped" if ours else "not running", stopped)
    emit(result, as_json, f"stopped {len(stopped)} Prefect server(s)"
                          + "".join(f"\n  pid {s['pid']} for {s['home']}" for s in result["servers"]))
