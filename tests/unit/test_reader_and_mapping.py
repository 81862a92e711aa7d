"""Files that are not data are refused with a clear message; foreign layouts map without code changes."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.errors import UserError
from features.intake.batch import prepare_batch
from features.intake.mapping import ColumnMapping, apply_mapping, load_mapping, resolve_kind
from features.intake.reader import read_raw

FOREIGN_MAPPING = """
kind: declarations
columns:
  declaration_id: "Declaration ID"
  declaration_date: "Date"
  importer_id: "Importer ID"
  hs_code: "HS6 Code"
  origin_country: "Country of Origin"
  declared_value: "Item Price"
  office_id: "Office"
labels:
  fraud: "Fraud"
  revenue: "Recovered"
extra_categorical: ["Tax Type"]
extra_numeric: ["Gross Mass"]
date_format: "%d/%m/%Y"
hs_code_digits: 6
decimal: ","
delimiter: ";"
"""


def _foreign_export(path: Path) -> Path:
    """A national export: its own names, day-first dates, HS codes that lost their zeros, decimal commas."""
    path.write_text(
        "Declaration ID;Date;Importer ID;HS6 Code;Country of Origin;Item Price;Office;Fraud;Recovered;Tax Type;Gross Mass;Remarks\n"
        "A-1;03/02/2024;IMP9;10121;CN;1234,50;BOG;1;300,25;FTA;12,5;urgent\n"
        "A-2;04/02/2024;IMP9;870323;JP;25000;CTG;;;MFN;1500;\n"
        "A-3;31/02/2024;IMP8;90111;BR;10;CTG;0;0;MFN;1;\n"
    )
    return path


def test_foreign_export_ingests_through_a_mapping_alone(tmp_path):
    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text(FOREIGN_MAPPING)
    batch = prepare_batch(_foreign_export(tmp_path / "export.csv"), mapping=load_mapping(mapping_path))
    assert batch.kind == "declarations" and batch.read == 3
    valid = batch.valid.set_index("declaration_id")
    assert valid.loc["A-1", "hs_code"] == "010121"
    assert valid.loc["A-1", "declared_value"] == pytest.approx(1234.5)
    assert valid.loc["A-1", "declaration_date"] == pd.Timestamp("2024-02-03")
    assert valid.loc["A-1", "xcat_tax_type"] == "FTA"
    assert valid.loc["A-1", "xnum_gross_mass"] == pytest.approx(12.5)
    assert valid.loc["A-1", "inspected"] == 1 and valid.loc["A-2", "inspected"] == 0
    assert batch.rejected["reason"].tolist() == ["invalid_date"]  # 31 February
    assert batch.unknown_columns == ["Remarks"]


def test_unknown_columns_can_be_refused(tmp_path):
    mapping = load_mapping(_write(tmp_path / "m.yaml", FOREIGN_MAPPING + "unknown_columns: error\n"))
    with pytest.raises(UserError, match="unknown columns.*Remarks"):
        prepare_batch(_foreign_export(tmp_path / "export.csv"), mapping=mapping)


def test_without_hs_code_digits_lost_zeros_are_quarantined_not_guessed(tmp_path):
    mapping = load_mapping(_write(tmp_path / "m.yaml", FOREIGN_MAPPING.replace("hs_code_digits: 6\n", "")))
    batch = prepare_batch(_foreign_export(tmp_path / "export.csv"), mapping=mapping)
    assert "invalid_hs_code" in batch.rejected["reason"].str.cat(sep=";")


def test_missing_required_column_is_a_clear_error(tmp_path, world):
    path = tmp_path / "declarations.csv"
    world.declarations.head(5).drop(columns=["hs_code"]).to_csv(path, index=False)
    with pytest.raises(UserError, match="lacks required column.*hs_code"):
        prepare_batch(path)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "declarations.csv", "empty"),
        (b"declaration_id,declaration_date\n", "declarations.csv", "no data rows"),
        (b"PK\x03\x04 fake workbook", "declarations.xlsx", "not a CSV or Parquet"),
        (b"\x00\x01\x02binary", "declarations.csv", "binary"),
        (b"not parquet at all", "declarations.parquet", "not a Parquet file"),
        (b"\n\nid\n", "declarations.csv", "first line is empty"),
    ],
)
def test_files_that_are_not_data_are_refused(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_raw(path)


def test_utf16_is_text_not_binary(tmp_path):
    path = tmp_path / "declarations.csv"
    path.write_bytes("hs_code,value\n010121,1\n".encode("utf-16"))
    with pytest.raises(UserError, match="UTF-16 text.*set encoding: utf-16 in the mapping"):
        read_raw(path)
    assert read_raw(path, encoding="utf-16").frame.loc[0, "hs_code"] == "010121"


def test_scoring_reads_refuse_a_ragged_row_naming_its_line(tmp_path):
    # read_raw answers every row or none (scoring owes one output row per input row); ingest quarantines instead
    path = _write(tmp_path / "x.csv", "hs_code,value\n010121,1\n010122\n010123,3\n")
    with pytest.raises(UserError, match="line 3: expected 2 fields, found 1"):
        read_raw(path)


def test_csv_keeps_leading_zeros_and_sniffs_the_delimiter(tmp_path):
    path = _write(tmp_path / "x.csv", "hs_code;value\n010121;1\n")
    frame = read_raw(path).frame
    assert frame.loc[0, "hs_code"] == "010121"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("columns: {hs_cod: HS}\n", "did you mean 'hs_code'"),
        ("colums: {}\n", "colums"),
        ("columns: [a, b\n", "not valid YAML"),
        ("hs_code_digits: 3\n", "hs_code_digits"),
        ("labels: {hs_code: HS}\n", "not a label"),
        ("units: {tax_rat: percent}\n", "units: 'tax_rat' is not a field.*did you mean 'tax_rate'"),
        ("units: {hs_code: percent}\n", "units: 'hs_code' is a text field; units apply to numeric fields only"),
        ("units: {declaration_date: {scale: 10}}\n", "'declaration_date' is a date field"),
        ("units: {fraud: percent}\n", "'fraud' is a flag field"),
        ("units: {tax_rate: percnt}\n", "units: Value error, tax_rate: expected 'percent' or {scale: FACTOR}"),
        ("units: {tax_rate: {scale: 0}}\n", "tax_rate: expected 'percent'.*positive FACTOR"),
        ("units: {tax_rate: {scale: 10, offset: 1}}\n", "tax_rate: expected"),
        ("values: {critcal: {'2': 1}}\n", "values: 'critcal' is not a field or label.*did you mean 'critical'"),
        ("values: {critical: [0, 1]}\n", "critical: expected a mapping of source value to target value"),
        ("values: {critical: {yes: 1}}\n", "critical: key True was read by YAML as a boolean; quote it"),
        ("values: {critical: {2: 1, '2': 0}}\n", "critical: source value '2' is listed twice"),
        ("values: {critical: {'2': [1]}}\n", "critical: the target of '2' must be a single value"),
    ],
)
def test_bad_mappings_are_explained(tmp_path, yaml_text, message):
    raw = pd.DataFrame({"HS": ["1"]})
    with pytest.raises(UserError, match=message):
        apply_mapping(raw, load_mapping(_write(tmp_path / "m.yaml", yaml_text)), "declarations")


def test_a_mapped_column_missing_from_the_file_is_named():
    mapping = ColumnMapping(columns={"hs_code": "HS6 Code"})
    with pytest.raises(UserError, match="'HS6 Code'.*no such column.*did you mean 'HS6 code'"):
        apply_mapping(pd.DataFrame({"HS6 code": ["1"]}), mapping, "declarations")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("declarations_2024.csv", "declarations"), ("manifest.parquet", "manifests"), ("outcomes-w3.csv", "outcomes")],
)
def test_kind_comes_from_the_file_name(name, expected):
    assert resolve_kind(Path(name), None, ColumnMapping()) == expected


def test_an_unrecognisable_file_name_needs_kind():
    with pytest.raises(UserError, match="--kind"):
        resolve_kind(Path("export.csv"), None, ColumnMapping())


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
