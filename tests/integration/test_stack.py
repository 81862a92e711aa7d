"""`aduana stack up|status|down` against the real servers: PostgreSQL, a Prefect server and an MLflow tracking
server on it. While a home's stack is up, the CLI in that home uses it with nothing exported, a flow's run is kept
in PostgreSQL, models and aliases live in the `mlflow` database; a setting the user gave always wins."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from flows.orchestration import postgres, stack
from flows.orchestration.watchdog import alive
from flows.settings import Settings

STORES = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "ADUANA_OPS_URL")
needs_postgres = pytest.mark.skipif(not postgres.available(),
                                    reason="PostgreSQL is not installed: apt-get install -y postgresql")


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI as a user runs it in that home, with none of the stores' settings exported."""
    env = {k: v for k, v in os.environ.items() if k not in (*STORES, "PREFECT_API_AUTH_STRING", "PREFECT_HOME")}
    env["ADUANA_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env,
                          timeout=240)


def _json(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _prefect(api_url: str, path: str, home: Path) -> list[dict]:
    secret = stack.auth_string(stack.folder_of(home))
    request = urllib.request.Request(f"{api_url}/{path}", data=b"{}", method="POST", headers={
        "Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(secret.encode()).decode()})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def _rows(url: str, query: str, *params) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as con:
        return con.execute(query, params).fetchall()


def _port_open(url: str) -> bool:
    import socket
    from urllib.parse import urlparse

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", urlparse(url).port), timeout=1):
        return True
    return False


@pytest.fixture
def stack_home(tmp_path):
    """A home whose stack is stopped and its files removed however the test ends."""
    home = tmp_path / "home"
    folder = stack.folder_of(home)
    try:
        yield home
    finally:
        pids = (stack.read_record(folder).get("pids") or {}).values()
        with contextlib.suppress(Exception):
            stack.down(home, purge=True)
        for pid in pids:  # if `down` failed: the servers' process groups, by their recorded pids
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if folder.exists():
            place = stack.cluster(folder).place
            stack.cluster(folder).stop()
            if place != folder / "postgres":
                import shutil

                shutil.rmtree(place, ignore_errors=True)


@needs_postgres
@pytest.mark.integration
def test_stack_up_runs_the_homes_flows_and_models_on_postgresql_then_down_stops_it(stack_home, declarations_csv,
                                                                                 monkeypatch):
    home = stack_home
    up = _json(_cli(home, "stack", "up", "--json"))
    assert up["state"] == "up" and sorted(up["started"]) == ["mlflow", "postgres", "prefect"]
    urls, pieces = up["settings"], up["pieces"]
    assert set(urls) == set(STORES)
    again = _json(_cli(home, "stack", "up", "--json"))  # up again: nothing started, the same processes
    assert again["started"] == [] and {k: p["pid"] for k, p in again["pieces"].items()} == {
        k: p["pid"] for k, p in pieces.items()}

    # A flow the CLI runs in this home goes to the stack's Prefect server (no home server is started), and its
    # run is kept in the `prefect` database.
    ingested = _json(_cli(home, "ingest", str(declarations_csv), "--json"))
    assert ingested["stored"] == 500
    assert not (home / "prefect" / "server.json").exists()
    assert [run["state_type"] for run in _prefect(urls["PREFECT_API_URL"], "flow_runs/filter", home)] == ["COMPLETED"]
    pg = stack.cluster(stack.folder_of(home), int(urls["ADUANA_OPS_URL"].rsplit(":", 1)[1].split("/")[0]))
    assert _rows(pg.url("prefect"), "SELECT f.name, r.state_type FROM flow_run r JOIN flow f ON f.id = r.flow_id"
                 ) == [("customs-ingest", "COMPLETED")]

    # This home's settings, with nothing exported, point at the stack: MLflow at its server, ops_url at aduana_ops.
    from flows.orchestration import runtime

    for name in STORES:
        monkeypatch.delenv(name, raising=False)
    settings = Settings(home=home)
    assert runtime.tracking_uri(settings) == urls["MLFLOW_TRACKING_URI"]
    assert settings.ops_url == urls["ADUANA_OPS_URL"] and _rows(settings.ops_url, "SELECT current_database()") == [
        ("aduana_ops",)]
    import psycopg

    with pytest.raises(psycopg.OperationalError, match="password"):  # the port is open to local users: a password
        psycopg.connect(pg.url("aduana_ops").replace(f":{pg.password}@", "@"), connect_timeout=5)
    assert pg.password and (stack.folder_of(home) / "postgres-password").stat().st_mode & 0o077 == 0

    # MLflow's server: a registered model with aliases, its tables in the `mlflow` database, artifacts served.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=urls["MLFLOW_TRACKING_URI"], registry_uri=urls["MLFLOW_TRACKING_URI"])
    run = client.create_run(client.create_experiment("stack-check"))
    client.log_text(run.info.run_id, "flavors: {}\n", "model/MLmodel")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("customs-risk")
    for _ in range(2):
        client.create_model_version("customs-risk", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("customs-risk", "champion", "1")
    client.set_registered_model_alias("customs-risk", "challenger", "2")
    assert client.get_model_version_by_alias("customs-risk", "champion").version == "1"
    assert client.get_model_version_by_alias("customs-risk", "challenger").version == "2"
    assert sorted(_rows(pg.url("mlflow"), "SELECT alias, version FROM registered_model_aliases")) == [
        ("challenger", 2), ("champion", 1)]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert list((stack.folder_of(home) / "mlflow-artifacts").rglob("MLmodel"))

    # A piece that died is started again by `up`, on the same port; the others are left as they are.
    stack.stop_process(pieces["mlflow"]["pid"])
    status = _json(_cli(home, "stack", "status", "--json"))
    assert status["state"] == "partial" and not status["pieces"]["mlflow"]["running"]
    restarted = _json(_cli(home, "stack", "up", "--json"))
    assert restarted["started"] == ["mlflow"] and restarted["settings"] == urls
    assert client.get_model_version_by_alias("customs-risk", "champion").version == "1"  # kept in PostgreSQL

    status = _json(_cli(home, "stack", "status", "--json"))
    assert status["state"] == "up" and all(piece["running"] for piece in status["pieces"].values())
    pids = [piece["pid"] for piece in status["pieces"].values()]

    down = _json(_cli(home, "stack", "down", "--json"))
    assert down["stopped"] == ["mlflow", "prefect", "postgres"]
    assert not any(stack._running(pid) for pid in pids)
    assert not any(_port_open(url) for url in urls.values())
    assert _json(_cli(home, "stack", "status", "--json"))["state"] == "down"
    assert Settings(home=home).stack_stores() == {}  # the home is back on its embedded stores
    assert not [pid for pid in pids if alive(pid) and stack._running(pid)]


def test_a_setting_the_user_gave_wins_over_the_homes_stack(tmp_path, monkeypatch):
    """Only a stack recorded up is used, and only for what the user did not set."""
    from flows.orchestration import runtime

    home = tmp_path / "home"
    folder = stack.folder_of(home)
    folder.mkdir(parents=True)
    (folder / "stack.json").write_text(json.dumps({"up": True, "ports": {"postgres": 5999, "prefect": 4999,
                                                                         "mlflow": 5998}}))
    (folder / "prefect").mkdir()
    (folder / "prefect" / "api-auth").write_text("aduana:stack-secret\n")
    monkeypatch.setattr(os, "environ", os.environ.copy())  # what configure() exports stays in this test
    for name in (*STORES, "PREFECT_API_AUTH_STRING"):
        monkeypatch.delenv(name, raising=False)

    settings = Settings(home=home)
    runtime.configure(settings, debug=True)
    assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:4999/api"
    assert os.environ["PREFECT_API_AUTH_STRING"] == "aduana:stack-secret"
    assert runtime.tracking_uri(settings) == "http://127.0.0.1:5998"
    assert settings.ops_url == "postgresql://aduana@127.0.0.1:5999/aduana_ops"  # no password kept: none made

    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "user:theirs")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setenv("ADUANA_OPS_URL", "postgresql://ops@db.example:5432/ops")
    settings = Settings(home=home)
    runtime.configure(settings, debug=True)
    assert os.environ["PREFECT_API_URL"] == "http://prefect.example:4200/api"
    assert os.environ["PREFECT_API_AUTH_STRING"] == "user:theirs"
    assert runtime.tracking_uri(settings) == "http://mlflow.example:5000"
    assert settings.ops_url == "postgresql://ops@db.example:5432/ops"

    for name in STORES:
        monkeypatch.delenv(name)
    (folder / "stack.json").write_text(json.dumps({"up": False, "ports": {"postgres": 5999, "prefect": 4999,
                                                                          "mlflow": 5998}}))
    settings = Settings(home=home)  # a stack that is down: the embedded stores
    assert settings.ops_url is None and runtime.tracking_uri(settings) == f"sqlite:///{settings.mlflow_db}"
