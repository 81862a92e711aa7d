"""features/intake/mapping.py: foreign layouts map without code changes, bad mappings are explained, files without
their label columns read unlabelled (the mapping's conversions: tests/unit/test_validation_conversions.py)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.errors import UserError
from features.intake.checked import read_checked
from features.intake.mapping import ColumnMapping, apply_mapping, load_mapping, resolve_kind
from features.intake.prepared import prepare_batch
from features.intake.records import records_frame
from features.warehouse import Warehouse

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
        ("delimiter: '||'\n", r"delimiter: .*expected one character other than a quote or a line break .*'\|\|'"),
        ("delimiter: ''\n", "delimiter: .*expected one character"),
        ("delimiter: '\"'\n", "delimiter: .*expected one character"),
        ("columns: {declaration_id: HS, importer_id: HS}\n",
         "file column 'HS' is named by columns.declaration_id and columns.importer_id"),
        ("columns: {hs_code: HS}\nextra_numeric: [HS]\n", "file column 'HS' is named by columns.hs_code and extra_numeric"),
        ("labels: {fraud: HS}\nextra_categorical: [HS]\n", "'HS' is named by labels.fraud and extra_categorical"),
        ("columns: {fraud: HS}\nlabels: {fraud: F}\n", "fraud listed under both columns and labels"),
        ("extra_categorical: [HS, hs]\n", r"extra_categorical: columns \['HS', 'hs'\] would all become xcat_hs"),
    ],
)
def test_bad_mappings_are_explained(tmp_path, yaml_text, message):
    raw = pd.DataFrame({"HS": ["1"]})
    with pytest.raises(UserError, match=message):
        apply_mapping(raw, load_mapping(_write(tmp_path / "m.yaml", yaml_text)), "declarations")


def test_a_required_field_listed_as_an_extra_is_named_as_the_mappings_mistake():
    raw = pd.DataFrame({c: ["1"] for c in ["declaration_id", "declaration_date", "importer_id", "hs_code",
                                             "origin_country", "declared_value"]})
    with pytest.raises(UserError, match="hs_code are listed as extras"):
        apply_mapping(raw, ColumnMapping(extra_categorical=["hs_code"]), "declarations")


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


# One mapping per export layout: history, arrivals (no labels yet) and outcomes (id and labels) alike.

def _without_columns(path: Path, *dropped: str) -> Path:
    """The foreign export with some columns taken out, as another file of the same layout."""
    export = pd.read_csv(_foreign_export(path), sep=";", dtype="str", keep_default_na=False)
    export.drop(columns=list(dropped)).to_csv(path, sep=";", index=False)
    return path


def _foreign_mapping(tmp_path: Path) -> ColumnMapping:
    return load_mapping(_write(tmp_path / "mapping.yaml", FOREIGN_MAPPING))


def test_arrivals_without_the_label_columns_are_stored_unlabelled(tmp_path):
    # Given the labelled export's mapping and a file of arrivals in its layout, without the label columns
    arrivals = _without_columns(tmp_path / "arrivals.csv", "Fraud", "Recovered")
    # When it is ingested through the same mapping
    batch = prepare_batch(arrivals, mapping=_foreign_mapping(tmp_path))
    summary = Warehouse(tmp_path / "warehouse.duckdb").store(batch)
    # Then nothing is lost, one line says the labels are absent, and the rows are stored with no label at all
    assert (summary.read, summary.stored, summary.quarantined, summary.duplicates) == (3, 2, 1, 0)
    assert summary.reconciles and summary.to_dict()["notes"] == summary.notes
    [note] = summary.notes
    assert "'Fraud'" in note and "'Recovered'" in note and "unlabelled" in note
    assert not {"inspected", "fraud", "revenue"} & set(batch.valid.columns)
    stored = Warehouse(tmp_path / "warehouse.duckdb").table("declarations")
    assert stored[["inspected", "fraud", "revenue", "critical"]].isna().all().all()  # never "controlled, no fraud"


def test_a_file_with_some_label_columns_keeps_them_and_says_which_are_missing(tmp_path):
    batch = prepare_batch(_without_columns(tmp_path / "partly.csv", "Recovered"), mapping=_foreign_mapping(tmp_path))
    assert batch.notes == ["no 'Recovered' column: revenue left empty on every row"]
    valid = batch.valid.set_index("declaration_id")
    assert valid.loc["A-1", "fraud"] == 1 and valid.loc["A-1", "inspected"] == 1 and "revenue" not in valid


def test_an_absent_inspected_column_beside_fraud_is_taken_from_fraud_and_the_note_says_so(tmp_path):
    # Given a mapping that names an inspected column, and a file of its layout that has fraud but not that column
    mapping = ColumnMapping.model_validate(_foreign_mapping(tmp_path).model_dump() | {
        "labels": {"inspected": "Controlled", "fraud": "Fraud", "revenue": "Recovered"}})
    batch = prepare_batch(_foreign_export(tmp_path / "export.csv"), mapping=mapping)
    # Then inspected follows the contract's rule (a row with a fraud value counts as inspected), and the note says so
    assert batch.notes == ["no 'Controlled' column: inspected taken from fraud (rows with a fraud value count as "
                           "inspected)"]
    valid = batch.valid.set_index("declaration_id")
    assert valid["inspected"].to_dict() == {"A-1": 1, "A-2": 0}
    # and beside another absent label, each gets its own effect in the one line
    partly = prepare_batch(_without_columns(tmp_path / "partly.csv", "Recovered"), mapping=mapping)
    assert partly.notes == ["no 'Controlled', 'Recovered' columns: inspected taken from fraud (rows with a fraud "
                            "value count as inspected); revenue left empty on every row"]
    # without fraud either, the rows are unlabelled, as before
    arrivals = prepare_batch(_without_columns(tmp_path / "arrivals.csv", "Fraud", "Recovered"), mapping=mapping)
    [note] = arrivals.notes
    assert "unlabelled" in note and "inspected" not in arrivals.valid


def test_a_labelled_file_has_no_note(tmp_path):
    assert prepare_batch(_foreign_export(tmp_path / "export.csv"), mapping=_foreign_mapping(tmp_path)).notes == []


def test_a_required_column_missing_beside_absent_labels_is_still_refused_by_name(tmp_path):
    arrivals = _without_columns(tmp_path / "arrivals.csv", "Fraud", "Recovered", "Importer ID")
    with pytest.raises(UserError, match="'Importer ID' for importer_id.*no such column"):
        prepare_batch(arrivals, mapping=_foreign_mapping(tmp_path))


def test_outcomes_in_the_export_layout_go_through_the_same_mapping(tmp_path):
    # Given the declarations' mapping (fields, extras, units the outcomes kind does not have) and an outcomes file
    # in the export's layout: the id, the label columns, and a declaration column that outcomes do not use
    mapping = ColumnMapping.model_validate(_foreign_mapping(tmp_path).model_dump()
                                           | {"units": {"tax_rate": "percent", "revenue": {"scale": 1000}}})
    outcomes = _without_columns(tmp_path / "controls.csv", "Importer ID", "HS6 Code", "Country of Origin",
                                "Item Price", "Office", "Tax Type", "Gross Mass", "Remarks")
    # When it is read as outcomes
    batch = prepare_batch(outcomes, "outcomes", mapping)
    # Then the labels are read as the mapping says, and nothing else of the layout is demanded or called unknown
    valid = batch.valid.set_index("declaration_id")
    assert valid.loc["A-1", "fraud"] == 1 and valid.loc["A-1", "revenue"] == pytest.approx(300_250)
    assert valid.loc["A-1", "inspected"] == 1 and "declaration_date" not in valid
    assert batch.unknown_columns == [] and batch.notes == []
    assert batch.rejected["reason"].tolist() == ["missing_required"]  # no fraud value, so no outcome


def test_outcomes_without_the_fraud_column_are_refused(tmp_path):
    outcomes = _without_columns(tmp_path / "controls.csv", "Fraud")
    with pytest.raises(UserError, match="'Fraud' for fraud, but the file has no such column"):
        prepare_batch(outcomes, "outcomes", _foreign_mapping(tmp_path))


def test_records_without_the_label_columns_read_as_the_file_without_them(tmp_path):
    # Given API records in the export's layout, without its label columns (as arriving declarations are)
    mapping = _foreign_mapping(tmp_path).model_copy(update={"decimal": ".", "delimiter": ","})
    records = [{"Declaration ID": "A-1", "Date": "03/02/2024", "Importer ID": "IMP9", "HS6 Code": "10121",
                "Country of Origin": "CN", "Item Price": 1234.5, "Office": "BOG", "Tax Type": "FTA",
                "Gross Mass": 12.5}]
    path = tmp_path / "arrivals.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    from_records = read_checked(records_frame(records, mapping), "declarations", mapping)
    from_file = read_checked(path, "declarations", mapping)
    # Then they give the file's typed row: unlabelled, not "inspected, no fraud"
    pd.testing.assert_frame_equal(from_records.valid, from_file.valid, check_like=True)
    assert "inspected" not in from_records.valid and from_records.notes == from_file.notes != []


# --- a third-party export, end to end -------------------------------------------------------------------------------

THIRD_PARTY_COLUMNS = [
    "Declaration ID", "Date", "Office ID", "Process Type", "Import Type", "Import Use", "Payment Type",
    "Mode of Transport", "Declarant ID", "Importer ID", "Seller ID", "Courier ID", "HS6 Code", "Country of Departure",
    "Country of Origin", "Tax Rate", "Tax Type", "Country of Origin Indicator", "Net Mass", "Item Price", "Fraud",
    "Critical Fraud",
]
THIRD_PARTY_MAPPING = """
kind: declarations
columns:
  declaration_id: "Declaration ID"
  declaration_date: "Date"
  transport_mode: "Mode of Transport"
  declarant_id: "Declarant ID"
  importer_id: "Importer ID"
  exporter_id: "Seller ID"
  hs_code: "HS6 Code"
  departure_country: "Country of Departure"
  origin_country: "Country of Origin"
  tax_rate: "Tax Rate"
  net_mass_kg: "Net Mass"
  declared_value: "Item Price"
labels:
  fraud: "Fraud"
  critical: "Critical Fraud"
extra_categorical: ["Office ID", "Process Type", "Import Type", "Import Use", "Payment Type", "Courier ID",
                    "Tax Type", "Country of Origin Indicator"]
hs_code_digits: 6
unknown_columns: error
units:
  tax_rate: percent
values:
  critical: {"0": 0, "1": 0, "2": 1}
  transport_mode: {10: sea, 40: air}
"""


def _third_party_export(path: Path, rows: int = 30) -> Path:
    """The layout of a public customs benchmark: numeric HS codes that lost their zeros, rates in percent,
    Critical Fraud 0/1/2 (2 = critical), transport as codes, and ZZ for an unknown origin."""
    hs = ["851712", "10121", "870323", "30490", "620342"]
    records = []
    for i in range(rows):
        critical = (0, 0, 1, 2, 0)[i % 5]
        records.append([
            f"97061800{i:04d}", f"2024-01-{i % 28 + 1:02d}", f"OFF{i % 3}", "B", "11", "21", "11",
            ("10", "40")[i % 2], f"ATEU{i % 4}", f"IQYV{i % 7}", f"SEL{i % 5}", "" if i % 3 else "COUR1",
            hs[i % len(hs)], ("CN", "US", "ZZ")[i % 3] if i % 10 else "ZZ", "ZZ" if i in (4, 17) else ("CN", "DE", "JP")[i % 3],
            ("8.0", "0.0", "13.0", "20.0")[i % 4], ("FEU1", "FCN1")[i % 2], ("E", "G")[i % 2], f"{10 + i}.5",
            f"{1000 + 37 * i}.25", "1" if critical else "0", str(critical),
        ])
    pd.DataFrame(records, columns=THIRD_PARTY_COLUMNS).to_csv(path, index=False)
    return path


def test_a_third_party_export_ingests_whole_through_its_mapping(tmp_path):
    # Given a third-party export and a mapping written for it
    mapping = load_mapping(_write(tmp_path / "mapping.yaml", THIRD_PARTY_MAPPING))
    path = _third_party_export(tmp_path / "export.csv")
    # When it is prepared and stored
    batch = prepare_batch(path, mapping=mapping)
    summary = Warehouse(tmp_path / "w.duckdb").store(batch)
    # Then nothing is quarantined and every value is in the contract's form
    assert batch.rejected.empty, batch.rejected["message"].tolist()
    assert summary.read == 30 and summary.stored == 30 and summary.quarantined == 0 and summary.reconciles
    valid = batch.valid.set_index("declaration_id")
    assert valid.loc["970618000001", "hs_code"] == "010121"
    assert valid.loc["970618000000", "hs_code"] == "851712"
    assert valid.loc["970618000000", "tax_rate"] == pytest.approx(0.08)
    assert (valid["tax_rate"] <= 0.2 + 1e-12).all()
    assert valid.loc[["970618000004", "970618000017"], "origin_country"].tolist() == ["ZZ", "ZZ"]
    assert valid.loc["970618000000", "departure_country"] == "ZZ"
    assert valid["critical"].tolist() == [(0, 0, 0, 1, 0)[i % 5] for i in range(30)]
    assert valid["fraud"].sum() == 12 and valid["inspected"].eq(1).all()
    assert set(valid["transport_mode"]) == {"sea", "air"}
    assert valid.loc["970618000000", "xcat_office_id"] == "OFF0"
    assert valid.loc["970618000000", "xcat_tax_type"] == "FEU1"
    assert summary.conversions == [
        "critical: recoded 1 → 0 on 6 rows, 2 → 1 on 6 rows",
        "transport_mode: recoded 10 → sea on 15 rows, 40 → air on 15 rows",
        "tax_rate: percent → fraction (÷100) on 30 values",
    ]
