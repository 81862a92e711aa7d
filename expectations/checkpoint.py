"""Dataset-level validation with Great Expectations: suites kept as JSON under expectations/, Data Docs under ADUANA_HOME.

Expectations about a distribution are judged against the dataset's own accepted history (the reference
profile, expectations/reference.py), not against numbers of one dataset: a suite entry with a `relative`
field gets its bounds from the reference at run time, and is skipped while the dataset has no reference yet
(its first batches set it). Only dataset-independent checks (a row, unique ids, sanity shares that hold for
any customs data) and the self-bounded ones (reference.SELF_BOUNDED: outliers, judged against the batch's own
quantiles until there is a reference) apply from the first batch on. An expectation whose column is absent, or
empty in the batch, is skipped and reported as skipped, not failed.

GX runs on a seeded sample of a large batch, but a per-row bound (reference.PER_ROW: a ceiling, a date fence) is
about single rows, which a sample misses: every row of the batch beyond such a bound (found in pandas from the very
kwargs GX gets) joins the checked rows, its warning counts and shows them over the whole batch, and the sample's
other expectations keep to the sample (a row condition on a marker column), so the added rows bias none of them.

A failed `critical` expectation rejects the batch (its rows go to quarantine); a failed `warning` one is
recorded on the batch, which then counts as not having passed validation until it is acknowledged.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from expectations import SUITES_DIR
from expectations.data_docs import (
    configure_site,
    data_asset_name,
    publish_validation,
    rename_validation,
    run_name,
)
from expectations.docs_assets import VENDOR_DIR
from expectations.reference import (
    INTAKE_COLUMNS,
    LABELLED,
    PER_ROW,
    SELF_BOUNDED,
    NotComparable,
    profile_frame,
    reference_summary,
    relative_kwargs,
)
from features.intake.staging import Rows
from features.labels import labelled

# GX checks label expectations on the rows features/labels.py calls labelled, marked 1 in this column.
LABELLED_MARK = "aduana_labelled"
LABELLED_CONDITION = {"type": "comparison", "column": {"name": LABELLED_MARK}, "operator": "==", "parameter": 1}
# A sampled batch's rows beyond a per-row bound join GX's rows marked 0 here; the other expectations keep to the 1s.
IN_SAMPLE = "aduana_in_sample"
IN_SAMPLE_CONDITION = {"type": "comparison", "column": {"name": IN_SAMPLE}, "operator": "==", "parameter": 1}


@dataclass
class QualityReport:
    passed: bool  # no expectation failed
    rejected: bool  # a critical expectation failed
    evaluated_rows: int
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    docs_index: Path | None = None
    docs_validation: tuple[str, ...] | None = None  # the GX key of this check's Data Docs page
    docs_note: str | None = None  # why the Data Docs would not render offline, and how to fix it (None: they do)
    profile: dict | None = None  # the checked rows' profile, merged into the reference once the batch is stored
    compared: bool = False  # relative expectations were judged against a reference (False: this batch helps set it)


def load_suite(kind: str, suites_dir: Path = SUITES_DIR) -> dict:
    return json.loads((Path(suites_dir) / f"{kind}.json").read_text())


def _columns_of(expectation: dict) -> list[str]:
    kwargs = expectation["kwargs"]
    columns = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]
    return columns + (["inspected"] if expectation.get("rows") == LABELLED and "inspected" not in columns else [])


def _for_gx(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop bookkeeping columns and give nullable integers a float dtype GX aggregates cleanly."""
    out = frame.drop(columns=[c for c in INTAKE_COLUMNS if c in frame.columns])
    for column in out.columns:
        if isinstance(out[column].dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_integer_dtype(out[column]):
            out[column] = out[column].astype("float64")
    return out


def _reference_status(reference: dict | None, spec: dict) -> str | None:
    """Why relative expectations cannot be judged yet (None: they can)."""
    min_rows = int(spec.get("reference", {}).get("min_rows", 1))
    if reference is None:
        return "no reference yet: this dataset's first accepted batch sets it"
    if reference["rows"] < min_rows:
        return f"the reference holds {reference['rows']:,} rows (needs {min_rows:,}): this batch helps set it"
    return None


def plan_expectations(sample: pd.DataFrame, spec: dict, reference: dict | None,
                      profile: dict | None = None) -> tuple[list[dict], list[str]]:
    """The suite's entries as GX configuration dicts for this batch (relative bounds filled in), and the skipped.

    `profile` is the sample's own profile (profile_frame; computed here when None and needed)."""
    not_yet = _reference_status(reference, spec)
    labelled_sample = sample[labelled(sample)]
    planned, skipped = [], []
    for e in spec["expectations"]:
        columns = _columns_of(e)
        label = f"{e['type']} on {', '.join(columns) if columns else 'table'}"
        missing = [c for c in columns if c not in sample.columns]
        if missing:
            skipped.append(f"{e['type']} on {', '.join(missing)}: column not in this file")
            continue
        rows = labelled_sample if e.get("rows") == LABELLED else sample
        if e.get("rows") == LABELLED and rows.empty:
            skipped.append(f"{label}: no labelled rows in this batch")
            continue
        empty = [c for c in columns if not rows[c].notna().any()]
        if empty:  # an empty column (an unlabelled batch's labels) is treated as absent
            skipped.append(f"{label}: {', '.join(empty)} has no values in this batch")
            continue
        kwargs, meta = dict(e["kwargs"]), {}
        if "relative" in e:
            n = int(rows[kwargs["column"]].notna().sum())
            try:
                if not_yet:
                    raise NotComparable(not_yet)
                bounds, meta["reference"] = relative_kwargs(e, reference, n)
            except NotComparable as exc:
                if e["relative"]["stat"] not in SELF_BOUNDED:
                    skipped.append(f"{label}: {exc}")
                    continue
                profile = profile if profile is not None else profile_frame(sample, spec, spec["name"])
                try:
                    bounds, meta["reference"] = relative_kwargs(e, profile, n, own_batch=True)
                except NotComparable as own:
                    skipped.append(f"{label}: {exc}; {own}")
                    continue
            kwargs |= bounds
        if e.get("rows") == LABELLED:
            kwargs["row_condition"] = LABELLED_CONDITION
            meta["rows"] = "labelled rows only (controlled, with a known outcome)"
        planned.append({"type": e["type"], "kwargs": kwargs, "severity": e.get("severity", "warning"),
                        "notes": e.get("notes"), "meta": meta, "labelled": e.get("rows") == LABELLED,
                        "per_row": e.get("relative", {}).get("stat") in PER_ROW})
    return planned, skipped


def beyond_bounds(values: pd.Series, kwargs: dict) -> np.ndarray:
    """Which values lie outside an expect_column_values_to_be_between's min_value/max_value, as GX judges them (a
    null never does). It reads the kwargs GX gets, so the bounds have one source (reference.relative_kwargs)."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if pd.api.types.is_datetime64_any_dtype(values):  # date bounds travel as ISO strings, as GX takes them
        low, high = (None if b is None else pd.Timestamp(b) for b in (low, high))
    out = np.zeros(len(values), dtype=bool)
    if low is not None:
        out |= (values <= low if kwargs.get("strict_min") else values < low).to_numpy(dtype=bool, na_value=False)
    if high is not None:
        out |= (values >= high if kwargs.get("strict_max") else values > high).to_numpy(dtype=bool, na_value=False)
    return out


def seeded_positions(count: int, n: int) -> np.ndarray:
    """n of the positions 0..count-1, drawn without replacement with seed 0: those pandas' `sample(n=n,
    random_state=0)` takes of `count` rows, in its order (it holds a permutation of `count` positions meanwhile)."""
    return np.random.RandomState(0).choice(count, size=n, replace=False)


class _Beyond:
    """One per-row bound over a batch's chunks: how many values break it, and the rows outside the sample that do."""

    def __init__(self, planned: dict):
        self.planned, self.unexpected, self.values = planned, 0, 0
        self.missed: list[np.ndarray] = []
        self.low = self.high = None  # (value, position): the first of the lowest and of the highest missed

    def add(self, chunk: pd.DataFrame, labelled_rows: np.ndarray, outside: np.ndarray) -> None:
        kwargs = self.planned["kwargs"]
        rows = labelled_rows if self.planned["labelled"] else np.ones(len(chunk), dtype=bool)
        values = chunk[kwargs["column"]][rows]
        beyond = beyond_bounds(values, kwargs)
        self.unexpected += int(beyond.sum())
        self.values += int(values.notna().sum())
        missed = values[beyond & outside[rows]]
        if missed.empty:
            return
        self.missed.append(missed.index.to_numpy())
        if self.low is None or missed.min() < self.low[0]:
            self.low = (missed.min(), missed.idxmin())
        if self.high is None or missed.max() > self.high[0]:
            self.high = (missed.max(), missed.idxmax())


def _rows_beyond(rows: Rows, sample: pd.DataFrame, planned: list[dict], limit: int) -> tuple[np.ndarray, np.ndarray]:
    """A sampled batch's rows outside the sample that lie beyond a per-row bound, by position: (those GX also
    checks, those the profile also holds), found in one pass over the batch's chunks. Each planned per-row
    expectation gets the whole batch's count in meta["whole_batch"].

    GX checks at most `limit` such rows (seeded), always with each bound's most extreme values among them, so
    every bound a row of the batch breaks fails; the profile holds only those extremes (a few rows: the sample's
    statistics stay the sample's), enough for an acknowledged batch's every value to count as accepted before
    (reference.relative_kwargs raises a ceiling to the highest value, a fence to every month, in the reference)."""
    bounds = [_Beyond(p) for p in planned if p["per_row"]]
    if not bounds:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    in_sample = np.sort(sample.index.to_numpy())
    for chunk in rows.chunks():
        outside = ~np.isin(chunk.index.to_numpy(), in_sample, assume_unique=True)
        labelled_rows = labelled(chunk)
        for bound in bounds:
            bound.add(chunk, labelled_rows, outside)
    outside, extremes = [], []
    for bound in bounds:
        bound.planned["meta"]["whole_batch"] = {"unexpected": bound.unexpected, "values": bound.values}
        if bound.missed:
            outside += bound.missed
            extremes += [bound.low[1], bound.high[1]]
    extremes = pd.unique(np.asarray(extremes, dtype=np.int64))
    rest = np.setdiff1d(np.concatenate(outside) if outside else np.empty(0, dtype=np.int64), extremes)
    if len(rest) > limit:
        rest = rest[seeded_positions(len(rest), limit)]
    return np.concatenate([extremes, rest]), extremes


def _configuration(planned: dict, sample_only: bool) -> dict:
    """A planned expectation as ExpectationConfiguration's arguments; `sample_only`: GX's rows hold rows beyond a
    per-row bound besides the sample, and every expectation but those bounds (and table-level ones) keeps to the
    sample."""
    kwargs = dict(planned["kwargs"])
    if sample_only and not planned["per_row"] and not planned["type"].startswith("expect_table_"):
        condition = kwargs.get("row_condition")
        kwargs["row_condition"] = IN_SAMPLE_CONDITION if condition is None else \
            {"type": "and", "conditions": [condition, IN_SAMPLE_CONDITION]}
    return {"type": planned["type"], "kwargs": kwargs, "severity": planned["severity"], "notes": planned["notes"],
            "meta": planned["meta"]}


def check_batch(frame: pd.DataFrame | Rows, kind: str, project_root: Path, sample_rows: int = 200_000,
                suites_dir: Path = SUITES_DIR, reference: dict | None = None, *, batch_id: str | None = None,
                source: str | None = None, docs_assets: Path | None = VENDOR_DIR) -> QualityReport:
    """Run the kind's suite through a GX checkpoint (on a seeded sample of at most `sample_rows`, and on every row
    beyond a per-row bound: see the module's docstring) and build Data Docs.

    `frame`: the batch's valid rows, in one frame or a chunk at a time (features/intake/staging.py `Rows`: a large
    file's, read in two passes, one for the sample and one for the rows beyond a bound). Either way GX gets the
    same rows, and the profile is the same.

    `reference` is the kind's reference profile (reference.load_reference); None for a dataset's first batch.
    The Data Docs page is named `<batch_id>: <file name>` and its data asset `<kind>: <source>`; its assets come
    from `docs_assets` (expectations/docs_assets.py; None: leave the CDN links)."""
    rows = frame if isinstance(frame, Rows) else Rows.of(frame)
    if not len(rows):
        return QualityReport(passed=True, rejected=False, evaluated_rows=0, skipped=["no valid rows to check"])
    import great_expectations as gx  # slow import (seconds): only when a batch is checked
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    logging.captureWarnings(False)  # GX turns this on at import, hiding warnings from everyone else
    spec = load_suite(kind, suites_dir)
    sampled = len(rows) > sample_rows
    sample = rows.take(seeded_positions(len(rows), sample_rows) if sampled else np.arange(len(rows)))
    checked = _for_gx(sample)
    profile = profile_frame(checked, spec, kind)
    planned, skipped = plan_expectations(checked, spec, reference, profile)
    added, extremes = _rows_beyond(rows, sample, planned, sample_rows) if sampled else ((), ())
    if len(added):
        profile = profile_frame(pd.concat([checked, _for_gx(rows.take(extremes))]), spec, kind)
        checked = pd.concat([checked.assign(**{IN_SAMPLE: 1}), _for_gx(rows.take(added)).assign(**{IN_SAMPLE: 0})])
    checked = checked.assign(**{LABELLED_MARK: labelled(checked).astype("int8")})
    compared = _reference_status(reference, spec) is None
    usable = [ExpectationConfiguration(**_configuration(p, sample_only=len(added) > 0)) for p in planned]

    project_root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(project_root))
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    configure_site(context)
    context.variables.save()
    datasource = context.data_sources.add_or_update_pandas("aduana")
    asset = next((a for a in datasource.assets if a.name == kind), None) or datasource.add_dataframe_asset(kind)
    definition = next((b for b in asset.batch_definitions if b.name == "batch"), None) \
        or asset.add_batch_definition_whole_dataframe("batch")
    meta = spec.get("meta", {}) | {"reference": reference_summary(reference) if compared else "none yet (this batch helps set it)"}
    suite = context.suites.add_or_update(ExpectationSuite(name=spec["name"], expectations=usable, meta=meta))
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{kind}-batch", data=definition, suite=suite)
    )
    # no UpdateDataDocsAction: the page is built below, once the stored result says which file it checked
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=f"{kind}-ingest", validation_definitions=[validation], actions=[], result_format="SUMMARY",
    ))
    result = checkpoint.run(batch_parameters={"dataframe": checked},
                            run_id=RunIdentifier(run_name=run_name(batch_id, source) or kind))
    failures, rejected = [], False
    for run in result.run_results.values():
        for r in run.results:
            if r.success:
                continue
            config = r.expectation_config
            severity = str(getattr(config.severity, "value", config.severity))
            rejected |= severity == "critical"
            observed = _observed(r.result, (config.meta or {}).get("whole_batch"))
            failures.append(f"{severity}: {config.type} on {_target(config)} ({observed})"
                            + (f"; {config.meta['reference']}" if (config.meta or {}).get("reference") else ""))
    (key,) = result.run_results  # the checkpoint runs one validation definition
    key, docs_index, docs_note = publish_validation(context, key, data_asset_name(kind, source), batch_id,
                                                    docs_assets)
    return QualityReport(passed=not failures, rejected=rejected, evaluated_rows=len(checked), failures=failures,
                         skipped=skipped, docs_index=docs_index, docs_validation=key.to_tuple(), docs_note=docs_note,
                         profile=profile, compared=compared)


def name_docs_after_batch(report: QualityReport, project_root: Path, batch_id: str, source: str,
                          docs_assets: Path | None = VENDOR_DIR) -> str | None:
    """Re-file the report's Data Docs page under the batch id the warehouse gave it; what went wrong, if anything.

    Never raises: the batch is stored by then, and a retry would store it again. The site's offline state goes to
    report.docs_note (check_batch has said it already)."""
    if report.docs_validation is None:
        return None
    try:
        report.docs_validation, report.docs_note = rename_validation(project_root, report.docs_validation,
                                                                     batch_id, source, docs_assets)
    except Exception as exc:  # noqa: BLE001 - the docs are a report on the batch, never a reason to fail it
        return f"Data Docs: could not name the validation after batch {batch_id} ({type(exc).__name__}: {exc})"
    return None


def _target(config: object) -> str:
    column = config.kwargs.get("column", "table")
    return f"{column} (labelled rows)" if (config.meta or {}).get("rows") else column


def _observed(result: dict, whole_batch: dict | None = None) -> str:
    """What failed: the observed statistic, or how many rows were unexpected and a few of their values.

    `whole_batch`: a per-row bound's count over every row of a sampled batch (_rows_beyond), which replaces GX's."""
    if "observed_value" in result:
        return f"observed {_short(result['observed_value'])}"
    count, percent = result.get("unexpected_count"), _short(result.get("unexpected_percent"))
    if whole_batch:
        count, values = whole_batch["unexpected"], whole_batch["values"]
        percent = _short(100 * count / max(values, 1))
    text = f"observed {percent}% unexpected" if count is None else \
        f"observed {count:,} unexpected row{'' if count == 1 else 's'} ({percent}%)"
    if whole_batch:
        text += f" among the batch's {whole_batch['values']:,} values, every row checked"
    examples = list(dict.fromkeys(_short(v) for v in result.get("partial_unexpected_list") or []))
    return text + (", e.g. " + ", ".join(examples[:5]) if examples else "")


def _short(value: object) -> str:
    if isinstance(value, pd.Timestamp | dt.datetime) and value == pd.Timestamp(value).normalize():
        return f"{value:%Y-%m-%d}"  # a date (the contract's dates are days)
    return f"{value:.4g}" if isinstance(value, float) else str(value)[:80]
