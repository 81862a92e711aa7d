"""Row-level validation: parse raw values into canonical types, then check each row with the pandera contract.

Every row ends up either valid (typed) or rejected with machine-readable reason codes and a readable message.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features.contract import (
    CONTRACTS,
    EARLIEST_STORABLE_DATE,
    LATEST_STORABLE_DATE,
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_WHOLE_NUMBER,
    REASONS,
    Kind,
    field_types,
    is_id_field,
    label_contradictions,
)
from features.errors import UserError
from features.intake.mapping import (
    EXTRA_NUMERIC_PREFIX,
    PERCENT,
    ColumnMapping,
    check_options,
    describe_unit,
    recode_key,
)
from features.intake.parsers import exact_whole, is_number, missing, parse_dates, parse_flags, parse_numbers
from features.intake.text import invalid_text, invalid_text_mask, normalise_text

UPPERCASE_FIELDS = {
    "origin_country", "departure_country", "port_of_loading", "port_of_discharge", "transshipment_ports",
    "credit_rating",
}
# pandera's own check names → our reason codes (our custom checks are already named by reason).
PANDERA_CHECKS = {"not_nullable": "missing_required"}
HS_SEPARATOR = r"[.\s-]"  # what an HS code may be written with and loses (8703.23, 87 03 23, 87-03-23; \s: any space)


class Conversion(str):
    """One readable line on what the mapping did to a field (a recode, a unit, a decimal comma), as listed, with its
    counts kept apart from its words: the lines of a file's chunks add up to the whole file's (`add_conversions`).

    `per` says what a count counts: "row" (1 row, 2 rows) or "value" (always written "values"). A `quiet` line is
    left out of the list while its counts are 0 (the decimal comma's: said only where it converted a value)."""

    def __new__(cls, words: tuple[str, ...], counts: tuple[int, ...] = (), per: str = "value", quiet: bool = False):
        said = [f"{n:,} row" + ("" if n == 1 else "s") if per == "row" else f"{n:,} values" for n in counts]
        line = super().__new__(cls, "".join(w + c for w, c in zip(words, [*said, ""], strict=True)))
        line.words, line.counts, line.per, line.quiet = words, counts, per, quiet
        return line

    def __getnewargs__(self) -> tuple:
        return self.words, self.counts, self.per, self.quiet


def add_conversions(lines: list[Conversion], more: list[Conversion]) -> list[Conversion]:
    """Two chunks' conversions as those of both: the mapping and the header decide which lines a chunk lists, in
    which order, so each chunk lists the same lines and their counts add up line by line."""
    return [Conversion(a.words, tuple(map(sum, zip(a.counts, b.counts, strict=True))), a.per, a.quiet)
            for a, b in zip(lines, more, strict=True)]


def readable(lines: list[Conversion]) -> list[str]:
    """The lines as listed to a user: a quiet line only where it counted something."""
    return [str(line) for line in lines if not line.quiet or any(line.counts)]


@dataclass
class RowCheck:
    valid: pd.DataFrame  # typed canonical rows, index = position in the file
    rejected: pd.DataFrame  # index = position in the file; columns: reason, message
    failures: pd.DataFrame | None = None  # one row per (row, column) problem: row, column, code, value, message
    converted: list[Conversion] = field(default_factory=list)  # the mapping's recodes and unit conversions

    @property
    def conversions(self) -> list[str]:
        """The mapping's recodes and unit conversions, readable."""
        return readable(self.converted)


def _as_text(s: pd.Series) -> pd.Series:
    """Text in the normal form of features/intake/text.py (format characters removed, NFKC, stripped)."""
    if pd.api.types.is_float_dtype(s):  # 870323.0 from a spreadsheet export is the code 870323
        whole = (s.abs() < MAX_WHOLE_NUMBER) & s.mod(1).eq(0)
        text = s.astype("str")
        text[whole] = s[whole].astype("int64").astype("str")  # each value on its own: one 870323.5 spoils no other
        return normalise_text(text)
    return normalise_text(s.astype("str"))


def _match_text(s: pd.Series) -> pd.Series:
    """Each value as the text `values:` keys are matched on: stripped, and 2.0 from a float column as "2"."""
    if pd.api.types.is_bool_dtype(s) or not (pd.api.types.is_numeric_dtype(s) or s.dtype == object):
        out = s.astype("str")
    elif pd.api.types.is_float_dtype(s):
        out = s.astype("str")
        whole = (s.abs() < 2**53) & s.mod(1).eq(0)
        out[whole] = s[whole].astype("int64").astype("str")
    elif pd.api.types.is_numeric_dtype(s):
        out = s.astype("str")
    else:  # object: a mix of Python values
        out = pd.Series([None if missing(v) else _number_text(v) if is_number(v) else str(v) for v in s],
                        index=s.index, dtype="str")
    return normalise_text(out)


def _number_text(value: object) -> str:
    return recode_key(value.item() if isinstance(value, np.generic) else value)


def _show(target: object) -> str:
    return "(empty)" if target is None else _number_text(target) if is_number(target) else str(target)


def recode_values(frame: pd.DataFrame, kind: Kind, mapping: ColumnMapping) -> tuple[pd.DataFrame, list[Conversion]]:
    """Apply the mapping's `values:` to canonical columns whose values are still raw (before parsing).

    A value whose stripped text (2.0 read as "2") is listed is replaced by its target; others pass unchanged.
    Returns the frame (a copy where anything was recoded) and one readable line per recoded field."""
    check_options(mapping, kind)
    notes = []
    for name, recode in mapping.values.items():
        if name not in frame.columns:
            notes.append(Conversion((f"{name}: values listed in the mapping, but the file has no {name} column",)))
            continue
        text = _match_text(frame[name])
        hit = text.isin(list(recode)).to_numpy(dtype=bool)
        counts = text[hit].value_counts()
        changes = [key for key, target in recode.items() if target is None or _show(target) != key]
        words = [(", " if i else f"{name}: recoded ") + f"{key} → {_show(recode[key])} on "
                 for i, key in enumerate(changes)]
        notes.append(Conversion((*words, ""), tuple(int(counts.get(key, 0)) for key in changes), per="row")
                     if changes else Conversion((f"{name}: every listed value maps to itself",)))
        if hit.any():
            recoded = frame[name].astype(object)
            recoded[hit] = [recode[key] for key in text[hit]]
            frame = frame.assign(**{name: recoded.infer_objects()})
    return frame, notes


def convert_units(typed: pd.DataFrame, kind: Kind, mapping: ColumnMapping) -> tuple[pd.DataFrame, list[Conversion]]:
    """Apply the mapping's `units:` to parsed (float) columns, before the contract's checks.

    Returns the frame (a copy where anything was converted) and one readable line per field."""
    check_options(mapping, kind)
    notes = []
    for name, unit in mapping.units.items():
        if name not in typed.columns:
            notes.append(Conversion((f"{name}: {describe_unit(unit)} in the mapping, but the file has no {name} "
                                     "column",)))
            continue
        column = typed[name].astype("float64")
        converted = column / 100 if unit == PERCENT else column * unit.scale
        typed = typed.assign(**{name: converted})
        notes.append(Conversion((f"{name}: {describe_unit(unit)} on ", ""), (int(column.notna().sum()),)))
    return typed, notes


def parse(frame: pd.DataFrame, kind: Kind,
          mapping: ColumnMapping) -> tuple[pd.DataFrame, pd.DataFrame, list[Conversion]]:
    """Cast raw columns to canonical types. Returns the typed frame, the parse failures (row, column, code) and,
    with the mapping's decimal comma, one quiet line per numeric field on the values it converted.

    A value holding what no text may hold (a NUL byte, a control character: features/intake/text.py) is refused
    as `invalid_text` whatever its field's type, before it is read as anything else."""
    types = field_types(kind)
    typed = {}
    failures = []
    notes = []
    for column in frame.columns:
        raw = frame[column]
        parse_type = types.get(column, "number" if column.startswith(EXTRA_NUMERIC_PREFIX) else "text")
        if raw.dtype == "str" or raw.dtype == object:
            unreadable = invalid_text_mask(raw).to_numpy(dtype=bool)
            if unreadable.any():
                failures.append(_invalid_text(frame, unreadable, column))
                raw = raw.mask(unreadable)
        if parse_type == "text":
            value = _as_text(raw)
            if column == "hs_code":
                plain = value.str.fullmatch("[0-9A-Za-z]*").fillna(True).astype(bool)  # no separator to lose
                if not plain.all():  # Python's regex (its \s is any Unicode space), on those values only
                    value = value.copy()
                    value[~plain] = value[~plain].str.replace(HS_SEPARATOR, "", regex=True)
                if mapping.hs_code_digits:
                    numeric = value.str.fullmatch(r"\d+").fillna(False).astype(bool)
                    value = value.where(~numeric, value.str.zfill(mapping.hs_code_digits))
            if column in UPPERCASE_FIELDS:
                value = value.str.upper()
            cap = MAX_ID_LENGTH if is_id_field(column) else MAX_TEXT_LENGTH
            long = (value.str.len() > cap).fillna(False).astype(bool)
            if long.any():  # the whole value stays in the quarantine's raw row; the message shows its start
                failures.append(_failures(frame, long, column, "too_long"))
                value = value.mask(long)
            code = None
        elif parse_type == "date":
            value, code = parse_dates(raw, mapping.date_format).astype("datetime64[us]"), "invalid_date"
            far = value.notna() & ~value.between(EARLIEST_STORABLE_DATE, LATEST_STORABLE_DATE)
            if far.any():  # beyond what the nanosecond contract can hold: the only lower bound on a date
                failures.append(pd.DataFrame({"row": frame.index[far], "column": column, "code": "date_out_of_range",
                                              "value": raw[far].astype("str").to_numpy()}))
                value = value.mask(far)
        elif parse_type == "flag":
            value, code = parse_flags(raw), "invalid_type"
        else:
            (value, misread, converted), code = parse_numbers(raw, mapping.decimal), "invalid_type"
            if misread.any():
                found = _failures(frame, misread, column, "invalid_type")
                failures.append(found.assign(message=column + " " + found["value"].map(_quote) + ": a decimal "
                                             "point, but the mapping sets decimal: ',' (a '.' is read only as a "
                                             "thousands separator, as in 1.017,5)"))
            if mapping.decimal == ",":
                notes.append(Conversion((f"{column}: decimal comma (1.234,5 → 1234.5) on ", ""),
                                        (int(converted.sum()),), quiet=True))
            if parse_type == "integer":  # beyond ±2^53 a float no longer holds every whole number
                huge, fraction = exact_whole(raw, value, mapping.decimal)
                if huge.any():
                    failures.append(_failures(frame, huge, column, "out_of_range"))
                value = value.mask(huge | fraction).astype("Int64")
            else:
                infinite = np.isinf(value.to_numpy())
                if infinite.any():  # inf, Infinity, 1e400: a number, but not one to store
                    failures.append(_failures(frame, infinite, column, "non_finite"))
                    value = value.mask(infinite)
        if code is not None:
            bad = raw.notna() & value.isna()  # text only for these few: casting every value to str is slow
            if bad.any():
                bad[bad] = raw[bad].astype("str").str.strip() != ""
            for earlier in failures:  # already quarantined with a more precise reason
                if len(earlier) and earlier["column"].iloc[0] == column:
                    bad[frame.index.isin(earlier["row"])] = False
            if bad.any():
                failures.append(pd.DataFrame({"row": frame.index[bad], "column": column, "code": code,
                                              "value": raw[bad].astype("str").to_numpy()}))
        if parse_type == "flag":  # Int8 holds only 0/1 here, so other numbers fail now rather than overflow
            off = value.notna() & ~value.isin([0, 1])
            if off.any():
                failures.append(pd.DataFrame({"row": frame.index[off], "column": column, "code": "invalid_flag",
                                              "value": raw[off].astype("str").to_numpy()}))
            value = value.where(~off).astype("Int8")
        typed[column] = value
    typed_frame = pd.DataFrame(typed, index=frame.index)
    if kind in ("declarations", "outcomes") and "fraud" in typed_frame and "inspected" not in typed_frame:
        typed_frame["inspected"] = typed_frame["fraud"].notna().astype("Int8")  # the contract's label rule
    empty = pd.DataFrame(columns=["row", "column", "code", "value"])
    return typed_frame, pd.concat(failures, ignore_index=True) if failures else empty, notes


def _failures(frame: pd.DataFrame, mask: np.ndarray | pd.Series, column: str, code: str) -> pd.DataFrame:
    mask = np.asarray(mask, dtype=bool)
    return pd.DataFrame({"row": frame.index[mask], "column": column, "code": code,
                         "value": frame[column][mask].astype("str").to_numpy()})


def _invalid_text(frame: pd.DataFrame, mask: np.ndarray, column: str) -> pd.DataFrame:
    """`invalid_text` failures, each message saying which character and where (the value shown escaped)."""
    found = _failures(frame, mask, column, "invalid_text")
    return found.assign(message=[f"{column} {_quote(v)}: {invalid_text(v)}" for v in found["value"]])


def _pandera_failures(typed: pd.DataFrame, kind: Kind) -> pd.DataFrame:
    try:
        # A shallow copy validated in place: pandera's own copy of every column costs more than its checks, and
        # copy-on-write keeps `typed` as it is where the contract's coercion changes a column.
        CONTRACTS[kind].validate(typed.copy(deep=False), lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        schema_level = cases[cases["index"].isna()]
        if len(schema_level):  # a missing column or an uncastable dtype: our parser should have prevented it
            first = schema_level.iloc[0]
            raise UserError(f"{kind}: {first['column']}: {first['check']}") from exc
        labels = cases["check"].eq("inconsistent_labels").to_numpy()
        column_level = cases[~labels]
        out = pd.DataFrame({
            "row": column_level["index"].astype("int64").to_numpy(),
            "column": column_level["column"].astype("str").to_numpy(),
            "code": column_level["check"].map(lambda c: PANDERA_CHECKS.get(c, c)).to_numpy(),
            "value": column_level["failure_case"].astype("str").to_numpy(),
        })
        if labels.any():  # a dataframe-level check fails once per column: say once per row which labels contradict
            rows = pd.unique(cases.loc[labels, "index"].astype("int64"))
            said = label_contradictions(typed.loc[rows], kind)
            out = pd.concat([out, pd.DataFrame({
                "row": rows, "column": "labels", "code": "inconsistent_labels", "value": "",
                "message": ("inconsistent labels: " + said.where(said != "", REASONS["inconsistent_labels"])).to_numpy(),
            })], ignore_index=True)
        return out
    return pd.DataFrame(columns=["row", "column", "code", "value"])


def check_rows(frame: pd.DataFrame, kind: Kind, mapping: ColumnMapping) -> RowCheck:
    """Parse and validate every row; nothing is dropped without a reason.

    Order: recode the mapping's `values` (raw text), parse, convert the mapping's `units`, then the contract's checks."""
    given = frame = frame.reset_index(drop=True)
    frame, recoded = recode_values(frame, kind, mapping)
    typed, parse_failures, decimals = parse(frame, kind, mapping)
    typed, converted = convert_units(typed, kind, mapping)
    conversions = recoded + decimals + converted
    overflow = []
    for name in mapping.units:  # a finite value scaled past what a float holds
        infinite = np.isinf(typed[name].to_numpy(dtype="float64", na_value=np.nan)) if name in typed else None
        if infinite is not None and infinite.any():
            overflow.append(_failures(frame, infinite, name, "non_finite"))
            typed[name] = typed[name].mask(infinite)
    failures = pd.concat([parse_failures, *overflow, _pandera_failures(typed, kind)], ignore_index=True)
    if failures.empty:
        return RowCheck(valid=typed, rejected=pd.DataFrame({"reason": [], "message": []}, dtype="str"), failures=failures,
                        converted=conversions)
    # The pandera check on a value the parser already rejected only repeats it.
    failures = _as_given(failures.drop_duplicates(subset=["row", "column"], keep="first"), given)
    generic = (
        failures["column"] + " " + failures["value"].map(_quote) + ": " + failures["code"].map(REASONS).fillna("failed a check")
    )
    failures["message"] = failures["message"].fillna(generic) if "message" in failures else generic
    grouped = failures.groupby("row", sort=True)
    rejected = pd.DataFrame({
        "reason": grouped["code"].agg(lambda c: ";".join(dict.fromkeys(c))),
        "message": grouped["message"].agg("; ".join),
    })
    bad_rows = np.isin(typed.index, rejected.index)
    return RowCheck(valid=typed[~bad_rows], rejected=rejected, failures=failures, converted=conversions)


def _as_given(failures: pd.DataFrame, given: pd.DataFrame) -> pd.DataFrame:
    """Each failure's value as the input gave it, not as parsed: the HS code '870323.0' (parsed '8703230'), the
    amount '-5' (parsed -5.0), a label before its recode."""
    failures = failures.reset_index(drop=True)
    for column, rows in failures[failures["column"].isin(given.columns)].groupby("column")["row"]:
        failures.loc[rows.index, "value"] = given[column].reindex(rows.to_numpy()).astype("str").to_numpy()
    return failures


def _quote(value: object) -> str:
    if not isinstance(value, str) or value in ("nan", "<NA>", "None", "NaT"):
        return "(empty)"
    return repr(value[:60])
