"""customs-ingest against a real temporary Prefect API, GX context and DuckDB warehouse."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from features.simulator import write_world
from features.warehouse import Warehouse
from flows import bars
from flows.ingest import customs_ingest, customs_ingest_landing
from flows.settings import Settings
from tests.conftest import write_csv

pytestmark = pytest.mark.integration


def test_the_flow_ingests_all_three_sources_and_publishes_a_summary(prefect_api, world, home, tmp_path, monkeypatch):
    small = world.__class__(world.declarations.head(2000), world.manifests, world.traders, world.truth,
                            world.drift_date)
    paths = write_world(small, tmp_path / "landing", "csv")
    told = []
    monkeypatch.setattr(bars, "advance", lambda what, done, total, **_: told.append((what, done, total)))
    summaries = customs_ingest([str(p) for p in paths.values()])
    assert [(d, t) for w, d, t in told if w == "ingesting declarations.csv"] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    kinds = [s["kind"] for s in summaries]
    assert kinds == ["traders", "manifests", "declarations"]
    for s in summaries:
        assert s["reconciles"] and s["quarantined"] == 0
    counts = Warehouse(Settings().warehouse_path).counts()
    assert counts["declarations"] == 2000
    assert counts["traders"] == len(world.traders)
    assert Settings().data_docs_index.exists()

    async def artifact():
        async with get_client() as client:
            return await client.read_latest_artifacts()
    import asyncio
    latest = {a.key: a for a in asyncio.run(artifact())}
    assert "customs-ingest-summary" in latest
    assert "declarations.csv" in latest["customs-ingest-summary"].data


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture
def cli_env(prefect_api, home) -> dict:
    return {**os.environ, "PREFECT_API_URL": prefect_api, "ADUANA_HOME": str(home)}


def test_cli_ingest_json_summary_and_idempotency(cli_env, declarations_csv):
    first = _cli("ingest", str(declarations_csv), "--json", env=cli_env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert {k: summary[k] for k in ("read", "stored", "quarantined", "duplicates")} == \
        {"read": 500, "stored": 500, "quarantined": 0, "duplicates": 0}
    second = json.loads(_cli("ingest", str(declarations_csv), "--json", env=cli_env).stdout)
    assert (second["stored"], second["duplicates"]) == (0, 500)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [(b"PK\x03\x04", "declarations.xlsx", "not a CSV or Parquet file"), (b"", "declarations.csv", "empty")],
)
def test_cli_errors_are_one_line_without_traceback(cli_env, tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(content)
    result = _cli("ingest", str(path), env=cli_env)
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("aduana: error:")]
    assert len(error_lines) == 1 and message in error_lines[0]
    assert "Traceback" not in result.stderr


def test_cli_generate_writes_the_three_sources(tmp_path, home):
    result = _cli("generate", "--rows", "500", "--seed", "1", "--out", str(tmp_path / "out"), "--json",
                  env={**os.environ, "ADUANA_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    assert set(written) == {"declarations", "manifests", "traders"}
    assert written["declarations"]["rows"] == 500
    assert all(Path(w["path"]).exists() for w in written.values())


def test_every_subcommand_has_help():
    for command in ("generate", "ingest", "train", "evaluate", "promote", "score", "serve", "audit", "ratings", "monitor", "backtest", "schedule", "demo"):
        result = subprocess.run([sys.executable, "-m", "flows.cli", command, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "Usage" in result.stdout


def test_the_landing_flow_ingests_waiting_files_and_files_them_away(prefect_api, world, home, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    write_csv(landing / "traders.csv", world.traders)
    write_csv(landing / "declarations.csv", world.declarations.head(300))
    (landing / "declarations_broken.csv").write_text("declaration_id\n")  # header only: refused whole
    (landing / "notes.txt").write_text("not data")
    result = customs_ingest_landing(folder=str(landing))
    assert [s["kind"] for s in result["ingested"]] == ["traders", "declarations"]
    assert result["ingested"][1]["stored"] == 300
    assert list(result["refused"]) == ["declarations_broken.csv"]
    assert sorted(p.name for p in (landing / "processed").iterdir()) == ["declarations.csv", "traders.csv"]
    assert (landing / "refused" / "declarations_broken.csv.reason.txt").read_text().strip()
    assert (landing / "notes.txt").exists()  # not a data file: left alone
    assert customs_ingest_landing(folder=str(landing))["ingested"] == []
