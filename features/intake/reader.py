"""Read a landing file (CSV or Parquet) into a frame of raw values, refusing what is not one.

What is refused as a whole (a UserError naming the place): a file that is not CSV or Parquet (a NUL byte in the
header line says binary content: a zip, an Excel workbook, a compressed file), text in another encoding than the
mapping's (with the line, the byte offset and a guess at the right encoding), and a quote that opens a value and
never closes (it swallows the rest of the file). Nothing in a row refuses the file: a CSV row with more or fewer
fields than the header comes back apart, with its line, for the quarantine, and a NUL byte or a cell of any size in
a data row is read as text, for the row checks to quarantine (`invalid_text`, `too_long`).
"""
from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.errors import UserError

# "NA" is Namibia, so it is not a null marker here (pandas would read it as missing).
NULL_MARKERS = ["", "NULL", "null", "NaN", "nan", "N/A", "n/a", "None", "#N/A"]
CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
PARQUET_MAGIC = b"PAR1"
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")  # bytes cp1252 has no character for (latin-1 has)
ZIP_MAGIC = b"PK\x03\x04"  # an .xlsx workbook is a zip archive
# Arrow parses a CSV in blocks, and a row longer than a block is an error ("straddles two block boundaries"), so a
# file with one giant cell is read again with blocks this many times larger, up to the file's size decoded to UTF-8
# (a byte of a single-byte encoding takes at most 3 bytes there) and Arrow's largest block (2 GiB).
BLOCK_GROWTH = 8
UTF8_GROWTH = 3
LARGEST_BLOCK = 2**31 - 1
MALFORMED_COLUMNS = ["position", "line", "message", "text"]


@dataclass
class RawFile:
    """A file's rows as read. `frame` is indexed by each row's position among the file's data rows (0-based),
    so positions skip the rows set aside in `malformed` (rows with the wrong number of fields)."""

    frame: pd.DataFrame
    malformed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=MALFORMED_COLUMNS))

    @property
    def read(self) -> int:
        return len(self.frame) + len(self.malformed)


def utf16_kind(head: bytes) -> str | None:
    """'utf-16' (a byte-order mark), 'utf-16-le' or 'utf-16-be' (NULs in alternate bytes), or None."""
    if head.startswith(UTF16_BOMS):
        return "utf-16"
    even, odd = head[0:4096:2], head[1:4096:2]
    if len(odd) < 2:
        return None
    if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.1 * len(odd):
        return "utf-16-be"
    return None


def detect_format(path: Path) -> str:
    """'csv' or 'parquet', judged by content as well as name; anything else is refused."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty")
    with path.open("rb") as fh:
        head = fh.read(65536)
    suffix = path.suffix.lower()
    if head[:4] == PARQUET_MAGIC:
        return "parquet"
    if suffix in PARQUET_SUFFIXES:
        raise UserError(f"{path}: named {suffix} but is not a Parquet file")
    if suffix not in CSV_SUFFIXES:
        raise UserError(f"{path}: not a CSV or Parquet file (expected .csv, .txt, .tsv, .parquet or .pq)")
    if head.startswith(ZIP_MAGIC):
        raise UserError(f"{path}: a zip archive (an Excel workbook is one), not a CSV file; export it as CSV")
    if b"\x00" in head.split(b"\n", 1)[0] and utf16_kind(head) is None:
        raise UserError(f"{path}: binary content (a NUL byte in the header line), not a CSV file")
    return "csv"


def sniff_delimiter(header: str) -> str:
    """The most frequent of , ; tab | in the header line."""
    return max([",", ";", "\t", "|"], key=header.count)


def read_raw(path: Path, delimiter: str | None = None, encoding: str = "utf-8") -> RawFile:
    """Every row of the file, or a UserError: a CSV row with the wrong number of fields refuses the file here,
    naming its line (scoring answers every row, so it cannot set one aside). Ingest uses `read_rows`."""
    raw = read_rows(path, delimiter, encoding)
    if len(raw.malformed):
        more = len(raw.malformed) - 1
        raise UserError(f"{path}: {raw.malformed['message'].iloc[0]}"
                        + (f" (and {more:,} more row{'s' if more > 1 else ''} like it)" if more else ""))
    return raw


def read_rows(path: Path, delimiter: str | None = None, encoding: str = "utf-8") -> RawFile:
    """Read every column as stored: CSV as text (so leading zeros survive), Parquet with its own types.

    CSV rows with more or fewer fields than the header come back in `malformed`, with their line."""
    if detect_format(path) == "parquet":
        try:
            raw = RawFile(_parquet_frame(pq.read_table(path)))
        except Exception as exc:  # a corrupt footer, a truncated upload
            raise UserError(f"{path}: unreadable Parquet file ({exc})") from exc
    else:
        raw = _read_csv(path, delimiter, encoding)
    if len(raw.frame) == 0:
        if len(raw.malformed):
            first = raw.malformed["message"].iloc[0]
            raise UserError(f"{path}: no row has as many fields as the header ({first}); check the delimiter")
        raise UserError(f"{path}: no data rows")
    _unique(path, raw.frame.columns)
    return raw


INTEGER_TYPES = {t: pd.Int64Dtype() for t in (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(),
                                              pa.uint16(), pa.uint32())}


def _parquet_frame(table: pa.Table) -> pd.DataFrame:
    """A Parquet table as read rows: whole numbers stay exact integers where a value is missing (pandas' default
    turns such a column into floats, and 9007199254740993 into ...992), and a dictionary-encoded (categorical)
    column is its values, checked like any other text. A stored pandas index is not data."""
    frame = table.to_pandas(types_mapper=INTEGER_TYPES.get).reset_index(drop=True)
    for column in frame.columns[[isinstance(t, pd.CategoricalDtype) for t in frame.dtypes]]:
        frame[column] = frame[column].astype(frame[column].cat.categories.dtype)
    return frame


def read_header(path: Path, delimiter: str | None = None, encoding: str = "utf-8") -> list[str]:
    """The file's column names as `read_rows` reads them, reading no row; a file it would refuse for what it is
    (not CSV or Parquet, another encoding, no header) is refused alike."""
    if detect_format(path) == "parquet":
        try:
            schema = pq.read_schema(path)
        except Exception as exc:  # a corrupt footer, a truncated upload
            raise UserError(f"{path}: unreadable Parquet file ({exc})") from exc
        index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
        names = [n for n in schema.names if n not in index]  # a stored pandas index is not data
    else:
        names = _csv_header(path, delimiter, encoding)[1]
    _unique(path, pd.Index(names))
    return names


def _unique(path: Path, columns: pd.Index) -> None:
    repeated = columns[columns.duplicated()].tolist()
    if repeated:
        raise UserError(f"{path}: repeated column names {repeated}")


def _codec(path: Path, encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError as exc:
        raise UserError(f"{path}: unknown encoding {encoding!r} in the mapping (e.g. utf-8, cp1252, utf-16)") from exc


def _csv_header(path: Path, delimiter: str | None, encoding: str) -> tuple[str, list[str]]:
    """The delimiter (given, or sniffed from the header line) and the column names."""
    codec = _codec(path, encoding)
    with path.open("rb") as fh:
        head = fh.read(65536)
    wide = utf16_kind(head)
    if wide and not codec.startswith("utf-16"):
        mark = "with" if head.startswith(UTF16_BOMS) else "without"
        raise UserError(f"{path}: the file is UTF-16 text ({mark} a byte-order mark), not {encoding}: "
                        f"set encoding: {wide} in the mapping")
    try:  # utf-8-sig: a byte-order mark is not part of the first column's name
        with path.open(encoding="utf-8-sig" if codec == "utf-8" else encoding, newline="") as fh:
            header = fh.readline().lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise UserError(_decode_message(path, encoding, head)) from exc
    if not header.strip():
        raise UserError(f"{path}: the first line is empty; a CSV needs a header row")
    sep = delimiter or sniff_delimiter(header)
    return sep, next(csv.reader([header], delimiter=sep))


def _read_csv(path: Path, delimiter: str | None, encoding: str) -> RawFile:
    sep, names = _csv_header(path, delimiter, encoding)
    table, ragged = _arrow_csv(path, encoding, sep, names, threads=True)
    if ragged:  # read again on one thread: only then does Arrow number the rows it sets aside
        table, ragged = _arrow_csv(path, encoding, sep, names, threads=False)
    frame = table.to_pandas()
    swallowed = [r for r in ragged if "\n" in r["text"] or "\r" in r["text"]]
    last_spans = table.num_rows > 0 and any(
        isinstance(v, str) and ("\n" in v or "\r" in v) for v in table.slice(table.num_rows - 1).to_pylist()[0].values())
    if not ragged and not last_spans:
        return RawFile(frame)
    starts = _record_lines(path, encoding, sep)  # the physical line each record starts on (the header is record 1)
    line = lambda number: starts[number - 1] if number is not None and 0 < number <= len(starts) else None  # noqa: E731
    if swallowed:
        at = line(swallowed[0]["number"])
        raise UserError(f"{path}: {_where(at, swallowed[0]['number'])}: a quoted value runs over several lines and "
                        "leaves the row with the wrong number of fields: a quote (\") opens a value that never closes, "
                        "so the rest of the file cannot be read; fix that quote (a quote inside a quoted value is "
                        "written twice: \"\")")
    if last_spans:
        last = 1 + len(frame) + len(ragged)
        if _unclosed(path, encoding, sep, line(last)):
            raise UserError(f"{path}: {_where(line(last), last)}: a quote (\") opens a value that never closes, so "
                            "the rest of the file is read as that one value; fix that quote (a quote inside a quoted "
                            "value is written twice: \"\")")
    if not ragged:
        return RawFile(frame)
    return _set_aside(frame, ragged, line)


def _arrow_csv(path: Path, encoding: str, sep: str, names: list[str], threads: bool) -> tuple[pa.Table, list[dict]]:
    """The file's rows as text, and the ragged ones apart. A row longer than Arrow's block (a giant cell) is read
    by reading again with larger blocks (BLOCK_GROWTH): only such a file is read more than once, and a block is
    never larger than the whole file decoded needs."""
    block = pacsv.ReadOptions().block_size
    largest = min(UTF8_GROWTH * path.stat().st_size + 1, LARGEST_BLOCK)
    while True:
        try:
            return _arrow_csv_blocks(path, encoding, sep, names, threads, block)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) or block >= largest:
                raise UserError(f"{path}: malformed CSV ({str(exc).splitlines()[0]})") from exc
            block = min(block * BLOCK_GROWTH, largest)


def _arrow_csv_blocks(path: Path, encoding: str, sep: str, names: list[str], threads: bool,
                      block: int) -> tuple[pa.Table, list[dict]]:
    ragged: list[dict] = []

    def keep_apart(row) -> str:  # noqa: ANN001 - pyarrow's InvalidRow
        ragged.append({"number": row.number, "expected": row.expected_columns, "actual": row.actual_columns,
                       "text": row.text})
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(encoding=encoding, column_names=names, skip_rows=1, use_threads=threads,
                                           block_size=block),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True, invalid_row_handler=keep_apart),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                null_values=NULL_MARKERS,
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        if isinstance(exc, UnicodeDecodeError) or "UTF8" in str(exc) or "UTF-8" in str(exc):
            with path.open("rb") as fh:
                raise UserError(_decode_message(path, encoding, fh.read(65536))) from exc
        raise
    return table, ragged


def _where(line: int | None, record: int | None) -> str:
    if line is not None:
        return f"line {line}"
    return f"record {record} (the header is record 1)" if record is not None else "a row"


def _set_aside(frame: pd.DataFrame, ragged: list[dict], line) -> RawFile:  # noqa: ANN001 - record → line
    """The rows read, indexed by position among all data rows, and the ragged ones apart with their line."""
    total = len(frame) + len(ragged)
    positions = [r["number"] - 2 if r["number"] is not None else None for r in ragged]
    if any(p is None or not 0 <= p < total for p in positions) or len(set(positions)) < len(positions):
        positions = list(range(len(frame), total))  # unnumbered (should not happen): after the rows read
    kept = np.setdiff1d(np.arange(total), positions)
    frame.index = pd.Index(kept)
    malformed = pd.DataFrame({
        "position": positions,
        "line": [line(r["number"]) for r in ragged],
        "message": [f"{_where(line(r['number']), r['number'])}: expected {r['expected']} fields, found {r['actual']}"
                    for r in ragged],
        "text": [r["text"] for r in ragged],
    })
    return RawFile(frame, malformed.sort_values("position", ignore_index=True))


def _lines(path: Path, encoding: str) -> list[str]:
    with path.open(encoding="utf-8-sig" if _codec(path, encoding) == "utf-8" else encoding, newline="",
                   errors="replace") as fh:
        return list(fh)


def _record_lines(path: Path, encoding: str, sep: str) -> list[int]:
    """The line each non-empty CSV record starts on, as Python's csv module reads the file (only on the error path)."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    reader = csv.reader(iter(_lines(path, encoding)), delimiter=sep)
    starts = []
    while True:
        before = reader.line_num
        try:
            record = next(reader)
        except StopIteration:
            return starts
        except csv.Error:
            return starts
        if record:
            starts.append(before + 1)


def _unclosed(path: Path, encoding: str, sep: str, start: int | None) -> bool:
    """Whether the record starting on line `start` opens a quote that the end of the file does not close."""
    if start is None:
        return False
    tail = "".join(_lines(path, encoding)[start - 1:])
    try:
        for _ in csv.reader(io.StringIO(tail, newline=""), delimiter=sep, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _decode_message(path: Path, encoding: str, head: bytes) -> str:
    """Where the file stops being `encoding` text (line and byte offset), and which encoding it looks like."""
    found = _first_undecodable(path, encoding)
    if found is None:
        return f"{path}: not {encoding} text; set 'encoding' in the mapping (e.g. cp1252, latin-1, utf-16)"
    line, offset, byte, chunk = found
    guess = _guess_encoding(head, chunk, _codec(path, encoding))
    return (f"{path}: line {line} (byte offset {offset:,}): byte 0x{byte:02X} is not valid {encoding}; "
            f"the file looks like {guess[1]} text: set encoding: {guess[0]} in the mapping")


def _first_undecodable(path: Path, encoding: str) -> tuple[int, int, int, bytes] | None:
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, lines = 0, 1
    with path.open("rb") as fh:
        for chunk in [*iter(lambda: fh.read(1 << 20), b""), b""]:
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                within = max(exc.start - pending, 0)
                byte = chunk[within] if within < len(chunk) else (exc.object[exc.start] if exc.object else 0)
                return lines + chunk[:within].count(b"\n"), offset + within, byte, chunk
            lines += chunk.count(b"\n")
            offset += len(chunk)
    return None


def _guess_encoding(head: bytes, chunk: bytes, codec: str) -> tuple[str, str]:
    """(encoding to set, what to call it): UTF-16 by its NULs, UTF-8 if it decodes, else a Western single-byte set."""
    wide = utf16_kind(head)
    if wide:
        return wide, "UTF-16"
    if codec != "utf-8":
        try:
            codecs.getincrementaldecoder("utf-8")().decode(chunk)
            return "utf-8", "UTF-8"
        except UnicodeDecodeError:
            pass
    if CP1252_UNDEFINED & set(chunk) or codec == "cp1252":
        return "latin-1", "latin-1 (ISO 8859-1)"
    return "cp1252", "cp1252/latin-1 (Western European)"

