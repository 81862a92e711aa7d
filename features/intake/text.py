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

import unicodedata

import pandas as pd


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
