"""Text that is not in the mapping's encoding, told in words: which encoding a file's bytes look like, and where
(line and byte offset) they stop being the encoding the mapping names. features/intake/reader.py refuses such a file
with these words; nothing here reads more than a megabyte of the file at a time."""
from __future__ import annotations

import codecs
import itertools
from pathlib import Path

from features.errors import UserError

UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")  # bytes cp1252 has no character for (latin-1 has)


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


def codec_name(path: Path, encoding: str) -> str:
    """The codec's own name ('utf-8' for 'UTF8'), or a UserError naming the mapping's unknown encoding."""
    try:
        return codecs.lookup(encoding).name
    except LookupError as exc:
        raise UserError(f"{path}: unknown encoding {encoding!r} in the mapping (e.g. utf-8, cp1252, utf-16)") from exc


def decode_message(path: Path, encoding: str, head: bytes) -> str:
    """Where the file stops being `encoding` text (line and byte offset), and which encoding it looks like."""
    found = _first_undecodable(path, encoding)
    if found is None:
        return f"{path}: not {encoding} text; set 'encoding' in the mapping (e.g. cp1252, latin-1, utf-16)"
    line, offset, byte, chunk = found
    guess = _guess_encoding(head, chunk, codec_name(path, encoding))
    return (f"{path}: line {line} (byte offset {offset:,}): byte 0x{byte:02X} is not valid {encoding}; "
            f"the file looks like {guess[1]} text: set encoding: {guess[0]} in the mapping")


def _first_undecodable(path: Path, encoding: str) -> tuple[int, int, int, bytes] | None:
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, lines = 0, 1
    with path.open("rb") as fh:
        for chunk in itertools.chain(iter(lambda: fh.read(1 << 20), b""), [b""]):  # b"": the end, for the decoder
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
