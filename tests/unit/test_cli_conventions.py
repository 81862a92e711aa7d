"""The CLI as Click users expect it: bad input exits 2 before any flow starts, --json is JSON even for errors,
and flags read as flags in help."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def _cli(*args: str, home) -> subprocess.CompletedProcess:  # noqa: ANN001
    env = {**os.environ, "ADUANA_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize(("args", "kind", "says"), [
    (("ingest", "nope.csv"), "usage", "does not exist"),
    (("score", "nope.csv", "--out", "x.csv"), "usage", "does not exist"),
    (("audit", "--capacity", "0"), "usage", "--capacity"),
    (("audit", "--period", "last-tuesday"), "input", "--period"),
    (("train", "--tune", "--budget", "soon"), "input", "--budget"),
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


def test_usage_errors_without_json_are_clicks_own(tmp_path):
    result = _cli("ingest", "nope.csv", home=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "Usage: aduana ingest" in result.stderr and "does not exist" in result.stderr


def test_flags_read_as_flags_in_help(tmp_path):
    text = _cli("ingest", "--help", home=tmp_path).stdout
    assert "--json" in text and "<bool>" not in text
