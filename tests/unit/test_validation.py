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



# --- text no field may hold, exact whole numbers, values shown as given (issue 19) ---------------------------------


@pytest.mark.parametrize(("field", "value", "said"), [
    ("importer_id", "IMP\x001", "U+0000 at position 4"),
    ("origin_country", "J\x01P", "U+0001"),
    ("declaration_id", "D1\x1b[0m", "U+001B"),
    ("hs_code", "870323\x7f", "U+007F"),
    ("importer_id", "IMP\x851", "U+0085"),  # a C1 control (NEL), as latin-1 decodes byte 0x85
    ("declared_value", "1\x000", "U+0000"),  # a number field: the text is refused before it is read as a number
    ("declaration_date", "2024-03-01\x00", "U+0000"),
    ("fraud", "0\x00", "U+0000"),
], ids=["nul-in-id", "soh-in-country", "escape-in-id", "del-in-hs", "c1-in-id", "nul-in-number", "nul-in-date",
        "nul-in-flag"])
def test_control_characters_are_invalid_text_in_every_field(field, value, said):
    valid, rejected = _check(**{field: value})
    assert valid.empty and rejected.loc[0, "reason"] == "invalid_text"
    message = rejected.loc[0, "message"]
    assert message.startswith(f"{field} {value!r}: ") and said in message  # escaped by repr: readable, one line
    assert not any(ch in message for ch in "\x00\x01\x1b\x7f\x85")


def test_tabs_and_line_breaks_are_text_and_extras_are_checked_too():
    frame = pd.DataFrame([{**GOOD, "xcat_remarks": "two\nlines\tand a tab"},
                          {**GOOD, "declaration_id": "D2", "xcat_remarks": "bell\x07"}], dtype="str")
    checked = check_rows(frame, "declarations", ColumnMapping())
    assert checked.valid["xcat_remarks"].tolist() == ["two\nlines\tand a tab"]
    assert checked.rejected["reason"].tolist() == ["invalid_text"]
    assert "xcat_remarks 'bell\\x07'" in checked.rejected["message"].iloc[0]


@pytest.mark.parametrize(("value", "stored"), [
    ("9007199254740992", 2**53), ("-9007199254740992", None), ("9007199254740993", "out_of_range"),
    ("-9007199254740993", "out_of_range"), ("9007199254740992.5", "out_of_range"), ("9.007199254740993e15", "out_of_range"),
    ("1.0000000000000001", "invalid_type"), ("12.0", 12), ("1e3", 1000), ("+7", 7), ("0012", 12),
])
def test_whole_numbers_are_bounded_exactly_not_after_rounding_to_a_float(value, stored):
    # Given an integer field holding values at and around ±2^53 (9007199254740993 is 9007199254740992 as a float)
    row = {"importer_id": "I1", "registration_date": "2010-01-01", "prior_violations": value}
    # When checked
    checked = check_rows(pd.DataFrame([row], dtype="str"), "traders", ColumnMapping())
    # Then ±2^53 is stored, one past it is out_of_range, and a fraction a float hides is not a whole number
    if stored is None:  # -2^53 is within the bound: only the contract's sign rule refuses it
        assert checked.rejected.loc[0, "reason"] == "negative_value"
    elif isinstance(stored, str):
        assert checked.valid.empty and checked.rejected.loc[0, "reason"] == stored
        assert f"'{value}'" in checked.rejected.loc[0, "message"]
    else:
        assert checked.rejected.empty and checked.valid.loc[0, "prior_violations"] == stored


def test_int64_columns_are_bounded_exactly():
    # Given a Parquet-like int64 column (no text to read): 2^53 + 1 became 2^53 through float64
    frame = pd.DataFrame({"importer_id": ["I1", "I2", "I3"], "registration_date": ["2010-01-01"] * 3,
                          "prior_violations": pd.array([2**53, 2**53 + 1, 2**63 - 1], dtype="int64")})
    checked = check_rows(frame, "traders", ColumnMapping())
    assert checked.valid["prior_violations"].tolist() == [2**53]
    assert checked.rejected["reason"].tolist() == ["out_of_range"] * 2
    assert "'9007199254740993'" in checked.rejected["message"].iloc[0]


@pytest.mark.parametrize(("field", "value", "shown"), [
    ("hs_code", "870323.0", "'870323.0'"),  # parsed as '8703230' (dots dropped), shown as given
    ("hs_code", " 12 ", "' 12 '"),
    ("declared_value", "-5", "'-5'"),  # parsed -5.0
    ("origin_country", "qq", "'qq'"),  # parsed 'QQ'
])
def test_messages_show_the_value_as_given(field, value, shown):
    _, rejected = _check(**{field: value})
    assert rejected.loc[0, "message"].startswith(f"{field} {shown}: ")


def test_a_float_column_of_codes_reads_each_code_on_its_own():
    # Given HS codes a spreadsheet stored as floats, one of them not whole
    frame = pd.DataFrame([GOOD] * 3).assign(declaration_id=["D1", "D2", "D3"], hs_code=[870323.0, 870324.0, 870323.5])
    checked = check_rows(frame, "declarations", ColumnMapping())
    # Then the whole ones are their codes, and only the other one is refused
    assert checked.valid["hs_code"].tolist() == ["870323", "870324"]
    assert checked.rejected["message"].iloc[0].startswith("hs_code '870323.5': ")
