"""features/intake/checked.py: the bad-input catalogue through `read_checked`, and `check_layout` on the header alone.

The bad-input catalogue (tests/data/bad_inputs/): one folder per class of hostile file, its outcome beside it.

Each folder holds an input file and `expected.json` (its README says how to add one). The file goes through
`read_checked`, the one path every reader shares, and either is refused with a UserError holding the expected text
(one line), or is read with the expected counts and reasons, every row valid or quarantined: read = valid +
quarantined.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from features.contract import REASONS
from features.errors import UserError
from features.intake.checked import Checked, check_layout, read_checked
from features.intake.mapping import ColumnMapping, load_mapping
from features.intake.prepared import prepare_batch
from features.intake.reader import read_header
from tests.unit.test_mapping import _foreign_export, _foreign_mapping, _without_columns

CATALOGUE = Path(__file__).parents[1] / "data" / "bad_inputs"
CLASSES = sorted(p for p in CATALOGUE.iterdir() if p.is_dir())
OUTCOME_KEYS = {"read", "valid", "quarantined", "rows", "values", "messages", "conversions"}


def _source(folder: Path, spec: dict, tmp_path: Path) -> Path:
    """The input file; with `generate`, a copy where each token is replaced by `text` repeated `times` times."""
    path = folder / spec["file"]
    if "generate" not in spec:
        return path
    content = path.read_bytes()
    for recipe in spec["generate"]:
        content = content.replace(recipe["token"].encode(), recipe["text"].encode() * recipe["times"])
    generated = tmp_path / spec["file"]
    generated.write_bytes(content)
    return generated


def _check(folder: Path, spec: dict, tmp_path: Path) -> Checked:
    mapping = load_mapping(folder / spec["mapping"]) if "mapping" in spec else None
    return read_checked(_source(folder, spec, tmp_path), spec["kind"], mapping)


def _plain(value: object) -> object:
    """A typed value as expected.json writes it: dates as YYYY-MM-DD, numbers and text as they are."""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return None if pd.isna(value) else value


@pytest.mark.parametrize("folder", CLASSES, ids=[p.name for p in CLASSES])
def test_each_bad_input_class_gets_its_expected_outcome(folder, tmp_path):
    # Given one class of bad input and the outcome written beside it
    spec = json.loads((folder / "expected.json").read_text())
    expect = spec["expect"]
    if "refused" in expect:
        # When it is read, Then the file is refused as a whole, with a one-line message saying why
        with pytest.raises(UserError) as refused:
            _check(folder, spec, tmp_path)
        assert expect["refused"] in str(refused.value) and "\n" not in str(refused.value)
        return
    # When it is read
    checked = _check(folder, spec, tmp_path)
    # Then the counts and reasons are the expected ones, and every row read is valid or quarantined
    reasons = Counter(checked.rejected["reason"].str.split(";").explode())
    assert (checked.read, len(checked.valid), dict(reasons)) == (expect["read"], expect["valid"], expect["quarantined"])
    assert checked.read == len(checked.valid) + len(checked.rejected)
    assert sorted(checked.rejected["row_number"].tolist()) == expect["rows"]
    for column, values in expect.get("values", {}).items():
        assert [_plain(v) for v in checked.valid[column]] == values, column
    for said in expect.get("messages", []):
        assert any(said in message for message in checked.rejected["message"]), (said, checked.rejected["message"])
    assert checked.conversions == expect.get("conversions", [])


@pytest.mark.parametrize("folder", CLASSES, ids=[p.name for p in CLASSES])
def test_each_class_is_described_well_formed(folder):
    # A folder without a readable expected.json, or with an outcome key the test does not check, would pass unseen
    spec = json.loads((folder / "expected.json").read_text())
    assert {"about", "kind", "file", "expect"} <= set(spec) and (folder / spec["file"]).is_file()
    assert "mapping" not in spec or (folder / spec["mapping"]).is_file()
    expect = spec["expect"]
    if "refused" not in expect:
        assert {"read", "valid", "quarantined", "rows"} <= set(expect) <= OUTCOME_KEYS
        assert set(expect["quarantined"]) <= set(REASONS)
        assert sum(expect["quarantined"].values()) == expect["read"] - expect["valid"] == len(expect["rows"])
    else:
        assert set(expect) == {"refused"}


def test_the_header_alone_tells_what_reading_the_file_would_refuse(tmp_path):
    # Given a mapping that does not fit the file (a typo in a required column's name)
    bad = ColumnMapping(columns={"importer_id": "Importer Id"}, delimiter=";")
    export = _foreign_export(tmp_path / "export.csv")
    # Then the header check says exactly what reading the whole file says
    with pytest.raises(UserError) as from_rows:
        read_checked(export, "declarations", bad)
    with pytest.raises(UserError) as from_header:
        check_layout(export, "declarations", bad)
    assert str(from_header.value) == str(from_rows.value) and "did you mean 'Importer ID'" in str(from_header.value)
    parquet = tmp_path / "export.parquet"
    pd.read_csv(export, sep=";", dtype="str").set_index("Declaration ID").to_parquet(parquet)
    assert read_header(parquet) == ["Date", "Importer ID", "HS6 Code", "Country of Origin", "Item Price", "Office",
                                    "Fraud", "Recovered", "Tax Type", "Gross Mass", "Remarks"]
    arrivals = _without_columns(tmp_path / "arrivals.csv", "Fraud", "Recovered")
    assert check_layout(arrivals, None, _foreign_mapping(tmp_path)).notes == \
        prepare_batch(arrivals, mapping=_foreign_mapping(tmp_path)).notes
