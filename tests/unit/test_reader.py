"""features/intake/reader.py: files that are not data are refused with a clear message; data is read as text."""
from __future__ import annotations

import pytest

from features.errors import UserError
from features.intake.reader import read_raw
from tests.unit.test_mapping import _write


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "declarations.csv", "empty"),
        (b"declaration_id,declaration_date\n", "declarations.csv", "no data rows"),
        (b"PK\x03\x04 fake workbook", "declarations.xlsx", "not a CSV or Parquet"),
        (b"\x00\x01\x02binary", "declarations.csv", "binary"),
        (b"id,name\x00\nD1,x\n", "declarations.csv", r"binary content \(a NUL byte in the header line\)"),
        (b"PK\x03\x04\x14\x00\x06\x00[Content_Types].xml", "declarations.csv", "a zip archive"),
        (b"not parquet at all", "declarations.parquet", "not a Parquet file"),
        (b"\n\nid\n", "declarations.csv", "first line is empty"),
    ],
)
def test_files_that_are_not_data_are_refused(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_raw(path)


def test_a_nul_byte_in_a_data_row_is_read_as_text_for_the_row_checks(tmp_path):
    # Given NUL bytes in data rows, one in the first 64 KB (it used to refuse the file as binary) and one after
    path = tmp_path / "declarations.csv"
    path.write_bytes(b"id,name\nD1,a\x00b\n" + b"D2,ok\n" * 20_000 + b"D3,c\x00d\n")
    # When read, Then every row is there, the NULs as they were (check_rows quarantines them as invalid_text)
    frame = read_raw(path).frame
    assert len(frame) == 20_002 and frame["name"].iloc[[0, -1]].tolist() == ["a\x00b", "c\x00d"]


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
