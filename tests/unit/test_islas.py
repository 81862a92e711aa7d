"""The islas world: a third-party export in its own layout, whose fraud lives in combinations of entities."""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.intake.mapping import load_mapping
from features.intake.prepared import prepare_batch
from features.simulator import simulate_islas, write_islas
from features.simulator.islas import BAD_KINDS, COLUMNS, LABEL_COLUMNS, MAPPING_PATH

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def islas():
    return simulate_islas(30_000, seed=5)


@pytest.fixture(scope="module")
def rows(islas) -> pd.DataFrame:
    """Both files' rows without the injected bad ones, fraud as 0/1 and the HS heading alongside."""
    both = pd.concat([islas.train.assign(file="islas_train.csv"), islas.test.assign(file="islas_test.csv")])
    both["row_number"] = both.groupby("file").cumcount() + 1
    bad = islas.bad_rows.set_index(["file", "row_number"]).index
    clean = both[~both.set_index(["file", "row_number"]).index.isin(bad)].copy()
    clean["heading"] = clean["HS6 Code"].astype(str).str.zfill(6).str[:4]
    return clean


def test_same_seed_same_files_and_another_seed_another_world(tmp_path):
    a, b, c = simulate_islas(3000, seed=11), simulate_islas(3000, seed=11), simulate_islas(3000, seed=12)
    for name in ("train", "test", "arrivals", "bad_rows", "truth"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    pa, pb = write_islas(a, tmp_path / "a"), write_islas(b, tmp_path / "b")
    for name in ("train", "test", "arrivals", "mapping"):
        assert pa[name].read_bytes() == pb[name].read_bytes()
    assert not a.train["Item Price"].equals(c.train["Item Price"])


def test_files_have_the_benchmark_layout(islas, tmp_path):
    paths = write_islas(islas, tmp_path)
    assert {n: p.name for n, p in paths.items()} == {
        "train": "islas_train.csv", "test": "islas_test.csv", "arrivals": "islas_arrivals.csv",
        "mapping": "islas_mapping.yaml"}
    for name in ("train", "test"):
        header = paths[name].read_text().splitlines()[0].split(",")
        assert header == list(COLUMNS)
    # The arrivals are the test file's rows as they arrive: the same lines, less the label columns.
    arrivals = pd.read_csv(paths["arrivals"], dtype=str, keep_default_na=False)
    test = pd.read_csv(paths["test"], dtype=str, keep_default_na=False)
    assert list(arrivals.columns) == [c for c in COLUMNS if c not in LABEL_COLUMNS] and set(LABEL_COLUMNS) < set(COLUMNS)
    pd.testing.assert_frame_equal(arrivals, test.drop(columns=list(LABEL_COLUMNS)))
    assert paths["mapping"].read_text() == MAPPING_PATH.read_text()
    raw = pd.read_csv(paths["train"], dtype=str, keep_default_na=False)
    assert "inspected" not in {c.lower() for c in raw.columns}  # every row was inspected
    short = raw["HS6 Code"].str.fullmatch(r"\d{5}")
    assert short.any()  # chapters 01-09 lost their leading zero, as in a spreadsheet export


def test_codes_units_and_labels(rows):
    assert rows["Tax Rate"].between(0, 100).all() and rows["Tax Rate"].max() > 1  # percent, not a fraction
    assert set(rows["Mode of Transport"]) <= {10, 20, 30, 40, 50}
    assert pd.Series(rows["Office ID"]).astype(str).str.fullmatch(r"\d{3}").all()
    assert rows["HS6 Code"].str.fullmatch(r"\d{5,6}").all()
    assert (rows["Net Mass"] > 0).all() and (rows["Item Price"] >= 0).all()
    assert set(rows["Fraud"]) == {0, 1}
    assert set(rows["Critical Fraud"]) == {0, 1, 2}
    assert (rows.loc[rows["Fraud"] == 0, "Critical Fraud"] == 0).all()  # critical only where fraud
    assert 0.17 <= rows["Fraud"].mean() <= 0.23
    unknown = (rows["Country of Origin"] == "ZZ").sum()
    assert 3 <= unknown <= 0.002 * len(rows)  # a few dozen per 50k rows
    assert rows["Declaration ID"].is_unique


def test_train_is_the_earlier_period_and_test_the_last_quarter(islas, rows):
    train = pd.to_datetime(rows.loc[rows["file"] == "islas_train.csv", "Date"], format="%Y-%m-%d")
    test = pd.to_datetime(rows.loc[rows["file"] == "islas_test.csv", "Date"], format="%Y-%m-%d")
    assert train.max() < islas.test_start <= test.min()
    assert (test.max() - test.min()).days >= 85
    assert 0.75 <= len(islas.train) / (len(islas.train) + len(islas.test)) <= 0.88


def _dispersion(rows: pd.DataFrame, by: list[str], min_rows: int = 50) -> float:
    """Row-weighted mean absolute gap between a group's fraud rate and the overall rate (groups of min_rows+)."""
    groups = rows.groupby(by)["Fraud"].agg(["mean", "size"])
    groups = groups[groups["size"] >= min_rows]
    return float(np.average((groups["mean"] - rows["Fraud"].mean()).abs(), weights=groups["size"]))


SINGLES = ["Importer ID", "Declarant ID", "Office ID", "heading", "Country of Origin"]
PAIRS = {"importer × heading": ["Importer ID", "heading"], "declarant × office": ["Declarant ID", "Office ID"],
         "seller × origin": ["Seller ID", "Country of Origin"]}


def test_fraud_lives_in_combinations_not_in_single_entities(rows):
    singles = {c: _dispersion(rows, [c]) for c in SINGLES}
    pairs = {name: _dispersion(rows, cols) for name, cols in PAIRS.items()}
    # Alone, each entity's hit rate is the overall rate up to sampling noise (about 0.03 at 50 rows)...
    assert max(singles.values()) < 0.03, singles
    # ...while the pairs they form are far from it, well beyond that noise.
    for name, cols in PAIRS.items():
        assert pairs[name] > 0.04, pairs
        assert pairs[name] > 2 * max(singles.get(c, 0.0) for c in cols), (pairs, singles)
    assert pairs["importer × heading"] > 0.08, pairs


def test_bad_rows_are_a_handful_of_each_kind(islas):
    bad = islas.bad_rows
    assert len(bad) == round(0.002 * 30_000)
    assert set(bad["kind"]) == set(BAD_KINDS)
    assert sum(islas.injected().values()) == len(bad)
    assert not bad.duplicated(["file", "row_number"]).any()


def test_ingest_with_the_mapping_quarantines_exactly_the_injected_rows(tmp_path):
    world = simulate_islas(3000, seed=2)
    paths = write_islas(world, tmp_path)
    mapping = load_mapping(paths["mapping"])
    for name in ("train", "test"):
        batch = prepare_batch(paths[name], "declarations", mapping)
        expected = world.bad_rows[world.bad_rows["file"] == paths[name].name]
        got = batch.rejected[["row_number", "reason"]].sort_values("row_number").reset_index(drop=True)
        want = expected[["row_number", "reason"]].sort_values("row_number").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
        assert batch.duplicates == 0 and batch.unknown_columns == []
        assert len(batch.valid) + len(batch.rejected) == batch.read == len(getattr(world, name))
        valid = batch.valid
        assert valid["tax_rate"].between(0, 1).all() and valid["tax_rate"].max() > 0.05  # 8.0 became 0.08
        assert set(valid["transport_mode"]) <= {"sea", "rail", "road", "air", "post"}
        assert set(valid["critical"].astype(int)) <= {0, 1} and set(valid["fraud"].astype(int)) == {0, 1}
        assert valid["hs_code"].str.fullmatch(r"\d{6}").all() and valid["hs_code"].str.startswith("0").any()
        assert (valid["inspected"] == 1).all()
    assert sum(len(prepare_batch(paths[n], "declarations", mapping).rejected) for n in ("train", "test")) \
        == len(world.bad_rows)


def test_critical_two_maps_to_critical_and_one_to_not(tmp_path):
    world = simulate_islas(1000, seed=4)
    paths = write_islas(world, tmp_path)
    batch = prepare_batch(paths["train"], "declarations", load_mapping(paths["mapping"]))
    raw = world.train.set_index("Declaration ID")["Critical Fraud"]
    got = batch.valid.set_index("declaration_id")["critical"].astype(int)
    assert (got == (raw.reindex(got.index) == 2).astype(int)).all()


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def test_cli_generates_the_islas_world_with_its_mapping(tmp_path):
    done = _cli("generate", "--world", "islas", "--rows", "1200", "--seed", "3", "--out", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert Path(summary["train"]["path"]).name == "islas_train.csv"
    assert Path(summary["mapping"]["path"]).read_text() == MAPPING_PATH.read_text()
    assert summary["train"]["rows"] + summary["test"]["rows"] == 1200
    assert summary["arrivals"]["rows"] == summary["test"]["rows"]
    assert sum(summary["bad_rows"].values()) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["islas_arrivals.csv", "islas_mapping.yaml", "islas_test.csv",
                                                          "islas_train.csv"]
    refused = _cli("generate", "--world", "islas", "--format", "parquet", "--out", str(tmp_path / "x"))
    assert refused.returncode != 0 and "CSV only" in refused.stderr and "Traceback" not in refused.stderr


def test_the_cli_offers_both_worlds_and_keeps_the_default():
    from flows.cli.data_commands import WorldName, generate

    assert [w.value for w in WorldName] == ["default", "islas"]
    assert inspect.signature(generate).parameters["world_name"].default is WorldName.default
