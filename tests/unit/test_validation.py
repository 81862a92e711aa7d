"""Row-level validation: every class of bad value is quarantined with its reason code, good rows pass."""
from __future__ import annotations

import pandas as pd
import pytest

from features.intake.mapping import ColumnMapping
from features.intake.validation import check_rows

GOOD = {
    "declaration_id": "D1", "declaration_date": "2024-03-01", "importer_id": "IMP1", "hs_code": "870323",
    "origin_country": "JP", "declared_value": "25000.50", "net_mass_kg": "1400", "inspected": "1", "fraud": "0",
    "revenue": "0", "control_date": "2024-03-05",
}


def _check(**overrides) -> tuple[pd.DataFrame, pd.DataFrame]:
    row = {**GOOD, **overrides}
    checked = check_rows(pd.DataFrame([row], dtype="str"), "declarations", ColumnMapping())
    return checked.valid, checked.rejected


def test_a_good_row_passes_with_canonical_types():
    valid, rejected = _check()
    assert rejected.empty
    assert valid["declared_value"].dtype == "float64"
    assert str(valid["declaration_date"].dtype).startswith("datetime64")
    assert valid["fraud"].dtype == "Int8"
    assert valid.loc[0, "hs_code"] == "870323"


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("declared_value", "abc", "invalid_type"),
        ("declared_value", "-5", "negative_value"),
        ("net_mass_kg", "-0.1", "negative_value"),
        ("declaration_date", "2024-13-45", "invalid_date"),
        ("declaration_date", "yesterday", "invalid_date"),
        ("declaration_date", "2999-01-01", "date_out_of_range"),
        ("declaration_date", "1677-09-21", "date_out_of_range"),  # before what the warehouse can store
        ("control_date", "2999-01-01", "date_out_of_range"),
        ("tax_rate", "-0.05", "negative_value"),
        ("tax_rate", "inf", "non_finite"),
        ("tax_rate", "7.54 %", "invalid_type"),
        ("hs_code", "12", "invalid_hs_code"),
        ("hs_code", "87032", "invalid_hs_code"),
        ("hs_code", "990000", "invalid_hs_code"),
        ("hs_code", "ABCDEF", "invalid_hs_code"),
        ("origin_country", "QQ", "invalid_country_code"),
        ("departure_country", "QQ", "invalid_country_code"),
        ("origin_country", "JPN", "invalid_country_code"),
        ("importer_id", None, "missing_required"),
        ("declared_value", None, "missing_required"),
        ("fraud", "maybe", "invalid_type"),
        ("fraud", "2", "invalid_flag"),
        ("control_date", "2024-02-01", "inconsistent_labels"),
        ("declaration_date", "2023-03-01T25:00:00+05:00", "invalid_date"),
        ("declared_value", "inf", "non_finite"),
        ("declared_value", "1e400", "non_finite"),
        ("net_mass_kg", "-Infinity", "non_finite"),
        ("revenue", "inf", "non_finite"),
        ("declaration_id", "D" * 101, "too_long"),
        ("importer_id", "I" * 1_000_000, "too_long"),
    ],
)
def test_bad_values_are_rejected_with_their_reason(field, value, reason):
    valid, rejected = _check(**{field: value})
    assert valid.empty
    assert rejected.loc[0, "reason"] == reason
    assert field in rejected.loc[0, "message"]


@pytest.mark.parametrize(("overrides", "field", "stored"), [
    ({"tax_rate": "7.54"}, "tax_rate", 7.54),  # a 754 % duty: real tariffs have such lines
    ({"tax_rate": "40"}, "tax_rate", 40.0),
    ({"declaration_date": "1900-01-01", "control_date": "1900-02-01"}, "declaration_date", pd.Timestamp("1900-01-01")),
    ({"declaration_date": "1677-09-22", "control_date": ""}, "declaration_date", pd.Timestamp("1677-09-22")),
], ids=["754-percent", "4000-percent", "1900", "first-storable-day"])
def test_implausible_values_are_stored_not_quarantined(overrides, field, stored):
    # Given values that no constant of the contract may refuse: only the dataset's own history can call them odd
    # When the row is checked
    valid, rejected = _check(**overrides)
    # Then it is a valid row with the value as given (the batch's expectations judge it, as a warning)
    assert rejected.empty, rejected["message"].tolist()
    assert valid.loc[0, field] == stored


def test_contradictory_labels_are_rejected():
    _, rejected = _check(inspected="0", fraud="1")
    assert rejected.loc[0, "reason"] == "inconsistent_labels"
    assert rejected.loc[0, "message"] == "inconsistent labels: fraud=1 but inspected=0"
    _, rejected = _check(fraud="0", revenue="1200")
    assert rejected.loc[0, "reason"] == "inconsistent_labels"
    assert rejected.loc[0, "message"] == "inconsistent labels: revenue 1200.0 > 0 but fraud=0"


def test_outcome_labels_say_which_labels_contradict():
    frame = pd.DataFrame([{"declaration_id": "D1", "fraud": "1", "inspected": "0", "revenue": "5"}], dtype="str")
    rejected = check_rows(frame, "outcomes", ColumnMapping()).rejected
    assert rejected.loc[0, "message"] == "inconsistent labels: fraud=1 but inspected=0"


def test_a_unit_conversion_past_what_a_float_holds_is_non_finite():
    mapping = ColumnMapping(units={"declared_value": {"scale": 1e300}})
    checked = check_rows(pd.DataFrame([{**GOOD, "declared_value": "1e10"}], dtype="str"), "declarations", mapping)
    assert checked.valid.empty and checked.rejected.loc[0, "reason"] == "non_finite"


@pytest.mark.parametrize(("value", "day"), [("2023-03-01T02:00:00+05:00", "2023-02-28"), ("2023-03-01 18:45", "2023-03-01")])
def test_a_datetime_is_the_day_in_utc(value, day):
    valid, rejected = _check(declaration_date=value, control_date="2024-03-05")
    assert rejected.empty and valid.loc[0, "declaration_date"] == pd.Timestamp(day)


def test_text_is_normalised_before_the_checks():
    valid, rejected = _check(declaration_id="\u200bD1\ufeff", importer_id="ＩＭＰ１", origin_country="ｊｐ")
    assert rejected.empty
    assert valid.loc[0, ["declaration_id", "importer_id", "origin_country"]].tolist() == ["D1", "IMP1", "JP"]


def test_a_row_with_several_problems_lists_them_all():
    _, rejected = _check(hs_code="12", origin_country="QQ", declared_value="-1")
    assert set(rejected.loc[0, "reason"].split(";")) == {"invalid_hs_code", "invalid_country_code", "negative_value"}
    assert rejected.loc[0, "message"].count(";") == 2


def test_zero_value_is_legal():
    valid, rejected = _check(declared_value="0")
    assert rejected.empty and valid.loc[0, "declared_value"] == 0


def test_namibia_is_a_country_not_a_missing_value():
    valid, rejected = _check(origin_country="NA")
    assert rejected.empty and valid.loc[0, "origin_country"] == "NA"


@pytest.mark.parametrize("field", ["origin_country", "departure_country"])
@pytest.mark.parametrize("code", ["ZZ", "XX", "XZ", " zz "])
def test_unknown_country_codes_are_country_values_of_their_own(field, code):
    # Given a declaration whose country is ISO 3166's user-assigned code for "unknown"
    # When it is checked
    valid, rejected = _check(**{field: code})
    # Then it is kept, as that code
    assert rejected.empty
    assert valid.loc[0, field] == code.strip().upper()


def test_the_api_accepts_what_files_accept():
    from features.contract import ASSIGNED_COUNTRIES, ISO_COUNTRIES, UNKNOWN_COUNTRY_CODES

    assert {"ZZ", "XX", "XZ"} == UNKNOWN_COUNTRY_CODES
    assert ISO_COUNTRIES == ASSIGNED_COUNTRIES | UNKNOWN_COUNTRY_CODES
    assert "QQ" not in ISO_COUNTRIES


def test_codes_are_normalised():
    valid, _ = _check(origin_country=" jp ", hs_code="8703.23")
    assert valid.loc[0, "origin_country"] == "JP"
    assert valid.loc[0, "hs_code"] == "870323"


def test_fraud_without_inspected_column_counts_as_inspected():
    row = {k: v for k, v in GOOD.items() if k != "inspected"}
    frame = pd.DataFrame([row, {**row, "declaration_id": "D2", "fraud": None, "revenue": None, "control_date": None}],
                         dtype="str")
    valid = check_rows(frame, "declarations", ColumnMapping()).valid
    assert valid["inspected"].tolist() == [1, 0]


def test_only_bad_rows_are_rejected_and_positions_are_kept():
    frame = pd.DataFrame([GOOD, {**GOOD, "declaration_id": "D2", "hs_code": "1"}, {**GOOD, "declaration_id": "D3"}],
                         dtype="str")
    checked = check_rows(frame, "declarations", ColumnMapping())
    assert checked.valid["declaration_id"].tolist() == ["D1", "D3"]
    assert checked.rejected.index.tolist() == [1]


@pytest.mark.parametrize(
    ("kind", "row", "reason"),
    [
        ("manifests", {"bill_of_lading": "B1", "port_of_loading": "shanghai", "gross_weight_kg": "10",
                       "arrival_date": "2024-01-01"}, "invalid_code"),
        ("manifests", {"bill_of_lading": "B1", "port_of_loading": "CNSHA", "gross_weight_kg": "-10",
                       "arrival_date": "2024-01-01"}, "negative_value"),
        ("traders", {"importer_id": "I1", "registration_date": "2010-01-01", "credit_rating": "ZZZ"}, "invalid_code"),
        ("traders", {"importer_id": "I1", "registration_date": "2010-01-01", "prior_violations": "1.5"}, "invalid_type"),
        ("traders", {"importer_id": "I1", "registration_date": "2010-01-01", "prior_violations": str(2**63)},
         "out_of_range"),
        ("manifests", {"bill_of_lading": "B1", "port_of_loading": "CNSHA", "gross_weight_kg": "10",
                       "arrival_date": "2024-01-01", "container_count": "1e30"}, "out_of_range"),
        ("traders", {"importer_id": "I1", "registration_date": "2999-01-01"}, "date_out_of_range"),
        ("manifests", {"bill_of_lading": "B1", "port_of_loading": "CNSHA", "gross_weight_kg": "10",
                       "arrival_date": "1677-09-21"}, "date_out_of_range"),
        ("outcomes", {"declaration_id": "D1", "fraud": None}, "missing_required"),
        ("outcomes", {"declaration_id": "D1", "fraud": "1", "revenue": "-3"}, "negative_value"),
    ],
)
def test_other_kinds_have_their_own_rules(kind, row, reason):
    checked = check_rows(pd.DataFrame([row], dtype="str"), kind, ColumnMapping())
    assert checked.rejected.loc[0, "reason"] == reason


@pytest.mark.parametrize(("kind", "row"), [
    ("traders", {"importer_id": "I1", "registration_date": "1780-05-01"}),  # old firms exist
    ("manifests", {"bill_of_lading": "B1", "port_of_loading": "CNSHA", "gross_weight_kg": "10",
                   "arrival_date": str((pd.Timestamp.now() + pd.Timedelta(days=20)).date())}),  # a pre-arrival manifest
])
def test_other_kinds_store_what_is_only_implausible(kind, row):
    checked = check_rows(pd.DataFrame([row], dtype="str"), kind, ColumnMapping())
    assert checked.rejected.empty, checked.rejected["message"].tolist()
    assert len(checked.valid) == 1

