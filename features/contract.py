"""The data contract: canonical fields per source kind, as pandera models, and the quarantine reason codes.

The pandera models are the single source of truth for types: the parser reads each column's dtype from
them, so a field is declared once.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

Kind = Literal["declarations", "manifests", "traders", "outcomes"]
KINDS: tuple[Kind, ...] = ("traders", "manifests", "declarations", "outcomes")  # the order to ingest in

ASSIGNED_COUNTRIES = frozenset(  # ISO 3166-1 alpha-2 officially assigned codes, and XK (Kosovo)
    ["AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "XK", "YE", "YT", "ZA", "ZM", "ZW"]
)
# ISO 3166-1 leaves AA, QM–QZ, XA–XZ and ZZ to users; customs exports use these three for "country unknown".
# They are country values of their own: a declaration with an unknown origin is data, not a broken row.
UNKNOWN_COUNTRY_CODES = frozenset(["ZZ", "XX", "XZ"])
ISO_COUNTRIES = ASSIGNED_COUNTRIES | UNKNOWN_COUNTRY_CODES  # every accepted country code (files and the API)
CREDIT_RATINGS = ("AAA", "AA", "A", "BBB", "BB", "B", "CCC", "CC", "C", "D")
HS_CODE_PATTERN = r"^[0-9]{6}([0-9]{2}){0,2}$"  # ASCII digits only (\d would take other scripts' digits)
HS_CHAPTERS = ("01", "97")  # goods chapters: 98 and 99 are national, 00 is none
LOCODE_PATTERN = r"^[A-Z]{2}[A-Z2-9]{3}$"
# Only what is impossible quarantines a row; what is merely implausible (a 754 % duty, a value a million times the
# median, a date decades before the rest) is a warning judged against the dataset's own history (the GX suites'
# `ceiling` and `date_fence` expectations, expectations/reference.py), never a bound set here. So no value range
# below but these: amounts, masses, counts and rates are never negative; a filed declaration, a control and a
# registration cannot be dated after the day they are reported (`today_limit`: one day of slack for time zones),
# whereas a manifest's arrival date may be an expected one (pre-arrival manifests); and a date must be one the
# warehouse can store (datetime64[ns]: 1677-09-22 to 2262-04-11, checked when parsing).
EARLIEST_STORABLE_DATE = pd.Timestamp.min.ceil("D")
LATEST_STORABLE_DATE = pd.Timestamp.max.floor("D")

# Ids (every *_id field, bill_of_lading, hs_code) longer than this are quarantined (`too_long`); the API caps them
# the same (serving/api/schemas.py). Other text is capped at MAX_TEXT_LENGTH.
MAX_ID_LENGTH = 100
MAX_TEXT_LENGTH = 1_000
# Whole-number fields hold at most ±2^53, the integers a float (how a number is parsed) represents exactly.
MAX_WHOLE_NUMBER = 2**53

# Reason codes are machine-readable and stable: scripts and the quarantine table rely on them.
REASONS: dict[str, str] = {
    "missing_required": "a required field is empty",
    "invalid_type": "the value does not have the field's type",
    # A date is a day: a time of day is dropped (2023-03-01 10:00 is 2023-03-01), and a value with a UTC offset is
    # first converted to UTC (2023-03-01T02:00:00+05:00 is 2023-02-28). Only a value that cannot be read is refused.
    "invalid_date": "the value is not a date in the expected format",
    "date_out_of_range": (f"the date is after today (a declaration, control or registration is dated when it happened) "
                          f"or cannot be stored ({EARLIEST_STORABLE_DATE.date()} to {LATEST_STORABLE_DATE.date()})"),
    "negative_value": "an amount, mass, count or rate is negative",
    "out_of_range": "the whole number cannot be stored exactly (at most ±2^53)",
    "non_finite": "the number is infinite or too large to represent (inf, Infinity, 1e400)",
    "invalid_text": ("the text holds a control character (a NUL byte, U+0001–U+001F but tab and line breaks, "
                     "U+007F–U+009F) or an unpaired surrogate, which no text field may hold"),
    "too_long": f"the text is too long (ids: at most {MAX_ID_LENGTH} characters, other text: {MAX_TEXT_LENGTH:,})",
    "invalid_flag": "a 0/1 field holds another value",
    "invalid_hs_code": "the HS code is not 6, 8 or 10 digits (set hs_code_digits in the mapping if zeros were lost)",
    "invalid_country_code": "the country is not an ISO 3166-1 alpha-2 code (ZZ, XX or XZ stand for unknown)",
    "invalid_code": "a code does not have its required format",
    "inconsistent_labels": "the inspection labels contradict each other",
    "malformed_row": "the CSV line does not have as many fields as the header",
    "duplicate_id": "the id appears more than once with different values",
    "unknown_declaration": "the outcome refers to a declaration that is not in the warehouse",
    "batch_rejected": "the batch failed a critical dataset-level expectation",
}

# Primary key of each kind in the warehouse.
KEYS: dict[str, str] = {
    "declarations": "declaration_id",
    "manifests": "bill_of_lading",
    "traders": "importer_id",
    "outcomes": "declaration_id",
}

LABEL_FIELDS = ("inspected", "fraud", "revenue", "critical", "control_date")
# The pandas dtype of each contract type, as parsing leaves it.
CANONICAL_DTYPES = {"text": "str", "date": "datetime64[us]", "number": "float64", "integer": "Int64", "flag": "Int8"}


def latest_day() -> dt.date:
    """The last day a date may hold: tomorrow, on this machine's clock (a plain date: an API call reads it per
    declaration, where pandas' Timestamp arithmetic cost more than the rest of the date's check)."""
    return dt.date.today() + dt.timedelta(days=1)


def today_limit() -> pd.Timestamp:
    return pd.Timestamp(latest_day())


def _not_after_today(s: pd.Series) -> pd.Series:
    return s <= today_limit()


def _is_country(s: pd.Series) -> pd.Series:
    return s.isin(ISO_COUNTRIES)


def _is_flag(s: pd.Series) -> pd.Series:
    return s.isin([0, 1])


def _non_negative(s: pd.Series) -> pd.Series:
    return s >= 0


class _Contract(pa.DataFrameModel):
    class Config:
        strict = False  # extra (mapped) columns are allowed; unknown ones were dropped before
        coerce = True


class DeclarationContract(_Contract):
    """One row per goods item of an import declaration."""

    declaration_id: Series[str] = pa.Field(nullable=False)
    declaration_date: Series[pa.DateTime] = pa.Field(nullable=False)
    importer_id: Series[str] = pa.Field(nullable=False)
    hs_code: Series[str] = pa.Field(nullable=False)
    origin_country: Series[str] = pa.Field(nullable=False)
    declared_value: Series[float] = pa.Field(nullable=False)
    declarant_id: Series[str] | None = pa.Field(nullable=True)
    exporter_id: Series[str] | None = pa.Field(nullable=True)
    office_id: Series[str] | None = pa.Field(nullable=True)
    transport_mode: Series[str] | None = pa.Field(nullable=True)
    departure_country: Series[str] | None = pa.Field(nullable=True)
    net_mass_kg: Series[float] | None = pa.Field(nullable=True)
    quantity: Series[float] | None = pa.Field(nullable=True)
    tax_rate: Series[float] | None = pa.Field(nullable=True)
    duty_paid: Series[float] | None = pa.Field(nullable=True)
    bill_of_lading: Series[str] | None = pa.Field(nullable=True)
    inspected: Series[pd.Int8Dtype] | None = pa.Field(nullable=True)
    fraud: Series[pd.Int8Dtype] | None = pa.Field(nullable=True)
    revenue: Series[float] | None = pa.Field(nullable=True)
    critical: Series[pd.Int8Dtype] | None = pa.Field(nullable=True)
    control_date: Series[pa.DateTime] | None = pa.Field(nullable=True)

    @pa.check("hs_code", name="invalid_hs_code")
    def _hs_code(cls, s: Series[str]) -> Series[bool]:
        return s.str.fullmatch(HS_CODE_PATTERN) & (s.str[:2] >= HS_CHAPTERS[0]) & (s.str[:2] <= HS_CHAPTERS[1])

    @pa.check("origin_country", "departure_country", name="invalid_country_code")
    def _country(cls, s: Series[str]) -> Series[bool]:
        return _is_country(s)

    # tax_rate is a fraction of the value (0.15 is 15 %), with no upper bound: real tariffs have lines above 700 %
    @pa.check("declared_value", "net_mass_kg", "quantity", "tax_rate", "duty_paid", "revenue", name="negative_value")
    def _non_negative(cls, s: Series[float]) -> Series[bool]:
        return _non_negative(s)

    @pa.check("inspected", "fraud", "critical", name="invalid_flag")
    def _flag(cls, s: Series[int]) -> Series[bool]:
        return _is_flag(s)

    @pa.check("declaration_date", "control_date", name="date_out_of_range")
    def _date(cls, s: Series[pd.Timestamp]) -> Series[bool]:
        return _not_after_today(s)

    @pa.dataframe_check(name="inconsistent_labels")
    def _labels(cls, df: pd.DataFrame) -> Series[bool]:
        return _consistent_labels(df, date_column="declaration_date")


class ManifestContract(_Contract):
    """One row per bill of lading (or air waybill / road consignment note)."""

    bill_of_lading: Series[str] = pa.Field(nullable=False)
    port_of_loading: Series[str] = pa.Field(nullable=False)
    gross_weight_kg: Series[float] = pa.Field(nullable=False)
    arrival_date: Series[pa.DateTime] = pa.Field(nullable=False)
    carrier: Series[str] | None = pa.Field(nullable=True)
    transport_mode: Series[str] | None = pa.Field(nullable=True)
    transshipment_ports: Series[str] | None = pa.Field(nullable=True)
    port_of_discharge: Series[str] | None = pa.Field(nullable=True)
    container_count: Series[pd.Int64Dtype] | None = pa.Field(nullable=True)
    consignee_id: Series[str] | None = pa.Field(nullable=True)

    @pa.check("port_of_loading", "port_of_discharge", name="invalid_code")
    def _locode(cls, s: Series[str]) -> Series[bool]:
        return s.str.fullmatch(LOCODE_PATTERN)

    @pa.check("transshipment_ports", name="invalid_code")
    def _route(cls, s: Series[str]) -> Series[bool]:
        return s.str.fullmatch(r"([A-Z]{2}[A-Z2-9]{3})(;[A-Z]{2}[A-Z2-9]{3})*")

    @pa.check("gross_weight_kg", "container_count", name="negative_value")
    def _non_negative(cls, s: Series[float]) -> Series[bool]:
        return _non_negative(s)


class TraderContract(_Contract):
    """One row per registered importer: the trader registry."""

    importer_id: Series[str] = pa.Field(nullable=False)
    registration_date: Series[pa.DateTime] = pa.Field(nullable=False)
    aeo_certified: Series[pd.Int8Dtype] | None = pa.Field(nullable=True)
    credit_rating: Series[str] | None = pa.Field(nullable=True)
    prior_violations: Series[pd.Int64Dtype] | None = pa.Field(nullable=True)
    sector: Series[str] | None = pa.Field(nullable=True)

    @pa.check("aeo_certified", name="invalid_flag")
    def _flag(cls, s: Series[int]) -> Series[bool]:
        return _is_flag(s)

    @pa.check("credit_rating", name="invalid_code")
    def _rating(cls, s: Series[str]) -> Series[bool]:
        return s.isin(CREDIT_RATINGS)

    @pa.check("prior_violations", name="negative_value")
    def _non_negative(cls, s: Series[int]) -> Series[bool]:
        return _non_negative(s)

    @pa.check("registration_date", name="date_out_of_range")
    def _date(cls, s: Series[pd.Timestamp]) -> Series[bool]:
        return _not_after_today(s)


class OutcomeContract(_Contract):
    """The result of a control on a declaration already stored."""

    declaration_id: Series[str] = pa.Field(nullable=False)
    fraud: Series[pd.Int8Dtype] = pa.Field(nullable=False)
    inspected: Series[pd.Int8Dtype] | None = pa.Field(nullable=True)
    revenue: Series[float] | None = pa.Field(nullable=True)
    critical: Series[pd.Int8Dtype] | None = pa.Field(nullable=True)
    control_date: Series[pa.DateTime] | None = pa.Field(nullable=True)

    @pa.check("inspected", "fraud", "critical", name="invalid_flag")
    def _flag(cls, s: Series[int]) -> Series[bool]:
        return _is_flag(s)

    @pa.check("revenue", name="negative_value")
    def _non_negative(cls, s: Series[float]) -> Series[bool]:
        return _non_negative(s)

    @pa.check("control_date", name="date_out_of_range")
    def _date(cls, s: Series[pd.Timestamp]) -> Series[bool]:
        return _not_after_today(s)

    @pa.dataframe_check(name="inconsistent_labels")
    def _labels(cls, df: pd.DataFrame) -> Series[bool]:
        return _consistent_labels(df, date_column=None)


LABEL_DATE_COLUMN: dict[str, str | None] = {"declarations": "declaration_date", "outcomes": None}


def _consistent_labels(df: pd.DataFrame, date_column: str | None) -> pd.Series:
    """A fraud finding needs a control; recovered revenue and a critical finding need a fraud finding; controls end
    after filing."""
    return ~pd.concat(_contradictions(df, date_column), axis=1).any(axis=1) if len(df) else pd.Series(True, index=df.index)


def _contradictions(df: pd.DataFrame, date_column: str | None) -> list[pd.Series]:
    """One boolean Series per label rule: True where the row breaks it (see `label_contradictions`)."""
    none = pd.Series(False, index=df.index)
    fraud = df["fraud"].fillna(0) if "fraud" in df else None
    found = [none, none, none, none]
    if fraud is not None and "inspected" in df:
        found[0] = ((fraud == 1) & (df["inspected"].fillna(1) == 0)).fillna(False).astype(bool)
    if fraud is not None and "revenue" in df:
        found[1] = ((df["revenue"].fillna(0) > 0) & (fraud == 0)).fillna(False).astype(bool)
    if date_column and "control_date" in df:
        found[2] = (df["control_date"] < df[date_column]).fillna(False).astype(bool)
    if fraud is not None and "critical" in df:  # a critical fraud is a fraud
        found[3] = ((df["critical"].fillna(0) == 1) & (fraud == 0)).fillna(False).astype(bool)
    return found


def label_contradictions(df: pd.DataFrame, kind: str) -> pd.Series:
    """Which labels contradict, as text per row ('' where none): 'fraud=1 but inspected=0',
    'revenue 120.0 > 0 but fraud=0', 'control_date 2024-02-01 before declaration_date 2024-03-01',
    'critical=1 but fraud=0'."""
    date_column = LABEL_DATE_COLUMN.get(kind)
    out = pd.Series("", index=df.index, dtype="object")
    for rule, broken in enumerate(_contradictions(df, date_column)):
        if not broken.any():
            continue
        rows = df[broken]
        fraud = pd.Series("fraud=0", index=rows.index).where(rows["fraud"].notna().to_numpy(), "fraud is empty") \
            if "fraud" in rows else None
        if rule == 0:
            text = pd.Series("fraud=1 but inspected=0", index=rows.index)
        elif rule == 1:
            text = "revenue " + rows["revenue"].astype("float64").astype("str") + " > 0 but " + fraud
        elif rule == 2:
            text = ("control_date " + rows["control_date"].dt.strftime("%Y-%m-%d") + f" before {date_column} "
                    + rows[date_column].dt.strftime("%Y-%m-%d"))
        else:
            text = "critical=1 but " + fraud
        out[rows.index] = (out[rows.index] + "; ").where(out[rows.index] != "", "") + text.astype("object")
    return out


def is_id_field(name: str) -> bool:
    """Ids are capped at MAX_ID_LENGTH: every *_id field, bill_of_lading and hs_code."""
    return name.endswith("_id") or name in ("bill_of_lading", "hs_code")


CONTRACTS: dict[str, type[_Contract]] = {
    "declarations": DeclarationContract,
    "manifests": ManifestContract,
    "traders": TraderContract,
    "outcomes": OutcomeContract,
}


def field_types(kind: str) -> dict[str, str]:
    """Canonical field → parse type ('text', 'date', 'number', 'integer' or 'flag'), read off the pandera model."""
    types = {}
    for name, column in CONTRACTS[kind].to_schema().columns.items():
        dtype = str(column.dtype).lower()
        if "datetime" in dtype:
            types[name] = "date"
        elif "float" in dtype:
            types[name] = "number"
        elif "int8" in dtype:
            types[name] = "flag"
        elif "int" in dtype:
            types[name] = "integer"
        else:
            types[name] = "text"
    return types


def required_fields(kind: str) -> list[str]:
    """Fields that must be present as columns and non-empty in every row."""
    return [n for n, c in CONTRACTS[kind].to_schema().columns.items() if c.required]
