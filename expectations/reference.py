"""The reference profile: what a dataset's own accepted history looks like, per kind, under ADUANA_HOME.

Relative expectations (suite entries with a `relative` field, see expectations/suites/*.json) get their
bounds from this profile at run time, never from numbers tuned to one dataset. The profile is a running sum
of mergeable statistics over every accepted batch of the kind:

- per column: rows where the column had values in its batch, and nulls among them (null shares);
- numeric columns with a median/quantile/ceiling template: a log-scale histogram (1/40 decade per bin, about 6 %
  resolution, plus a count of zeros), from which medians and high quantiles are read;
- date columns with a date_fence template: a count per calendar month, from which quartiles are read;
- code columns with a value_set template: every code seen with its count (dropped once a column has more
  than MAX_TRACKED_CODES distinct values: it is then no code column);
- 0/1 columns with a mean template: sum and count of non-null values;
- the same, restricted to labelled rows (features/labels.py), for templates with `"rows": "labelled"`.

A column whose every value is empty in a batch counts as absent from that batch, as in the checks.

What the row contract leaves alone because it is merely implausible (a 754 % duty, a value a million times the
median, a date decades before the rest) is judged here, as a warning on the batch: a `ceiling` bounds every value
by a factor times a quantile of the history, a `date_fence` every date by the history's middle half widened by a
factor of its own span. Both also hold before the dataset has a reference: the batch is then judged against its
own quantiles (robust to a few outliers among many rows; a batch of a handful of rows can hardly warn). Against the
reference they also allow every value accepted before, so a value someone acknowledged as right warns only once.

When it is written: a batch that stored rows and passed every expectation is merged into the reference
after the warehouse transaction has committed. A batch that stored rows but failed a warning keeps its
profile in `pending/<batch_id>.json` until someone acknowledges it (`aduana warnings --ack`), so a unit
error never becomes the yardstick by itself. Files are replaced atomically (tmp + fsync + rename), and a
batch id is merged at most once (the reference lists the batch ids it holds).

The warehouse keeps each stored batch's profile in the batch's own transaction (its batch_profiles table), so a
run that dies after the commit but before the merge loses nothing: the next ingest folds every accepted batch
the reference lacks into it (`fold_in`, flows/ingest.py) and says so.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.labels import labelled

PROFILE_VERSION = 1
BINS_PER_DECADE = 40
MAX_TRACKED_CODES = 1000
SIGMAS = 3.0  # sampling slack: this many binomial standard errors of the batch's size
LABELLED = "labelled"
ALL = "all"
PER_ROW = ("ceiling", "date_fence")  # relative statistics that bound each value: checked on every row of a batch
SELF_BOUNDED = PER_ROW  # relative statistics a batch can be judged on by itself (no reference yet)
INTAKE_COLUMNS = ("row_number", "row_hash")  # what intake adds to a checked batch: no data to profile


class NotComparable(Exception):
    """The reference cannot bound this expectation (no history for the column, a zero median, too many codes)."""


def section_of(expectation: dict) -> str:
    return LABELLED if expectation.get("rows") == LABELLED else ALL


def _needs(suite: dict) -> dict[str, dict[str, set[str]]]:
    """Section → column → statistics that the suite's relative templates read."""
    needs: dict[str, dict[str, set[str]]] = {ALL: {}, LABELLED: {}}
    for e in suite["expectations"]:
        if "relative" in e:
            needs[section_of(e)].setdefault(e["kwargs"]["column"], set()).add(e["relative"]["stat"])
    return needs


def _log_bins(values: np.ndarray) -> tuple[int, dict[str, int]]:
    positive = values[values > 0]
    keys, counts = np.unique(np.floor(np.log10(positive) * BINS_PER_DECADE).astype(np.int64), return_counts=True)
    return int(len(values) - len(positive)), {str(int(k)): int(c) for k, c in zip(keys, counts, strict=True)}


def _column_profile(s: pd.Series, stats: set[str]) -> dict | None:
    values = s.dropna()
    if values.empty:
        return None
    entry: dict = {"rows": int(len(s)), "nulls": int(len(s) - len(values))}
    if stats & {"median", "quantile", "ceiling"} and pd.api.types.is_numeric_dtype(values):
        entry["zeros"], entry["bins"] = _log_bins(values.to_numpy(dtype="float64"))
    if "date_fence" in stats and pd.api.types.is_datetime64_any_dtype(values):
        months = (values.dt.year * 12 + values.dt.month - 1).value_counts()
        entry["months"] = {str(int(k)): int(v) for k, v in months.items()}
    if "mean" in stats and pd.api.types.is_numeric_dtype(values):
        entry["sum"], entry["count"] = float(values.astype("float64").sum()), int(len(values))
    if "value_set" in stats:
        codes = values.astype("str").value_counts()
        entry["codes"] = None if len(codes) > MAX_TRACKED_CODES else {str(k): int(v) for k, v in codes.items()}
    return entry


def profile_frame(frame: pd.DataFrame, suite: dict, kind: str) -> dict:
    """The profile of one batch (the rows its expectations were checked on)."""
    needs = _needs(suite)
    sections = {}
    for section, part, columns in ((ALL, frame, [c for c in frame.columns if c not in INTAKE_COLUMNS]),
                                   (LABELLED, frame[labelled(frame)], list(needs[LABELLED]))):
        entries = {c: _column_profile(part[c], needs[section].get(c, set())) for c in columns if c in part.columns}
        sections[section] = {"rows": int(len(part)), "columns": {c: e for c, e in entries.items() if e is not None}}
    return {"version": PROFILE_VERSION, "kind": kind, "rows": int(len(frame)), "batches": [], "sections": sections}


def _merge_entry(old: dict, new: dict) -> dict:
    out = dict(old)
    for key in ("rows", "nulls", "zeros", "sum", "count"):
        if key in new:
            out[key] = old.get(key, 0) + new[key]
    for histogram in ("bins", "months"):
        if histogram in new:
            counts = dict(old.get(histogram, {}))
            for k, v in new[histogram].items():
                counts[k] = counts.get(k, 0) + v
            out[histogram] = counts
    if "codes" in new:
        if new["codes"] is None or ("codes" in old and old["codes"] is None):
            out["codes"] = None  # too many distinct values once: never a code column again
        else:
            codes = dict(old.get("codes") or {})
            for k, v in new["codes"].items():
                codes[k] = codes.get(k, 0) + v
            out["codes"] = None if len(codes) > MAX_TRACKED_CODES else codes
    return out


def merge(reference: dict | None, profile: dict, batch_id: str) -> dict:
    """The reference with one more batch's profile added (unchanged if that batch was merged before)."""
    if reference is None:
        reference = {"version": PROFILE_VERSION, "kind": profile["kind"], "rows": 0, "batches": [],
                     "sections": {ALL: {"rows": 0, "columns": {}}, LABELLED: {"rows": 0, "columns": {}}}}
    if batch_id in reference["batches"]:
        return reference
    out = {**reference, "rows": reference["rows"] + profile["rows"], "batches": [*reference["batches"], batch_id],
           "updated_at": datetime.now(UTC).isoformat(timespec="seconds"), "sections": {}}
    for name in (ALL, LABELLED):
        old, new = reference["sections"].get(name, {"rows": 0, "columns": {}}), profile["sections"][name]
        columns = dict(old["columns"])
        for column, entry in new["columns"].items():
            columns[column] = _merge_entry(columns.get(column, {}), entry)
        out["sections"][name] = {"rows": old["rows"] + new["rows"], "columns": columns}
    return out


def _quantile_key(counts: dict[str, int], q: float, below: int = 0) -> int | None:
    """The key of the histogram bin holding the q-quantile (None: among the `below` values under every bin)."""
    keys = sorted((int(k), v) for k, v in counts.items())
    rank, seen = q * (below + sum(v for _, v in keys)), below
    if rank <= seen:
        return None
    for key, count in keys:
        seen += count
        if rank <= seen:
            return key
    return keys[-1][0]


def quantile(entry: dict, q: float) -> float | None:
    """The q-quantile read off a column's histogram (the bin's geometric centre; 0 among the zeros)."""
    if "bins" not in entry or entry.get("zeros", 0) + sum(entry["bins"].values()) == 0:
        return None
    key = _quantile_key(entry["bins"], q, entry.get("zeros", 0))
    return 0.0 if key is None else float(10 ** ((key + 0.5) / BINS_PER_DECADE))


def _highest(entry: dict) -> float:
    """The top of the histogram's highest bin: at least the largest value counted."""
    return float(10 ** ((max(map(int, entry["bins"])) + 1) / BINS_PER_DECADE)) if entry.get("bins") else 0.0


_FIRST_MONTH = pd.Timestamp.min.year * 12 + pd.Timestamp.min.month  # the first whole month a timestamp holds
_LAST_MONTH = pd.Timestamp.max.year * 12 + pd.Timestamp.max.month - 2  # the last month that ends before the limit


def _month(index: int) -> pd.Timestamp:
    """The first day of a month counted as year × 12 + month − 1 (kept within what a timestamp holds)."""
    index = min(max(index, _FIRST_MONTH), _LAST_MONTH + 1)
    return pd.Timestamp(year=index // 12, month=index % 12 + 1, day=1)


def slack(p: float, n: int) -> float:
    """SIGMAS binomial standard errors of a share p seen on n rows (variance floored at 1/n): small batches are
    not judged on noise."""
    return SIGMAS * math.sqrt(max(p * (1 - p), 1 / max(n, 1)) / max(n, 1))


def _g(x: float) -> str:
    return f"{x:.4g}"


def relative_kwargs(expectation: dict, reference: dict, n: int, *, own_batch: bool = False) -> tuple[dict, str]:
    """The kwargs a relative template gets from the reference, and one line saying where they come from.

    `n` is the number of non-null values the batch has for the column (in the template's rows). With `own_batch`,
    `reference` is the batch's own profile (SELF_BOUNDED statistics only, before the dataset has a reference)."""
    rel, column = expectation["relative"], expectation["kwargs"]["column"]
    entry = reference["sections"].get(section_of(expectation), {}).get("columns", {}).get(column)
    of = "this batch's own" if own_batch else "reference"
    if entry is None:
        raise NotComparable(f"the {of} profile has no values for this column yet")
    stat = rel["stat"]
    if stat == "ceiling":
        q, factor = float(rel["q"]), float(rel["factor"])
        ref = quantile(entry, q)
        if not ref:
            raise NotComparable(f"the {of} {q:g} quantile is 0 or unknown, so no factor bounds it")
        highest = 0.0 if own_batch else _highest(entry)
        bound = max(ref * factor, highest)
        raised = f", raised to the highest value accepted before ({_g(highest)})" if highest > ref * factor else ""
        return ({"max_value": bound},
                f"{of} {q:g} quantile {_g(ref)} × {_g(factor)} = {_g(ref * factor)}{raised}: every value ≤ {_g(bound)}")
    if stat == "date_fence":
        if not entry.get("months"):
            raise NotComparable(f"the {of} profile has no dates for this column yet")
        low, high = _quantile_key(entry["months"], 0.25), _quantile_key(entry["months"], 0.75)
        reach = math.ceil(float(rel["factor"]) * max(high - low, 1))  # at least a month: the histogram's resolution
        first, last = low - reach, high + reach
        if not own_batch:
            first, last = min(first, *map(int, entry["months"])), max(last, *map(int, entry["months"]))
        since, until = _month(first), _month(last + 1) - pd.Timedelta(days=1)
        return ({"min_value": since.isoformat(), "max_value": until.isoformat()},
                f"{of} dates' middle half {_month(low):%Y-%m} to {_month(high):%Y-%m}, widened {_g(float(rel['factor']))}× "
                f"its span each side{'' if own_batch else ' and to every month accepted before'}: "
                f"{since:%Y-%m-%d} to {until:%Y-%m-%d}")
    if stat == "median":
        ref, factor = quantile(entry, 0.5), float(rel["factor"])
        if not ref:
            raise NotComparable("the reference median is 0, so no factor bounds it")
        return ({"min_value": ref / factor, "max_value": ref * factor},
                f"reference median {_g(ref)}, allowed ×/÷{_g(factor)}: {_g(ref / factor)}–{_g(ref * factor)}")
    if stat == "quantile":
        q, factor = float(rel["q"]), float(rel["factor"])
        ref = quantile(entry, q)
        if not ref:
            raise NotComparable(f"the reference {q:g} quantile is 0, so no factor bounds it")
        mostly = max(0.0, q - slack(1 - q, n))
        return ({"max_value": ref * factor, "mostly": mostly},
                f"reference {q:g} quantile {_g(ref)}; at least {mostly:.1%} of values ≤ {_g(factor)}× that = {_g(ref * factor)}")
    if stat == "value_set":
        codes, max_codes = entry.get("codes"), int(rel.get("max_codes", MAX_TRACKED_CODES))
        if codes is None or len(codes) > max_codes:
            raise NotComparable(f"more than {max_codes} distinct values in the reference: not a code column here")
        mostly = max(0.0, float(rel["mostly"]) - slack(1 - float(rel["mostly"]), n))
        return ({"value_set": sorted(codes), "mostly": mostly},
                f"{len(codes)} codes seen in the reference; at least {mostly:.1%} of values among them")
    if stat == "null_share":
        ref = entry["nulls"] / entry["rows"]
        allowed = min(1.0, ref + float(rel["max_increase"]) + slack(ref, n))
        return ({"min_value": 1 - allowed},
                f"reference null share {ref:.1%}; allowed up to {allowed:.1%}")
    if stat == "mean":
        if not entry.get("count"):
            raise NotComparable("the reference has no numeric values for this column")
        ref = entry["sum"] / entry["count"]
        tol = float(rel["tolerance"]) + slack(ref, n)
        low, high = max(0.0, ref - tol), min(1.0, ref + tol)
        return ({"min_value": low, "max_value": high},
                f"reference mean {ref:.3f} ({entry['count']:,} values), allowed {low:.3f}–{high:.3f}")
    raise ValueError(f"unknown relative statistic {stat!r} in the suite")


# --- files -------------------------------------------------------------------------------------------------

def reference_path(folder: Path, kind: str) -> Path:
    return Path(folder) / f"{kind}.json"


def pending_path(folder: Path, batch_id: str) -> Path:
    return Path(folder) / "pending" / f"{batch_id}.json"


def load_reference(folder: Path, kind: str) -> dict | None:
    """The kind's reference profile, or None when no batch of this dataset has been accepted yet."""
    path = reference_path(folder, kind)
    return json.loads(path.read_text()) if path.exists() else None


def _write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer at a time per reference folder (read, merge, replace)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as fh:
        try:
            import fcntl
        except ImportError:  # not POSIX: DuckDB's single writer already serialises ingests
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fold_in(folder: Path, kind: str, profiles: list[tuple[str, dict]]) -> list[str]:
    """Merge accepted batches' profiles (batch id, profile) into the kind's reference; the ids it lacked.

    Their pending files go after the merge: a crash in between merges nothing twice (the reference keeps the ids)."""
    folder = Path(folder)
    with _locked(folder):
        reference = load_reference(folder, kind)
        known = set(reference["batches"]) if reference else set()
        lacking = [(batch_id, profile) for batch_id, profile in profiles if batch_id not in known]
        for batch_id, profile in lacking:
            reference = merge(reference, profile, batch_id)
        if lacking:
            _write_atomic(reference_path(folder, kind), reference)
    for batch_id, _ in profiles:
        pending_path(folder, batch_id).unlink(missing_ok=True)
    return [batch_id for batch_id, _ in lacking]


def caught_up(folder: Path, kind: str, stored: Callable[[list[str]], list[tuple[str, dict]]]) -> tuple[dict | None,
                                                                                                      list[str]]:
    """The kind's reference with every accepted batch it lacks folded in, and the ids folded. `stored(skip)` lists
    the accepted batches' (id, profile) but those in `skip`: a run that died after its store committed and before
    the reference took its profile left one out."""
    reference = load_reference(folder, kind)
    lacking = stored(reference["batches"] if reference else [])
    if not lacking:
        return reference, []
    folded = fold_in(folder, kind, lacking)
    return load_reference(folder, kind), folded


def record_batch(folder: Path, batch_id: str, profile: dict, accepted: bool) -> Path:
    """After a batch stored rows: merge its profile into the reference if it passed, else keep it pending."""
    folder = Path(folder)
    if not accepted:
        path = pending_path(folder, batch_id)
        _write_atomic(path, profile)
        return path
    fold_in(folder, profile["kind"], [(batch_id, profile)])
    return reference_path(folder, profile["kind"])


def accept_pending(folder: Path, batch_id: str) -> bool:
    """Merge a pending (warned, now acknowledged) batch's profile into the reference. False if none is pending."""
    pending = pending_path(folder, batch_id)
    if not pending.exists():
        return False
    profile = json.loads(pending.read_text())
    fold_in(folder, profile["kind"], [(batch_id, profile)])
    return True


def reference_summary(reference: dict | None) -> dict:
    """What Data Docs and the report say about the reference a batch was compared with."""
    if reference is None:
        return {"rows": 0, "batches": 0}
    return {"rows": reference["rows"], "batches": len(reference["batches"]), "updated_at": reference.get("updated_at")}
