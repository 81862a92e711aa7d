"""Read a landing file (CSV or Parquet) into a frame of raw values, refusing what is not one."""
from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.data.errors import DataError

# "NA" is Namibia, so it is not a null marker here (pandas would read it as missing).
NULL_MARKERS = ["", "NULL", "null", "NaN", "nan", "N/A", "n/a", "None", "#N/A"]
CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
PARQUET_MAGIC = b"PAR1"


def detect_format(path: Path) -> str:
    """'csv' or 'parquet', judged by content as well as name; anything else is refused."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    with path.open("rb") as fh:
        head = fh.read(65536)
    suffix = path.suffix.lower()
    if head[:4] == PARQUET_MAGIC:
        return "parquet"
    if suffix in PARQUET_SUFFIXES:
        raise DataError(f"{path}: named {suffix} but is not a Parquet file")
    if suffix not in CSV_SUFFIXES:
        raise DataError(f"{path}: not a CSV or Parquet file (expected .csv, .txt, .tsv, .parquet or .pq)")
    if b"\x00" in head:
        raise DataError(f"{path}: binary content, not a CSV file")
    return "csv"


def sniff_delimiter(header: str) -> str:
    """The most frequent of , ; tab | in the header line."""
    return max([",", ";", "\t", "|"], key=header.count)


def read_raw(path: Path, delimiter: str | None = None, encoding: str = "utf-8") -> pd.DataFrame:
    """Read every column as stored: CSV as text (so leading zeros survive), Parquet with its own types."""
    if detect_format(path) == "parquet":
        try:
            frame = pq.read_table(path).to_pandas()
        except Exception as exc:  # a corrupt footer, a truncated upload
            raise DataError(f"{path}: unreadable Parquet file ({exc})") from exc
    else:
        frame = _read_csv(path, delimiter, encoding)
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows")
    repeated = frame.columns[frame.columns.duplicated()].tolist()
    if repeated:
        raise DataError(f"{path}: repeated column names {repeated}")
    return frame


def _read_csv(path: Path, delimiter: str | None, encoding: str) -> pd.DataFrame:
    try:
        with path.open(encoding=encoding, newline="") as fh:
            header = fh.readline()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not {encoding} text; set 'encoding' in the mapping") from exc
    if not header.strip():
        raise DataError(f"{path}: the first line is empty; a CSV needs a header row")
    sep = delimiter or sniff_delimiter(header)
    names = next(csv.reader([header], delimiter=sep))
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                null_values=NULL_MARKERS,
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: malformed CSV ({str(exc).splitlines()[0]})") from exc
    return table.to_pandas()
