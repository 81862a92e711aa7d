"""One Prefect server per ADUANA_HOME: the first flow command starts it, the next ones reuse it, its runs stay
visible, two homes get two servers, each answers only requests that carry its home's secret and its UI calls its
own API, `aduana server status` lists every home's, and `aduana server stop` ends this home's (--all: every
home's). How a server stops by itself is in test_server_lifecycle.py."""
from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from flows.orchestration import server

pytestmark = pytest.mark.integration


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ADUANA_HOME": str(home), "ADUANA_PREFECT_SERVER": "home"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env,
                          timeout=240)


def _post(found: server.Server, path: str, auth: str | None, body: dict | None = None):
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    request = urllib.request.Request(f"{found.api_url}/{path}", data=json.dumps(body or {}).encode(), method="POST",
                                     headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def _flow_runs(found: server.Server, home: Path) -> list[str]:
    return [run["state_type"] for run in _post(found, "flow_runs/filter", server.auth_string(home / "prefect"))]


def _ui_settings(found: server.Server) -> dict:
    with urllib.request.urlopen(f"{found.ui_url}/ui-settings", timeout=10) as answer:
        return json.load(answer)


def _refused(found: server.Server, path: str, auth: str | None, body: dict | None = None) -> int:
    with pytest.raises(urllib.error.HTTPError) as refused:
        _post(found, path, auth, body)
    return refused.value.code


@pytest.fixture
def homes(tmp_path):
    made = [tmp_path / "a", tmp_path / "b"]
    yield made
    for home in made:  # however the test ends
        server.stop(home / "prefect")
    server.stop_all(under=tmp_path)  # any its state file no longer names (by pid, only those of homes in tmp_path)


def test_the_first_flow_starts_the_homes_server_and_the_next_reuse_it(homes, declarations_csv):
    a, b = homes
    first = _cli(a, "ingest", str(declarations_csv), "--json")
    assert first.returncode == 0, first.stderr
    assert "started this home's Prefect server" in first.stderr and "it stops after 30 idle minutes" in first.stderr
    started = server.running(a / "prefect")
    assert started is not None

    second = _cli(a, "ingest", str(declarations_csv), "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["duplicates"] == json.loads(first.stdout)["stored"]
    assert "started this home's Prefect server" not in second.stderr
    assert server.running(a / "prefect") == started  # the same process, not a new one
    assert _flow_runs(started, a).count("COMPLETED") == 2  # both calls' runs are kept for the UI

    # The API answers only the home's secret, kept where only its owner can read it: another local user reaches
    # the port, but can neither read the runs nor create a work pool for a worker to run code from.
    secret = server.auth_file(a / "prefect")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and server.auth_string(a / "prefect").startswith("aduana:")
    for auth in (None, "aduana:guessed"):
        assert _refused(started, "flow_runs/filter", auth) == 401
        assert _refused(started, "work_pools/", auth, {"name": "intruder", "type": "process"}) == 401
    assert _ui_settings(started)["auth"] == "BASIC"  # the UI asks for the secret on its login page

    other = _cli(b, "ingest", str(declarations_csv), "--json")  # another home: its own server, its own runs
    assert other.returncode == 0, other.stderr
    b_server = server.running(b / "prefect")
    assert b_server is not None and b_server.port != started.port
    assert _flow_runs(b_server, b) == ["COMPLETED"]  # its own run only, not a's two
    for found in (started, b_server):  # each home's UI calls its own API (Prefect's default is 4200's, a's)
        assert _ui_settings(found)["api_url"] == found.api_url
    assert server.auth_string(b / "prefect") != server.auth_string(a / "prefect")
    assert _refused(started, "flow_runs/filter", server.auth_string(b / "prefect")) == 401  # one home's, not another's

    status = json.loads(_cli(a, "server", "status", "--json").stdout)
    assert status["state"] == "running" and status["ui"] == started.ui_url
    listed = {found["pid"]: found for found in status["servers"]}  # every home's server, not only this home's
    assert Path(listed[started.pid]["home"]) == a.resolve() and listed[started.pid]["home_exists"]
    assert Path(listed[b_server.pid]["home"]) == b.resolve() and listed[b_server.pid]["ui"] == b_server.ui_url
    stopped = json.loads(_cli(a, "server", "stop", "--json").stdout)
    assert stopped["state"] == "stopped" and server.recorded(a / "prefect") is None
    assert json.loads(_cli(a, "server", "status", "--json").stdout)["state"] == "stopped"
    assert server.running(b / "prefect") == b_server  # stopping one home's server leaves the other's

    # --all stops every home's (here only those under tmp_path: others' servers run on this machine too).
    everything = _cli(a, "server", "stop", "--all", "--under", str(a.parent), "--json")
    assert [found["pid"] for found in json.loads(everything.stdout)["servers"]] == [b_server.pid], everything.stderr
    assert server.recorded(b / "prefect") is None and server.servers(under=a.parent) == []


def test_commands_that_run_no_flow_start_no_server(homes, tmp_path):
    a, _ = homes
    assert _cli(a, "server", "status", "--json").returncode == 0
    assert _cli(a, "ingest", str(tmp_path / "missing.csv")).returncode == 2  # checked before any server starts
    assert _cli(a, "promote", "--version", "3").returncode == 2  # --reason missing: refused before any flow
    assert server.recorded(a / "prefect") is None


def test_a_server_started_without_the_homes_secret_is_replaced_by_one_with_it(tmp_path, monkeypatch):
    """A home whose server an older Aduana started (no secret) gets a protected one; the secret then stays."""
    prefect_home = tmp_path / "prefect"
    prefect_home.mkdir()
    unprotected = subprocess.Popen(["sleep", "120"], start_new_session=True)
    (prefect_home / "server.json").write_text(json.dumps({"pid": unprotected.pid, "port": 4200, "started": 0.0}))
    environments, stand_ins, popen = [], [], subprocess.Popen

    def start(args, **kwargs):  # no real server nor keeper: what the server would be started with, and processes
        if "prefect" in args:   # to stand for both
            environments.append(kwargs["env"])
        stand_ins.append(popen(["sleep", "120"], start_new_session=True))
        return stand_ins[-1]

    monkeypatch.setattr(server.subprocess, "Popen", start)
    monkeypatch.setattr(server, "healthy", lambda found, timeout=1.0: True)
    monkeypatch.setattr(server, "answers_with_secret", lambda found, home, timeout=1.0: True)
    try:
        found, started = server.ensure(prefect_home, 30)
        assert started and found.protected and found.pid != unprotected.pid
        assert unprotected.wait(timeout=15) is not None  # the open server was stopped
        secret = server.auth_string(prefect_home)
        assert environments[0]["PREFECT_SERVER_API_AUTH_STRING"] == secret
        assert stat.S_IMODE(server.auth_file(prefect_home).stat().st_mode) == 0o600
        assert server.ensure(prefect_home, 30) == (found, False)  # a protected server is reused
        (prefect_home / "server.json").write_text(json.dumps({**vars(found), "keeper": None}))  # from before keepers
        kept, started = server.ensure(prefect_home, 30)
        assert not started and kept.pid == found.pid and kept.keeper not in (None, found.keeper)  # it gets one

        server.stop(prefect_home)
        again, _ = server.ensure(prefect_home, 30)
        assert environments[1]["PREFECT_SERVER_API_AUTH_STRING"] == secret  # the same secret for the next start
        server.auth_file(prefect_home).unlink()  # a secret gone: no client could connect, so a new server and secret
        replaced, started = server.ensure(prefect_home, 30)
        assert started and replaced.pid != again.pid
        assert environments[2]["PREFECT_SERVER_API_AUTH_STRING"] == server.auth_string(prefect_home) != secret
    finally:
        server.stop(prefect_home)
        for process in [unprotected, *stand_ins]:
            process.kill()
            process.wait()


def test_the_cli_gives_its_clients_the_homes_secret_and_a_users_own_server_keeps_theirs(tmp_path, monkeypatch):
    from flows.orchestration import runtime
    from flows.settings import Settings

    monkeypatch.setenv("ADUANA_PREFECT_SERVER", "home")
    settings = Settings(home=tmp_path / "home")
    settings.prefect_home.mkdir(parents=True)
    ours = server.Server(pid=os.getpid(), port=4311, started=0.0, protected=True)  # a live pid: "running"
    (settings.prefect_home / "server.json").write_text(json.dumps(vars(ours)))
    server.auth_file(settings.prefect_home).write_text("aduana:home-secret\n")
    monkeypatch.setattr(server, "ensure", lambda prefect_home, idle_minutes: (ours, False))
    for variable in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING"):
        monkeypatch.delenv(variable, raising=False)

    runtime.connect(settings)  # what every flow command does: its flows, `prefect deploy` and the worker inherit it
    assert (os.environ["PREFECT_API_URL"], os.environ["PREFECT_API_AUTH_STRING"]) == (ours.api_url, "aduana:home-secret")

    monkeypatch.delenv("PREFECT_API_AUTH_STRING")
    monkeypatch.setenv("PREFECT_API_URL", ours.api_url + "/")  # the README's export of this home's API address
    runtime.connect(settings)
    assert os.environ["PREFECT_API_AUTH_STRING"] == "aduana:home-secret"

    monkeypatch.delenv("PREFECT_API_AUTH_STRING")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4999/api")  # the user's own server: not ours to sign in to
    runtime.connect(settings)
    assert "PREFECT_API_AUTH_STRING" not in os.environ
