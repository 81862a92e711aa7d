"""One normal form for text, so that two spellings of the same id are one id.

The rule, for every text field (ids, codes and free text alike) and for the watch lists they are matched against:

1. Unicode format characters (category Cf: zero-width space and joiners, the byte-order mark, soft hyphen,
   bidirectional marks...) are removed: they are invisible, and a copy-paste adds them.
2. NFKC normalisation: full-width and compatibility forms become their plain letters (ＩＭＰ１ → IMP1), and a
   letter with a combining accent becomes the accented letter (e + ◌́ → é).
3. Surrounding whitespace (Python's idea of it, so no-break and ideographic spaces too) is stripped.

ASCII text is already in this form apart from step 3, so only the values that are not ASCII take the slow path.
"""
from __future__ import annotations

import re
import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa

# What no text field may hold (reason `invalid_text`): C0 controls but tab, LF and CR (a quoted free-text cell may
# hold a line break), DEL and the C1 controls, and unpaired surrogates (JSON's "\udfff" decodes to one; no file
# decoded as UTF-8, UTF-16 or cp1252 can hold one). NFKC leaves all of them in place, so this is checked first.
CONTROLS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
INVALID_TEXT = re.compile(f"[{CONTROLS}\ud800-\udfff]")
_LINE_BYTES = np.array([0x09, 0x0A, 0x0D], dtype=np.uint8)  # tab, LF and CR: the C0 characters text may hold


def invalid_text(value: str) -> str | None:
    """Why `value` cannot be a text field's value ('holds U+0000 at position 3'), or None when it can."""
    found = INVALID_TEXT.search(value)
    if found is None:
        return None
    return f"holds U+{ord(found.group()):04X} at position {found.start() + 1}, which no text field may hold"


def invalid_text_mask(s: pd.Series) -> pd.Series:
    """True where a text value holds what `invalid_text` refuses (missing values are False). A pandas text column
    cannot hold an unpaired surrogate (it is stored as UTF-8), so values from JSON go through `invalid_text` one by
    one before they become a column (features/intake/records.py)."""
    text = s if s.dtype == "str" else s.astype("str")
    if not _may_hold_controls(text):  # the usual case: a pass over the bytes, not a regex over every value
        return pd.Series(False, index=s.index)
    return text.str.contains(f"[{CONTROLS}]", regex=True).fillna(False).astype(bool)


def _may_hold_controls(text: pd.Series) -> bool:
    """False when no byte of the column's UTF-8 text (its Arrow data buffers) can start a control character: a
    few passes over the bytes, where the regex reads every value."""
    chunks = text_chunks(text)
    if chunks is None:
        return True
    for chunk in chunks:
        data = chunk.buffers()[2]
        if data is None:
            continue
        held = np.frombuffer(data, dtype=np.uint8)
        if (held == 0x7F).any() or (held == 0xC2).any():  # DEL; 0xC2 leads the C1 controls (and U+00A0-U+00BF)
            return True
        low = held < 0x20
        if low.any() and np.isin(held[low], _LINE_BYTES, invert=True).any():
            return True
    return False


def text_chunks(values: pd.Series | pd.Index) -> list[pa.Array] | None:
    """A text column's values as the Arrow string arrays pandas keeps them in (no copy), None where it keeps them
    otherwise."""
    if not isinstance(values.dtype, pd.StringDtype) or values.dtype.storage != "pyarrow":
        return None
    stored = values.array.__arrow_array__()
    chunks = stored.chunks if isinstance(stored, pa.ChunkedArray) else [stored]
    return chunks if all(pa.types.is_string(c.type) or pa.types.is_large_string(c.type) for c in chunks) else None


def normalise(value: str) -> str:
    """One value in the normal form (see the module docstring)."""
    if value.isascii():
        return value.strip()
    visible = "".join(ch for ch in value if ch.isascii() or unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFKC", visible).strip()


def normalise_text(s: pd.Series) -> pd.Series:
    """A text column in the normal form, missing values kept missing (an empty result is missing too).

    Vectorised for ASCII values; the others (usually none, at most a few) are normalised one by one."""
    text = s if s.dtype == "str" else s.astype("str")
    out = text.str.strip()
    foreign = out.notna() & ~out.str.isascii().fillna(True).astype(bool)
    if foreign.any():
        out = out.copy()
        out[foreign] = [normalise(v) for v in out[foreign]]
    return out.mask(out.isna() | (out == ""))
