"""Where a CSV record is in its file, for the words of a refusal or a quarantine message: the physical line a record
starts on (a quoted value may hold line breaks, so records and lines differ), and whether a record's quote closes
before the end of the file.

Only a file with a malformed row or a value over several lines asks (features/intake/reader.py). The file is read
line by line with Python's csv module, as far as asked and no further, so a large file costs no more memory here
than its longest record.
"""
from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import TextIO

from features.intake.encoding import codec_name


def _text(path: Path, encoding: str) -> TextIO:
    """The file as text, a byte-order mark left out and what does not decode replaced (these are only words)."""
    return path.open(encoding="utf-8-sig" if codec_name(path, encoding) == "utf-8" else encoding, newline="",
                     errors="replace")


class RecordLines:
    """The line each non-empty record starts on (the header is record 1), as Python's csv module reads the file:
    `lines(number)`, None past what it can read. Asked in increasing order it reads the file once; asked for an
    earlier record, it starts again from the top. `close()` lets go of the file."""

    def __init__(self, path: Path, encoding: str, sep: str):
        self.path, self.encoding, self.sep = path, encoding, sep
        self._file: TextIO | None = None
        self._reader = None
        self._record, self._start = 0, None

    def _open(self) -> None:
        self.close()
        csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
        self._file = _text(self.path, self.encoding)
        self._reader = csv.reader(self._file, delimiter=self.sep)
        self._record, self._start = 0, None

    def __call__(self, number: int | None) -> int | None:
        if number is None or number < 1:
            return None
        if self._file is None or number < self._record:
            self._open()
        while self._record < number and self._reader is not None:
            before = self._reader.line_num
            try:
                record = next(self._reader)
            except (StopIteration, csv.Error):  # the end, or what csv cannot read: no line for the records after
                self._reader = None
                break
            if record:
                self._record, self._start = self._record + 1, before + 1
        return self._start if self._record == number else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file, self._reader = None, None


def unclosed(path: Path, encoding: str, sep: str, start: int | None) -> bool:
    """Whether the record starting on line `start` opens a quote that the end of the file does not close."""
    if start is None:
        return False
    with _text(path, encoding) as fh:
        try:
            for _ in csv.reader(itertools.islice(fh, start - 1, None), delimiter=sep, strict=True):
                pass
        except csv.Error as exc:
            return "unexpected end of data" in str(exc)
    return False


def where(line: int | None, record: int | None) -> str:
    """A record's place in words: its line, else its number among the records."""
    if line is not None:
        return f"line {line}"
    return f"record {record} (the header is record 1)" if record is not None else "a row"
