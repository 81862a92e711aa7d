"""The CLI as Click users expect it: bad input exits 2 before any flow starts, --json is JSON even for errors,
and flags read as flags in help."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from flows.cli import app


def _cli(*args: str, home, **env: str) -> subprocess.CompletedProcess:  # noqa: ANN001
    env = {**os.environ, "ADUANA_HOME": str(home), **env}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize(("args", "kind", "says"), [
    (("ingest", "nope.csv"), "usage", "does not exist"),
    (("score", "nope.csv", "--out", "x.csv"), "usage", "does not exist"),
    (("audit", "--capacity", "0"), "usage", "--capacity"),
    (("audit", "--period", "last-tuesday"), "usage", "--period"),
    (("train", "--tune", "--budget", "soon"), "usage", "--budget"),
])
def test_bad_input_exits_2_with_a_json_error_and_starts_no_server(tmp_path, args, kind, says):
    home = tmp_path / "home"
    result = _cli(*args, "--json", home=home)
    assert result.returncode == 2, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["type"] == kind and says in error["message"] and error["exit_code"] == 2
    assert len([line for line in result.stderr.splitlines() if line.startswith("aduana: error:")]) == 1
    assert not (home / "prefect").exists() or not any((home / "prefect").rglob("*.db"))  # no Prefect server ran
    assert "Traceback" not in result.stderr


EXPORT = "Declaration ID,Date,Importer ID,HS6 Code,Country of Origin,Item Price,Fraud\nA-1,2024-02-03,IMP9,870323,CN,10,0\n"
MISSPELT = """columns: {declaration_id: Declaration Id, declaration_date: Date, importer_id: Importer ID, hs_code: HS6 Code,
          origin_country: Country of Origin, declared_value: Item Price}
labels: {fraud: Fraud}
"""


@pytest.mark.parametrize("command", [
    ("ingest", "{export}"),
    ("ingest", "{export}", "--kind", "outcomes"),
    ("score", "{export}", "--out", "{tmp}/lanes.csv"),
    ("evaluate", "--train", "{export}", "--test", "{export}"),
    ("backtest", "{export}"),
])
def test_a_mapping_that_does_not_fit_its_file_is_refused_before_any_flow_starts(tmp_path, command):
    # Given an export and its mapping, with the id column's name misspelt
    export, mapping = tmp_path / "declarations.csv", tmp_path / "mapping.yaml"
    export.write_text(EXPORT)
    mapping.write_text(MISSPELT)
    # When a command that runs flows is given both (Prefect's state kept apart, to see whether a server started)
    args = [a.format(export=export, tmp=tmp_path) for a in command]
    result = _cli(*args, "--mapping", str(mapping), "--json", home=tmp_path / "home",
                  PREFECT_HOME=str(tmp_path / "prefect"))
    # Then it is a one-line input error naming the column, and no Prefect server (ephemeral or the home's) started
    assert result.returncode == 2, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "input" and "'Declaration Id' for declaration_id" in error["message"]
    assert "did you mean 'Declaration ID'" in error["message"]
    assert not list(tmp_path.rglob("*.db")) and len(result.stderr.strip().splitlines()) == 1


def test_usage_errors_without_json_are_clicks_own(tmp_path):
    result = _cli("ingest", "nope.csv", home=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "Usage: aduana ingest" in result.stderr and "does not exist" in result.stderr


def test_flags_read_as_flags_in_help(tmp_path):
    text = _cli("ingest", "--help", home=tmp_path).stdout
    assert "--json" in text and "<bool>" not in text


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    """The CLI in this process, on a home of its own, with no watchdog (it would watch pytest)."""
    monkeypatch.setenv("ADUANA_CLI_RUN", "in-process")
    monkeypatch.setenv("ADUANA_HOME", str(tmp_path / "home"))
    return CliRunner()


@pytest.mark.parametrize(("args", "says"), [
    (("ratings", "--entity", "foo"), "'foo' is not one of importer, declarant"),
    (("audit", "--period", "2024-13"), "use START:END dates, a month (2024-11) or a year (2024)"),
    (("audit", "--period", "2024-12-01:2024-01-01"), "the end is before the start"),
    (("train", "--tune", "--budget", "xyz"), "'xyz': give a duration such as 90s, 10m or 1h"),
    (("score", "{export}", "--out", "{tmp}/lanes.xlsx"), "lanes.xlsx: give the score output a suffix it is written in"),
])
def test_arguments_click_can_check_are_usage_errors_before_any_flow(runner, tmp_path, monkeypatch, args, says):
    # Given a command line with one value its option cannot take (and no way to start a Prefect server)
    export = tmp_path / "declarations.csv"
    export.write_text(EXPORT)
    monkeypatch.setattr("flows.orchestration.runtime.connect", lambda settings: pytest.fail("a flow would start"))
    # When it is parsed
    result = runner.invoke(app, [a.format(export=export, tmp=tmp_path) for a in args])
    # Then it is Click's usage error, naming the option's problem
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split()), result.output


def test_ingest_json_has_one_shape_for_one_file_or_several(runner, tmp_path, monkeypatch):
    export = tmp_path / "declarations.csv"
    export.write_text("declaration_id,declaration_date,importer_id,hs_code,origin_country,declared_value\n"
                      "A-1,2024-02-03,IMP9,870323,CN,10\n")
    summary = {"source": str(export), "kind": "declarations", "read": 1, "stored": 1, "quarantined": 0,
               "duplicates": 0, "reasons": {}}
    monkeypatch.setenv("ADUANA_PREFECT_SERVER", "ephemeral")  # connect() then starts nothing
    monkeypatch.setattr("flows.ingest.customs_ingest", lambda paths, kind, mapping: [summary] * len(paths))
    for files in ([export], [export, export]):
        result = runner.invoke(app, ["ingest", *map(str, files), "--json"])
        assert result.exit_code == 0, result.output
        shown = json.loads(result.stdout)
        assert shown["files"] == [summary] * len(files)
        assert {k: shown[k] for k in ("read", "stored", "quarantined", "duplicates")} == \
            {"read": len(files), "stored": len(files), "quarantined": 0, "duplicates": 0}
