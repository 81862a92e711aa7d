"""Read a landing file (CSV or Parquet) into frames of raw values, the whole file or a chunk of rows at a time,
refusing what is not one.

What is refused as a whole (a UserError naming the place): a file that is not CSV or Parquet (a NUL byte in the
header line says binary content: a zip, an Excel workbook, a compressed file), text in another encoding than the
mapping's (with the line, the byte offset and a guess at the right encoding), and a quote that opens a value and
never closes (it swallows the rest of the file). Nothing in a row refuses the file: a CSV row with more or fewer
fields than the header comes back apart, with its line, for the quarantine, and a NUL byte or a cell of any size in
a data row is read as text, for the row checks to quarantine (`invalid_text`, `too_long`).

A file is read as a stream (Arrow's CSV reader on one thread, Parquet batch by batch), so reading it in chunks
(`read_chunks`) holds one chunk of rows at a time; `read_rows` is the whole file as one chunk. Either way a row has
the same position, the same values and the same verdict.
"""
from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from features.errors import UserError
from features.intake.csv_lines import RecordLines, unclosed, where
from features.intake.encoding import UTF16_BOMS, codec_name, decode_message, utf16_kind

# "NA" is Namibia, so it is not a null marker here (pandas would read it as missing).
NULL_MARKERS = ["", "NULL", "null", "NaN", "nan", "N/A", "n/a", "None", "#N/A"]
CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
PARQUET_MAGIC = b"PAR1"
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
    """A file's rows as read (or a chunk of them). `frame` is indexed by each row's position among the file's data
    rows (0-based), so positions skip the rows set aside in `malformed` (rows with the wrong number of fields)."""

    frame: pd.DataFrame
    malformed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=MALFORMED_COLUMNS))

    @property
    def read(self) -> int:
        return len(self.frame) + len(self.malformed)


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
    naming its line (scoring answers every row, so it cannot set one aside). Ingest uses `read_chunks`."""
    return every_row_of(path, read_rows(path, delimiter, encoding))


def every_row_of(path: Path, raw: RawFile) -> RawFile:
    """`raw` (a file or a chunk of it), or the UserError `read_raw` refuses a file with when a row is malformed."""
    if len(raw.malformed):
        more = len(raw.malformed) - 1
        raise UserError(f"{path}: {raw.malformed['message'].iloc[0]}"
                        + (f" (and {more:,} more row{'s' if more > 1 else ''} like it)" if more else ""))
    return raw


def read_rows(path: Path, delimiter: str | None = None, encoding: str = "utf-8") -> RawFile:
    """Read every column as stored: CSV as text (so leading zeros survive), Parquet with its own types.

    CSV rows with more or fewer fields than the header come back in `malformed`, with their line."""
    (raw,) = read_chunks(path, None, delimiter, encoding)
    return raw


def read_chunks(path: Path, chunk_rows: int | None, delimiter: str | None = None,
                encoding: str = "utf-8") -> Iterator[RawFile]:
    """The rows of `read_rows`, `chunk_rows` data rows at a time (None: the whole file as one chunk), in file order:
    each chunk's frame indexed by position in the whole file, with the malformed CSV rows among its positions.

    A refusal of the whole file comes when the reading meets it: a chunk before it may have been given already."""
    chunks = _parquet_chunks(path, chunk_rows) if detect_format(path) == "parquet" else \
        _csv_chunks(path, delimiter, encoding, chunk_rows)
    for number, raw in enumerate(chunks):
        if len(raw.frame) == 0:  # only a file without a single data row gives such a chunk
            if len(raw.malformed):
                first = raw.malformed["message"].iloc[0]
                raise UserError(f"{path}: no row has as many fields as the header ({first}); check the delimiter")
            raise UserError(f"{path}: no data rows")
        if number == 0:
            _unique(path, raw.frame.columns)
        yield raw


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


def _parquet_frames(path: Path, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    """The file's rows, `chunk_rows` at a time (None: all at once); at least one frame, empty for a file of none."""
    try:
        if chunk_rows is None:
            yield _parquet_frame(pq.read_table(path))
            return
        file, given = pq.ParquetFile(path), False
        for batch in file.iter_batches(batch_size=chunk_rows):
            if batch.num_rows:
                given = True
                yield _parquet_frame(pa.Table.from_batches([batch]))
        if not given:
            yield _parquet_frame(file.schema_arrow.empty_table())
    except Exception as exc:  # a corrupt footer, a truncated upload
        raise UserError(f"{path}: unreadable Parquet file ({exc})") from exc


def _parquet_chunks(path: Path, chunk_rows: int | None) -> Iterator[RawFile]:
    start = 0
    for frame in _parquet_frames(path, chunk_rows):
        frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield RawFile(frame)


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


def _csv_header(path: Path, delimiter: str | None, encoding: str) -> tuple[str, list[str]]:
    """The delimiter (given, or sniffed from the header line) and the column names."""
    codec = codec_name(path, encoding)
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
        raise UserError(decode_message(path, encoding, head)) from exc
    if not header.strip():
        raise UserError(f"{path}: the first line is empty; a CSV needs a header row")
    sep = delimiter or sniff_delimiter(header)
    return sep, next(csv.reader([header], delimiter=sep))


def _csv_chunks(path: Path, delimiter: str | None, encoding: str, chunk_rows: int | None) -> Iterator[RawFile]:
    """The CSV's rows as text, `chunk_rows` at a time: Arrow gives the good rows batch by batch and each ragged one
    apart with its record number (one thread reads, so it numbers them), so each row's position is known as it
    comes. A chunk is given once a row after it has come, so every chunk holds a good row (the last chunk holds every
    malformed row left), and a file without good rows gives one chunk of none."""
    sep, names = _csv_header(path, delimiter, encoding)
    reported: list[pacsv.InvalidRow] = []
    with closing(RecordLines(path, encoding, sep)) as line:
        pending: dict[int, pacsv.InvalidRow] = {}  # ragged rows not yet in a chunk, by position
        cursor, held, last = 0, _Held(), None  # cursor: the position after the last good row
        for batch in _csv_batches(path, encoding, sep, names, reported.append):
            _take_reported(path, reported, pending, cursor, line)
            if batch.num_rows == 0:
                continue
            taken = sorted(pending)
            span = np.arange(cursor, cursor + batch.num_rows + len(taken))
            at = span[~np.isin(span, taken)][:batch.num_rows]
            cursor, last = int(at[-1]) + 1, batch
            held.add(batch, at, [pending.pop(p) for p in taken if p < cursor])
            while chunk_rows is not None and held.rows > chunk_rows:
                yield held.cut(chunk_rows, names, line)
        _take_reported(path, reported, pending, cursor, line)
        held.add(None, np.empty(0, dtype=np.int64), [pending.pop(p) for p in sorted(pending)])
        final = held.cut(held.rows, names, line)
        if last is not None and _spans_lines(last):
            number = 1 + held.records  # the last record's (the header is record 1)
            if unclosed(path, encoding, sep, line(number)):
                raise UserError(f"{path}: {where(line(number), number)}: a quote (\") opens a value that never "
                                "closes, so the rest of the file is read as that one value; fix that quote (a quote "
                                "inside a quoted value is written twice: \"\")")
        yield final


def _take_reported(path: Path, reported: list, pending: dict, cursor: int, line: RecordLines) -> None:
    """Ragged rows Arrow has set aside since last asked, by position, but those already in a chunk (a pass with
    larger blocks reports them again). One whose text holds a line break refuses the file: a quote opened a value
    that swallowed the line's end, and the lines after it."""
    for row in reported:
        position = row.number - 2  # the header is record 1
        if position < cursor:
            continue
        if "\n" in row.text or "\r" in row.text:
            at = line(row.number)
            raise UserError(f"{path}: {where(at, row.number)}: a quoted value runs over several lines and leaves the "
                            "row with the wrong number of fields: a quote (\") opens a value that never closes, so "
                            "the rest of the file cannot be read; fix that quote (a quote inside a quoted value is "
                            "written twice: \"\")")
        pending[position] = row
    reported.clear()


def _spans_lines(batch: pa.RecordBatch) -> bool:
    """Whether the batch's last row holds a line break in a value (its quote may be one that never closes)."""
    return any(isinstance(v, str) and ("\n" in v or "\r" in v)
               for v in batch.slice(batch.num_rows - 1).to_pylist()[0].values())


class _Held:
    """Rows read and not yet given: good rows (batches, their positions) and malformed ones (Arrow's rows); and how
    many records, good or malformed, have been read in all."""

    def __init__(self):
        self.batches: list[pa.RecordBatch] = []
        self.positions: list[np.ndarray] = []
        self.ragged: list = []
        self.records = 0

    @property
    def rows(self) -> int:
        return sum(len(p) for p in self.positions)

    def add(self, batch: pa.RecordBatch | None, positions: np.ndarray, ragged: list) -> None:
        if batch is not None:
            self.batches.append(batch)
            self.positions.append(positions)
        self.ragged += ragged
        self.records += len(positions) + len(ragged)

    def cut(self, rows: int, names: list[str], line: RecordLines) -> RawFile:
        """The first `rows` good rows as a chunk, with the malformed rows before the first good row left."""
        schema = pa.schema([(n, pa.string()) for n in names])
        table = pa.Table.from_batches(self.batches, schema=schema)
        positions = np.concatenate([np.empty(0, dtype=np.int64), *self.positions])
        end = positions[rows] if rows < len(positions) else np.inf
        ragged = [r for r in self.ragged if r.number - 2 < end]
        self.ragged = [r for r in self.ragged if r.number - 2 >= end]
        self.batches, self.positions = table.slice(rows).to_batches(), [positions[rows:]]
        frame = table.slice(0, rows).to_pandas()
        taken = positions[:rows]
        contiguous = len(taken) == 0 or taken[-1] - taken[0] + 1 == len(taken)
        frame.index = pd.RangeIndex(taken[0], taken[-1] + 1) if contiguous and len(taken) else pd.Index(taken)
        return RawFile(frame, _malformed(ragged, line))


def _malformed(ragged: list, line: RecordLines) -> pd.DataFrame:
    """The ragged rows apart: position among the data rows, line, what is wrong, the line's text."""
    if not ragged:
        return pd.DataFrame(columns=MALFORMED_COLUMNS)
    ragged = sorted(ragged, key=lambda r: r.number)
    lines = [line(r.number) for r in ragged]
    return pd.DataFrame({
        "position": [r.number - 2 for r in ragged],
        "line": lines,
        "message": [f"{where(at, r.number)}: expected {r.expected_columns} fields, found {r.actual_columns}"
                    for at, r in zip(lines, ragged, strict=True)],
        "text": [r.text for r in ragged],
    })


def _csv_batches(path: Path, encoding: str, sep: str, names: list[str],
                 on_ragged: Callable[[pacsv.InvalidRow], None]) -> Iterator[pa.RecordBatch]:
    """The file's rows as text, batch by batch, the ragged ones to `on_ragged`. A row longer than Arrow's block (a
    giant cell) is read by reading again with larger blocks (BLOCK_GROWTH), past the rows already given: only such a
    file is read more than once, and a block is never larger than the whole file decoded needs."""
    block = pacsv.ReadOptions().block_size
    largest = min(UTF8_GROWTH * path.stat().st_size + 1, LARGEST_BLOCK)
    given = 0
    while True:
        skip = given
        try:
            for batch in _arrow_csv_blocks(path, encoding, sep, names, on_ragged, block):
                batch, skip = batch.slice(min(skip, batch.num_rows)), max(skip - batch.num_rows, 0)
                given += batch.num_rows
                yield batch
            return
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) or block >= largest:
                raise UserError(f"{path}: malformed CSV ({str(exc).splitlines()[0]})") from exc
            block = min(block * BLOCK_GROWTH, largest)


def _arrow_csv_blocks(path: Path, encoding: str, sep: str, names: list[str],
                      on_ragged: Callable[[pacsv.InvalidRow], None], block: int) -> Iterator[pa.RecordBatch]:
    """One pass over the file in blocks of `block` bytes: its rows batch by batch, every value as text."""
    def keep_apart(row: pacsv.InvalidRow) -> str:
        on_ragged(row)
        return "skip"

    try:
        yield from pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(encoding=encoding, column_names=names, skip_rows=1, use_threads=False,
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
                raise UserError(decode_message(path, encoding, fh.read(65536))) from exc
        raise
