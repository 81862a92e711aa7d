"""The mapping's conversions, applied with the row checks (features/intake/validation.py `recode_values`,
`convert_units`, `check_rows`): percent rates, scaled amounts, recoded codes and the decimal comma, listed in the
batch and the ingest summary."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import UserError
from features.intake.mapping import ColumnMapping, Scale, load_mapping
from features.intake.prepared import prepare_batch
from features.intake.validation import check_rows, convert_units, recode_values
from features.warehouse import Warehouse
from tests.unit.test_mapping import _write

GOOD = {
    "declaration_id": "D1", "declaration_date": "2024-03-01", "importer_id": "IMP1", "hs_code": "870323",
    "origin_country": "JP", "declared_value": "25000.50",
}


def _rows(*overrides: dict) -> pd.DataFrame:
    return pd.DataFrame([{**GOOD, "declaration_id": f"D{i}", **o} for i, o in enumerate(overrides)], dtype="str")


def test_percent_turns_a_rate_into_the_contracts_fraction():
    # Given tax rates in percent (8.0 means 8 %)
    mapping = ColumnMapping(units={"tax_rate": "percent"})
    # When the rows are checked
    checked = check_rows(_rows({"tax_rate": "8.0"}, {"tax_rate": "0"}, {"tax_rate": "12.5"}), "declarations", mapping)
    # Then the rates are fractions, and the conversion is reported
    assert checked.rejected.empty
    assert checked.valid["tax_rate"].tolist() == pytest.approx([0.08, 0.0, 0.125])
    assert checked.conversions == ["tax_rate: percent → fraction (÷100) on 3 values"]


def test_without_percent_a_percent_rate_is_read_as_a_fraction():
    # an 800 % duty is implausible, not impossible: the batch's expectations warn about it (no cap quarantines it)
    checked = check_rows(_rows({"tax_rate": "8.0"}), "declarations", ColumnMapping())
    assert checked.rejected.empty and checked.valid["tax_rate"].tolist() == [8.0]
    assert checked.conversions == []


def test_a_754_percent_duty_in_percent_is_kept():
    checked = check_rows(_rows({"tax_rate": "754"}), "declarations", ColumnMapping(units={"tax_rate": "percent"}))
    assert checked.rejected.empty and checked.valid["tax_rate"].tolist() == pytest.approx([7.54])


def test_units_apply_after_parsing_and_before_the_checks():
    # Given decimal commas and a negative percent rate (still negative as a fraction)
    mapping = ColumnMapping(units={"tax_rate": "percent"}, decimal=",")
    comma = {"declared_value": "25000,50"}
    checked = check_rows(_rows({"tax_rate": "8,5", **comma}, {"tax_rate": "-800", **comma}, {"tax_rate": "", **comma}),
                         "declarations", mapping)
    # Then the comma value is parsed then converted, the negative one is still caught, and the empty one stays empty
    assert checked.valid.set_index("declaration_id").loc["D0", "tax_rate"] == pytest.approx(0.085)
    assert checked.rejected["reason"].tolist() == ["negative_value"]
    assert checked.rejected.index.tolist() == [1]
    assert checked.valid.set_index("declaration_id")["tax_rate"].isna().tolist() == [False, True]
    assert checked.conversions == ["declared_value: decimal comma (1.234,5 → 1234.5) on 3 values",
                                   "tax_rate: decimal comma (1.234,5 → 1234.5) on 1 values",
                                   "tax_rate: percent → fraction (÷100) on 2 values"]


@pytest.mark.parametrize(("factor", "raw", "expected"), [(1000, "12.5", 12_500.0), (0.001, "2500", 2.5)])
def test_scale_multiplies_values(factor, raw, expected):
    mapping = ColumnMapping.model_validate({"units": {"declared_value": {"scale": factor}}})
    checked = check_rows(_rows({"declared_value": raw}), "declarations", mapping)
    assert checked.valid.loc[0, "declared_value"] == pytest.approx(expected)
    assert checked.conversions == [f"declared_value: scaled ×{factor:g} on 1 values"]


def test_units_read_from_yaml(tmp_path):
    mapping = load_mapping(_write(tmp_path / "m.yaml", "units:\n  tax_rate: percent\n  net_mass_kg: {scale: 1000}\n"))
    assert mapping.units == {"tax_rate": "percent", "net_mass_kg": Scale(scale=1000)}


def test_a_unit_for_a_field_the_file_lacks_is_reported_not_fatal():
    typed, notes = convert_units(_rows({}), "declarations", ColumnMapping(units={"tax_rate": "percent"}))
    assert "tax_rate" not in typed.columns
    assert notes == ["tax_rate: percent → fraction (÷100) in the mapping, but the file has no tax_rate column"]


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (ColumnMapping(units={"tax": "percent"}), "units: 'tax' is not a field of declarations"),
        (ColumnMapping(units={"origin_country": "percent"}), "units: 'origin_country' is a text field"),
        (ColumnMapping(units={"quantity": "percent"}, kind="traders"), "units: 'quantity' is not a field of traders"),
        (ColumnMapping(values={"fruad": {"1": 1}}), "values: 'fruad' is not a field.*did you mean 'fraud'"),
    ],
)
def test_check_rows_refuses_bad_options_too(mapping, message):
    # Given a mapping with a bad option, used without apply_mapping (as the API does with canonical requests)
    kind = mapping.kind or "declarations"
    rows = _rows({}) if kind == "declarations" else pd.DataFrame([{"importer_id": "I1", "registration_date": "2010-01-01"}])
    # Then check_rows refuses it, naming the field
    with pytest.raises(UserError, match=message):
        check_rows(rows, kind, mapping)


# --- values ------------------------------------------------------------------------------------------------------


def test_values_recode_a_label_before_the_flag_check():
    # Given a 0/1/2 critical label where 2 means critical
    mapping = ColumnMapping(values={"critical": {"0": 0, "1": 0, "2": 1}})
    rows = _rows({"fraud": "1", "critical": "2"}, {"fraud": "1", "critical": "1"}, {"fraud": "0", "critical": "0"},
                 {"fraud": "1", "critical": " 2 "})
    # When checked
    checked = check_rows(rows, "declarations", mapping)
    # Then it is the contract's 0/1, and the recode is reported by value with its row counts
    assert checked.rejected.empty
    assert checked.valid["critical"].tolist() == [1, 0, 0, 1]
    assert checked.conversions == ["critical: recoded 1 → 0 on 1 row, 2 → 1 on 2 rows"]


def test_values_recode_a_text_field():
    mapping = ColumnMapping(values={"transport_mode": {"10": "sea", "40": "air"}})
    checked = check_rows(_rows({"transport_mode": "10"}, {"transport_mode": "40"}, {"transport_mode": "10"}),
                         "declarations", mapping)
    assert checked.valid["transport_mode"].tolist() == ["sea", "air", "sea"]
    assert checked.conversions == ["transport_mode: recoded 10 → sea on 2 rows, 40 → air on 1 row"]


def test_unlisted_values_pass_unchanged_and_are_still_checked():
    # Given a recode that does not list 3 (critical) nor 20 (transport)
    mapping = ColumnMapping(values={"critical": {"2": 1}, "transport_mode": {"10": "sea"}})
    rows = _rows({"critical": "3", "transport_mode": "20"}, {"critical": "0", "transport_mode": "20"})
    # When checked
    checked = check_rows(rows, "declarations", mapping)
    # Then 3 is still not a flag, 0 and the unknown transport code pass as they were
    assert checked.rejected["reason"].tolist() == ["invalid_flag"]
    assert "critical '3'" in checked.rejected["message"].iloc[0]
    assert checked.valid["critical"].tolist() == [0]
    assert checked.valid["transport_mode"].tolist() == ["20"]
    assert checked.conversions == ["critical: recoded 2 → 1 on 0 rows", "transport_mode: recoded 10 → sea on 0 rows"]


def test_yaml_int_and_float_keys_mean_their_text(tmp_path):
    # Given a mapping file whose keys YAML reads as numbers
    mapping = load_mapping(_write(tmp_path / "m.yaml", "values:\n  critical: {0: 0, 1: 0, 2.0: 1}\n"))
    # Then they match the text of the values
    assert mapping.values == {"critical": {"0": 0, "1": 0, "2": 1}}
    checked = check_rows(_rows({"critical": "2"}, {"critical": "1"}), "declarations", mapping)
    assert checked.valid["critical"].tolist() == [1, 0]


def test_a_float_column_matches_integer_keys():
    # Given critical read as floats (Parquet, or a spreadsheet export), with a gap
    rows = _rows({}, {}, {}).assign(critical=[2.0, 1.0, np.nan])
    mapping = ColumnMapping(values={"critical": {0: 0, 1: 0, 2: 1}})
    # When recoded
    recoded, notes = recode_values(rows, "declarations", mapping)
    # Then 2.0 matched "2", the gap stays empty, and the input frame is untouched
    assert recoded["critical"].tolist()[:2] == [1, 0] and pd.isna(recoded["critical"].iloc[2])
    assert rows["critical"].tolist()[:2] == [2.0, 1.0]
    assert notes == ["critical: recoded 1 → 0 on 1 row, 2 → 1 on 1 row"]
    assert check_rows(rows, "declarations", mapping).valid["critical"].tolist()[:2] == [1, 0]


def test_a_parquet_file_recodes_like_a_csv(tmp_path):
    frame = _rows({}, {}).assign(critical=[2.0, 0.0], fraud=[1.0, 0.0], declared_value=[10.0, 20.0])
    frame.to_parquet(tmp_path / "declarations.parquet", index=False)
    batch = prepare_batch(tmp_path / "declarations.parquet", mapping=ColumnMapping(values={"critical": {"2": 1}}))
    assert batch.valid["critical"].tolist() == [1, 0]
    assert batch.conversions == ["critical: recoded 2 → 1 on 1 row"]


def test_numeric_targets_are_numbers_whatever_the_files_decimal_mark():
    # Given decimal commas and a word recoded to a YAML number
    mapping = ColumnMapping(decimal=",", values={"tax_rate": {"exempt": 0, "reduced": 0.05}})
    rows = _rows({"tax_rate": "exempt"}, {"tax_rate": "reduced"}, {"tax_rate": "0,15"}).assign(declared_value="250,5")
    # Then the target is not re-read with the comma rule, and the file's own values still are
    checked = check_rows(rows, "declarations", mapping)
    assert checked.valid["tax_rate"].tolist() == pytest.approx([0.0, 0.05, 0.15])


def test_a_null_target_empties_the_value():
    # Given "-" meaning "not controlled" in the fraud column
    mapping = ColumnMapping(values={"fraud": {"-": None}})
    checked = check_rows(_rows({"fraud": "-"}, {"fraud": "1"}), "declarations", mapping)
    # Then the row is unlabelled, not rejected
    assert checked.rejected.empty
    assert pd.isna(checked.valid["fraud"].iloc[0]) and checked.valid["inspected"].tolist() == [0, 1]
    assert checked.conversions == ["fraud: recoded - → (empty) on 1 row"]


def test_recodes_come_before_units():
    mapping = ColumnMapping(values={"tax_rate": {"std": "19"}}, units={"tax_rate": "percent"})
    checked = check_rows(_rows({"tax_rate": "std"}, {"tax_rate": "5"}), "declarations", mapping)
    assert checked.valid["tax_rate"].tolist() == pytest.approx([0.19, 0.05])
    assert checked.conversions == ["tax_rate: recoded std → 19 on 1 row", "tax_rate: percent → fraction (÷100) on 2 values"]


def test_identity_recodes_are_not_listed_as_changes():
    _, notes = recode_values(_rows({"fraud": "0"}), "declarations", ColumnMapping(values={"fraud": {"0": 0}}))
    assert notes == ["fraud: every listed value maps to itself"]


# --- decimal: "," -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "stored"), [
    ("1234,5", 1234.5), ("1.234,5", 1234.5), ("1.234.567", 1234567.0), ("-1.017", None), ("1,5e3", 1500.0),
    ("1017", 1017.0),
    ("1.017", 1017.0),  # three digits after a single dot: a thousands separator, as the setting says
    ("1017.0", "refused"), ("3.5", "refused"), ("0.500", "refused"), ("1.0170", "refused"), ("1,017.5", "refused"),
    ("1.2.3", "refused"), ("1.5e3", "refused"),
])
def test_a_decimal_comma_never_multiplies_a_decimal_point(value, stored):
    # Given a mapping with decimal: "," and a value that may be written with a decimal point instead
    checked = check_rows(_rows({"declared_value": value}), "declarations", ColumnMapping(decimal=","))
    # Then a '.' is read only as a thousands separator (groups of three); any other '.' is refused, naming the
    # setting, rather than dropped (1017.0 would be 10170)
    if stored == "refused":
        assert checked.valid.empty and checked.rejected["reason"].tolist() == ["invalid_type"]
        assert checked.rejected["message"].iloc[0] == (
            f"declared_value {value!r}: a decimal point, but the mapping sets decimal: ',' (a '.' is read only as a "
            "thousands separator, as in 1.017,5)")
    elif stored is None:
        assert checked.rejected["reason"].tolist() == ["negative_value"]
    else:
        assert checked.rejected.empty and checked.valid["declared_value"].tolist() == [stored]


def test_the_decimal_comma_is_listed_among_the_conversions(tmp_path):
    # Given a decimal-comma export
    path = _write(tmp_path / "declarations.csv",
                  "declaration_id;declaration_date;importer_id;hs_code;origin_country;declared_value;net_mass_kg\n"
                  "D1;2024-03-01;I1;870323;JP;1.234,50;12\n"
                  "D2;2024-03-02;I1;870323;JP;99;1017.0\n")
    # When prepared with decimal: ","
    batch = prepare_batch(path, mapping=ColumnMapping(decimal=","))
    # Then the summary says which fields the setting converted, and the row it would have multiplied is refused
    assert batch.conversions == ["declared_value: decimal comma (1.234,5 → 1234.5) on 1 values"]
    assert batch.valid["declared_value"].tolist() == [1234.5]
    assert batch.rejected["row_number"].tolist() == [2] and "decimal: ','" in batch.rejected["message"].iloc[0]
    # and numbers stored as numbers (Parquet floats) are neither converted nor listed
    typed = _rows({"declared_value": "1.234,5"}).assign(net_mass_kg=[1.5])
    checked = check_rows(typed, "declarations", ColumnMapping(decimal=","))
    assert checked.valid[["declared_value", "net_mass_kg"]].values.tolist() == [[1234.5, 1.5]]
    assert checked.conversions == ["declared_value: decimal comma (1.234,5 → 1234.5) on 1 values"]


# --- conversions reach the batch and the ingest summary ------------------------------------------------------------


def test_conversions_are_listed_in_the_batch_and_the_ingest_summary(tmp_path):
    # Given a CSV with percent rates and a 0/1/2 critical label, and a mapping that says so
    path = _write(tmp_path / "declarations.csv",
                  "declaration_id,declaration_date,importer_id,hs_code,origin_country,declared_value,tax_rate,fraud,critical\n"
                  "D1,2024-03-01,I1,870323,JP,100,8,1,2\n"
                  "D2,2024-03-02,I1,870323,ZZ,100,0,1,1\n"
                  "D3,2024-03-03,I2,870323,CN,100,,0,0\n")
    mapping = load_mapping(_write(tmp_path / "m.yaml",
                                  "units: {tax_rate: percent}\nvalues:\n  critical: {0: 0, 1: 0, 2: 1}\n"))
    # When prepared and stored
    batch = prepare_batch(path, mapping=mapping)
    summary = Warehouse(tmp_path / "w.duckdb").store(batch)
    # Then both list the conversions, and --json shows them
    expected = ["critical: recoded 1 → 0 on 1 row, 2 → 1 on 1 row", "tax_rate: percent → fraction (÷100) on 2 values"]
    assert batch.conversions == expected
    assert summary.conversions == expected
    assert summary.to_dict()["conversions"] == expected
    assert summary.stored == 3 and summary.quarantined == 0


def test_without_a_mapping_nothing_is_converted(tmp_path):
    path = _write(tmp_path / "declarations.csv", ",".join(GOOD) + "\n" + ",".join(GOOD.values()) + "\n")
    batch = prepare_batch(path)
    assert batch.conversions == []
    assert Warehouse(tmp_path / "w.duckdb").store(batch).conversions == []
