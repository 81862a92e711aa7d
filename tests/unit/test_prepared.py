"""Hostile but plausible landing files prepared for the warehouse (features/intake/prepared.py `prepare_batch`):
every row is stored or quarantined with a reason, never a crash of the file.

Each case is a tiny CSV: a few good rows and one bad one. The file still ingests, the bad row is quarantined with
its reason code, and read = stored + quarantined + duplicates.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import MAX_ID_LENGTH, REASONS
from features.errors import UserError
from features.intake.mapping import ColumnMapping
from features.intake.prepared import PreparedBatch, prepare_batch
from features.intake.text import invalid_text_mask
from features.warehouse import IngestSummary, Warehouse

HEADERS = {
    "declarations": "declaration_id,declaration_date,importer_id,hs_code,origin_country,declared_value,net_mass_kg",
    "traders": "importer_id,registration_date,prior_violations,credit_rating",
    "manifests": "bill_of_lading,port_of_loading,gross_weight_kg,arrival_date,container_count",
}
GOOD = {
    "declarations": ["D1,2024-03-01,IMP1,870323,JP,100,10", "D2,2024-03-02,IMP2,870323,CN,200,20"],
    "traders": ["IMP1,2010-01-01,0,AA", "IMP2,2011-01-01,3,B"],
    "manifests": ["BL1,CNSHA,100,2024-03-01,1", "BL2,JPTYO,200,2024-03-02,2"],
}


def _file(tmp_path: Path, kind: str, *bad: str, name: str | None = None) -> Path:
    path = tmp_path / (name or f"{kind}.csv")
    path.write_text("\n".join([HEADERS[kind], GOOD[kind][0], *bad, GOOD[kind][1]]) + "\n", encoding="utf-8")
    return path


def _ingest(path: Path, tmp_path: Path, mapping: ColumnMapping | None = None) -> tuple[PreparedBatch, IngestSummary]:
    batch = prepare_batch(path, mapping=mapping)
    summary = Warehouse(tmp_path / "w.duckdb").store(batch)
    assert summary.reconciles, summary.to_dict()
    assert batch.read == len(batch.valid) + len(batch.rejected) + batch.duplicates
    return batch, summary


LONG_ID = "x" * 1_000_009
BAD_ROWS = [
    # (kind, bad row, reason, field named in the message)
    pytest.param("declarations", "D9,2023-03-01T25:00:00+05:00,IMP1,870323,JP,5,1", "invalid_date", "declaration_date",
                 id="unparsable-datetime-with-offset"),
    pytest.param("declarations", "D9,next tuesday,IMP1,870323,JP,5,1", "invalid_date", "declaration_date",
                 id="words-for-a-date"),
    pytest.param("traders", "IMP9,2012-01-01,9223372036854775808,A", "out_of_range", "prior_violations",
                 id="int-at-2^63"),
    pytest.param("traders", "IMP9,2012-01-01,-99999999999999999999999,A", "out_of_range", "prior_violations",
                 id="int-far-below-int64"),
    pytest.param("manifests", "BL9,CNSHA,5,2024-03-01,123456789012345678901234567890", "out_of_range",
                 "container_count", id="int-over-int64"),
    pytest.param("manifests", "BL9,CNSHA,5,2024-03-01,inf", "out_of_range", "container_count", id="int-inf"),
    pytest.param("declarations", "D9,2024-03-01,IMP1,870323,JP,inf,1", "non_finite", "declared_value", id="inf"),
    pytest.param("declarations", "D9,2024-03-01,IMP1,870323,JP,Infinity,1", "non_finite", "declared_value",
                 id="Infinity"),
    pytest.param("declarations", "D9,2024-03-01,IMP1,870323,JP,1e400,1", "non_finite", "declared_value", id="1e400"),
    pytest.param("declarations", "D9,2024-03-01,IMP1,870323,JP,5,-inf", "non_finite", "net_mass_kg", id="-inf"),
    pytest.param("manifests", "BL9,CNSHA,1e999,2024-03-01,1", "non_finite", "gross_weight_kg", id="manifest-1e999"),
    pytest.param("declarations", f"{LONG_ID},2024-03-01,IMP1,870323,JP,5,1", "too_long", "declaration_id",
                 id="million-char-declaration-id"),
    pytest.param("declarations", f"D9,2024-03-01,{'I' * (MAX_ID_LENGTH + 1)},870323,JP,5,1", "too_long",
                 "importer_id", id="importer-id-over-cap"),
    pytest.param("manifests", f"{'B' * 500},CNSHA,5,2024-03-01,1", "too_long", "bill_of_lading",
                 id="bill-of-lading-over-cap"),
    pytest.param("traders", "IMP9,2012-01-01,9007199254740993,A", "out_of_range", "'9007199254740993'",
                 id="int-at-2^53+1"),
    pytest.param("declarations", "D9,2024-03-01,IMP\x001,870323,JP,5,1", "invalid_text", "importer_id 'IMP\\x001'",
                 id="nul-in-the-first-64kb"),
    pytest.param("declarations", "D9,2024-03-01,IMP1,870323,J\x01P,5,1", "invalid_text", "origin_country",
                 id="control-character"),
    pytest.param("declarations", "D9,2024-03-01,IMP1,870323,JP,5\x00,1", "invalid_text", "declared_value",
                 id="nul-in-a-number"),
    pytest.param("declarations", "D9,2024-03-01,IMP1,870323,JP", "malformed_row", "line 3", id="too-few-fields"),
    pytest.param("declarations", "D9,2024-03-01,IMP1,870323,JP,5,1,surplus", "malformed_row", "line 3",
                 id="too-many-fields"),
]


@pytest.mark.parametrize(("kind", "bad", "reason", "named"), BAD_ROWS)
def test_a_bad_row_is_quarantined_and_the_rest_of_the_file_ingests(tmp_path, kind, bad, reason, named):
    # Given a file of good rows with one bad row in the middle (line 3, the header is line 1)
    path = _file(tmp_path, kind, bad)
    # When it is ingested
    batch, summary = _ingest(path, tmp_path)
    # Then the good rows are stored, the bad one is quarantined with its reason, and the counts reconcile
    assert (summary.read, summary.stored, summary.quarantined, summary.duplicates) == (3, 2, 1, 0)
    assert summary.reasons == {reason: 1}
    assert reason in REASONS
    row = batch.rejected.iloc[0]
    assert row["row_number"] == 2 and row["reason"] == reason
    assert named in row["message"] and len(row["message"]) < 400
    q = Warehouse(tmp_path / "w.duckdb").read("SELECT reason, row_number, raw FROM quarantine")
    assert q["reason"].tolist() == [reason]
    if reason == "too_long":
        assert len(q.loc[0, "raw"]) > MAX_ID_LENGTH  # the whole value is kept in quarantine: nothing is lost


def test_a_late_nul_byte_is_quarantined_like_an_early_one(tmp_path):
    # Given a NUL byte far past the first 64 KB (it used to be stored: 'CO\x00BOG')
    path = tmp_path / "declarations.csv"
    path.write_text("\n".join([HEADERS["declarations"], *[GOOD["declarations"][0]] * 3000,
                               "D9,2024-03-01,IMP1,870323,CO\x00BOG,5,1", GOOD["declarations"][1]]) + "\n")
    # When ingested
    batch, summary = _ingest(path, tmp_path)
    # Then that row is quarantined invalid_text (its row number, the value escaped); nothing stored holds a NUL
    assert (summary.read, summary.stored, summary.quarantined, summary.duplicates) == (3002, 2, 1, 2999)
    assert summary.reasons == {"invalid_text": 1}
    row = batch.rejected.iloc[0]
    assert row["row_number"] == 3001 and "origin_country 'CO\\x00BOG': holds U+0000 at position 3" in row["message"]
    q = Warehouse(tmp_path / "w.duckdb").read("SELECT raw FROM quarantine")
    assert "CO\\u0000BOG" in q.loc[0, "raw"]  # JSON escapes it: the raw row is readable text
    stored = Warehouse(tmp_path / "w.duckdb").read("SELECT origin_country FROM declarations")
    assert not stored["origin_country"].str.contains("\x00", regex=False).any()


def test_a_giant_cell_quarantines_its_row_and_the_rest_of_the_file_is_stored(tmp_path):
    # Given a file with a 5 MB cell (beyond Arrow's block: "straddles two block boundaries") among valid rows
    path = _file(tmp_path, "declarations", f"D9,2024-03-01,{'x' * 5_000_000},870323,JP,5,1",
                 "D8,2024-03-01,IMP1,870323,JP,5,1")
    # When ingested
    batch, summary = _ingest(path, tmp_path)
    # Then the valid rows are stored, the giant row is quarantined too_long, and the counts reconcile
    assert (summary.read, summary.stored, summary.quarantined, summary.duplicates) == (4, 3, 1, 0)
    assert summary.reasons == {"too_long": 1} and batch.rejected["row_number"].tolist() == [2]
    q = Warehouse(tmp_path / "w.duckdb").read("SELECT raw FROM quarantine")
    assert len(q.loc[0, "raw"]) > 5_000_000  # the whole value is kept in quarantine


def test_only_a_file_with_a_giant_row_is_read_more_than_once(tmp_path, monkeypatch):
    # Given a counter of the reader's passes over a file (each with its block size)
    from features.intake import reader
    blocks: list[int] = []
    one_pass = reader._arrow_csv_blocks
    monkeypatch.setattr(reader, "_arrow_csv_blocks", lambda *a: blocks.append(a[-1]) or one_pass(*a))
    # When an ordinary file is read, Then it is read once
    prepare_batch(_file(tmp_path, "declarations", "D9,2024-03-01,IMP1,870323,JP,5,1"))
    assert len(blocks) == 1
    # When a file with a 3 MB cell is read, Then again with larger blocks, never beyond its size decoded
    blocks.clear()
    path = _file(tmp_path, "declarations", f"D9,2024-03-01,{'x' * 3_000_000},870323,JP,5,1", name="big.csv")
    assert prepare_batch(path, "declarations").rejected["reason"].tolist() == ["too_long"]
    assert len(blocks) == 2 and blocks[1] > blocks[0] and blocks[1] <= 3 * path.stat().st_size + 1


def test_rows_after_a_malformed_row_keep_their_row_numbers(tmp_path):
    path = _file(tmp_path, "declarations", "D8,2024-03-01", "D9,2024-03-01,IMP1,870323,JP,5,1")
    batch, summary = _ingest(path, tmp_path)
    assert (summary.read, summary.stored, summary.quarantined) == (4, 3, 1)
    assert batch.valid.set_index("declaration_id")["row_number"].to_dict() == {"D1": 1, "D9": 3, "D2": 4}
    assert batch.rejected["row_number"].tolist() == [2]
    assert "expected 7 fields, found 2" in batch.rejected["message"].iloc[0]


def test_a_file_of_only_malformed_rows_is_refused_naming_the_first(tmp_path):
    path = tmp_path / "declarations.csv"
    path.write_text(HEADERS["declarations"] + "\nD1;2024;x\nD2;2024;y\n")
    with pytest.raises(UserError, match="line 2.*expected 7 fields, found 1.*delimiter"):
        prepare_batch(path)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("2023-03-01T02:00:00+05:00", "2023-02-28"),  # 2023-02-28T21:00Z
        ("2023-03-01T10:00:00+05:00", "2023-03-01"),
        ("2023-03-01T23:30:00-02:00", "2023-03-02"),
        ("2023-03-01T10:00:00Z", "2023-03-01"),
        ("2023-03-01 23:59:59", "2023-03-01"),  # naive: its own date, the time of day dropped
        ("2023-03-01T00:00:01", "2023-03-01"),
    ],
)
def test_datetimes_become_the_date_in_utc_without_refusing_the_file(tmp_path, value, stored):
    # Given a file where one date carries a time (and maybe an offset) and the others are plain dates
    path = _file(tmp_path, "declarations", f"D9,{value},IMP1,870323,JP,5,1")
    # When it is ingested
    batch, summary = _ingest(path, tmp_path)
    # Then every row is stored, that one as a day (in UTC where an offset was given)
    assert summary.stored == 3 and summary.quarantined == 0
    dates = batch.valid.set_index("declaration_id")["declaration_date"]
    assert dates["D9"] == pd.Timestamp(stored)
    assert (dates == dates.dt.normalize()).all()


def test_a_zero_width_copy_of_a_stored_id_is_the_same_declaration(tmp_path):
    # Given a stored declaration D1
    _ingest(_file(tmp_path, "declarations", name="declarations_a.csv"), tmp_path)
    # When a later file carries D1 with a zero-width space, a BOM and surrounding spaces, and full-width IMP1
    second = tmp_path / "declarations_b.csv"
    second.write_text(HEADERS["declarations"] + "\n\u200bD1\ufeff ,2024-03-01, ＩＭＰ１ ,870323,JP,100,10\n")
    _, summary = _ingest(second, tmp_path)
    # Then it is a duplicate of D1, not a new declaration
    assert (summary.stored, summary.duplicates) == (0, 1)
    ids = Warehouse(tmp_path / "w.duckdb").read("SELECT declaration_id, importer_id FROM declarations")
    assert sorted(ids["declaration_id"]) == ["D1", "D2"] and set(ids["importer_id"]) == {"IMP1", "IMP2"}


def test_a_zero_width_copy_with_other_values_is_a_conflict_not_a_new_id(tmp_path):
    path = _file(tmp_path, "declarations", "D1\u200d,2024-03-01,IMP1,870323,JP,999,10")
    batch, _ = _ingest(path, tmp_path)
    assert batch.rejected["reason"].tolist() == ["duplicate_id", "duplicate_id"]


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"inspected": "0", "fraud": "1"}, "fraud=1 but inspected=0"),
        ({"fraud": "0", "revenue": "120"}, "revenue 120.0 > 0 but fraud=0"),
        ({"control_date": "2024-02-01"}, "control_date 2024-02-01 before declaration_date 2024-03-01"),
    ],
)
def test_contradictory_labels_say_which_labels_contradict_once(tmp_path, overrides, says):
    labels = {"inspected": "1", "fraud": "0", "revenue": "0", "control_date": "2024-03-05", **overrides}
    path = tmp_path / "declarations.csv"
    path.write_text(HEADERS["declarations"] + ",inspected,fraud,revenue,control_date\n"
                    "D1,2024-03-01,IMP1,870323,JP,100,10," + ",".join(labels.values()) + "\n")
    batch, _ = _ingest(path, tmp_path)
    message = batch.rejected.loc[0, "message"]
    assert batch.rejected.loc[0, "reason"] == "inconsistent_labels"
    assert says in message and message.count(says) == 1 and len(message) < 200


def test_an_unbalanced_quote_refuses_the_file_naming_the_line(tmp_path):
    path = _file(tmp_path, "declarations", 'D9,2024-03-01,"IMP1,870323,JP,5,1', "D8,2024-03-01,IMP1,870323,JP,5,1")
    with pytest.raises(UserError, match=r"line 3.*quote"):
        prepare_batch(path)


def test_an_unclosed_quote_at_the_end_is_refused_not_merged(tmp_path):
    path = _file(tmp_path, "declarations")
    path.write_text(path.read_text() + 'D9,2024-03-01,IMP1,870323,JP,5,"1\nD8,2024-03-01,IMP1,870323,JP,5,1\n')
    with pytest.raises(UserError, match=r"line 4.*quote"):
        prepare_batch(path)


def test_a_latin1_byte_names_its_line_and_suggests_the_encoding(tmp_path):
    path = tmp_path / "declarations.csv"
    path.write_bytes((HEADERS["declarations"] + "\nD1,2024-03-01,IMP1,870323,JP,100,10\n").encode()
                     + "D2,2024-03-01,Société,870323,FR,1,1\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"line 3.*byte.*(latin-1|cp1252).*encoding") as info:
        prepare_batch(path)
    assert "binary" not in str(info.value)
    batch = prepare_batch(path, mapping=ColumnMapping(encoding="latin-1"))
    assert batch.valid["importer_id"].tolist() == ["IMP1", "Société"]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le"])
def test_utf16_is_read_when_the_mapping_says_so_and_otherwise_gets_a_hint(tmp_path, codec):
    path = tmp_path / "declarations.csv"
    path.write_bytes(("\n".join([HEADERS["declarations"], *GOOD["declarations"]]) + "\n").encode(codec))
    with pytest.raises(UserError, match="utf-16") as info:
        prepare_batch(path)
    assert "binary" not in str(info.value)
    batch = prepare_batch(path, mapping=ColumnMapping(encoding="utf-16" if codec == "utf-16" else "utf-16-le"))
    assert batch.valid["declaration_id"].tolist() == ["D1", "D2"]


def test_a_utf8_bom_does_not_rename_the_first_column(tmp_path):
    path = tmp_path / "declarations.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join([HEADERS["declarations"], *GOOD["declarations"]]) + "\n").encode())
    batch = prepare_batch(path)
    assert batch.valid["declaration_id"].tolist() == ["D1", "D2"]


# Property: whatever text or number lands in whatever field, prepare_batch answers and the counts reconcile.
FIELDS = HEADERS["declarations"].split(",") + ["inspected", "fraud", "revenue", "control_date", "bill_of_lading"]
NASTY = ["", " ", "inf", "-Infinity", "1e400", "NaN", "NULL", "NA", "9223372036854775808", "-0", "1,5", "0x1F",
         "2023-03-01T02:00:00+05:00", "2023-03-01 10:00", "2024-02-30", "99999-01-01", "\u200b", "\ufeffD1",
         "ＩＭＰ１", "x" * 150, '"', "a,b", "line\nbreak", "870323", "JP", "1", "0", "2",
         "IMP\x001", "CO\x00BOG", "\x1b[0m", "\x85"]
VALUE = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),  # NUL included: a row's problem, not the file's
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries({f: VALUE for f in FIELDS}), min_size=1, max_size=4),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
def test_random_values_in_every_field_never_crash_and_always_reconcile(tmp_path, rows, quoting):
    # Given a well-formed CSV (Python's csv module quotes what needs quoting) of arbitrary values in every field
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, quoting=quoting)
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / "declarations.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    # When it is prepared, Then it answers (at worst a one-line refusal) and every row is accounted for
    try:
        batch = prepare_batch(path)
    except UserError as exc:  # a file-level refusal is an answer, as long as it is one readable line
        assert "\n" not in str(exc) and len(str(exc)) < 600
        return
    assert batch.read == len(rows)
    assert batch.read == len(batch.valid) + len(batch.rejected) + batch.duplicates
    assert batch.rejected["reason"].str.split(";").explode().isin(list(REASONS)).all()
    assert batch.valid["declaration_id"].str.len().le(MAX_ID_LENGTH).all()
    assert pd.api.types.is_float_dtype(batch.valid["declared_value"])
    assert batch.valid["declared_value"].abs().lt(float("inf")).all()
    for column in batch.valid.select_dtypes("str"):  # nothing stored holds what no text field may hold
        assert not invalid_text_mask(batch.valid[column]).any(), column
