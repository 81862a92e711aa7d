"""Dataset-level validation with Great Expectations: suites kept as JSON under expectations/, Data Docs under ADUANA_HOME.

A failed `critical` expectation rejects the batch (its rows go to quarantine); a failed `warning` one is
recorded on the batch, which then counts as not having passed validation.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from expectations import SUITES_DIR


@dataclass
class QualityReport:
    passed: bool  # no expectation failed
    rejected: bool  # a critical expectation failed
    evaluated_rows: int
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    docs_index: Path | None = None


def load_suite(kind: str, suites_dir: Path = SUITES_DIR) -> dict:
    return json.loads((Path(suites_dir) / f"{kind}.json").read_text())


def _columns_of(expectation: dict) -> list[str]:
    kwargs = expectation["kwargs"]
    return [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]


def _for_gx(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop bookkeeping columns and give nullable integers a float dtype GX aggregates cleanly."""
    out = frame.drop(columns=[c for c in ("row_number", "row_hash") if c in frame.columns])
    for column in out.columns:
        if isinstance(out[column].dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_integer_dtype(out[column]):
            out[column] = out[column].astype("float64")
    return out


def check_batch(frame: pd.DataFrame, kind: str, project_root: Path, sample_rows: int = 200_000,
                suites_dir: Path = SUITES_DIR) -> QualityReport:
    """Run the kind's suite through a GX checkpoint (on a seeded sample of at most `sample_rows`) and build Data Docs."""
    if frame.empty:
        return QualityReport(passed=True, rejected=False, evaluated_rows=0, skipped=["no valid rows to check"])
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # GX reads it when imported: offline, no telemetry
    import great_expectations as gx  # slow import (seconds): only when a batch is checked
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    logging.captureWarnings(False)  # GX turns this on at import, hiding warnings from everyone else
    spec = load_suite(kind, suites_dir)
    sample = frame.sample(n=sample_rows, random_state=0) if len(frame) > sample_rows else frame
    sample = _for_gx(sample)
    usable, skipped = [], []
    for e in spec["expectations"]:
        missing = [c for c in _columns_of(e) if c not in sample.columns]
        if missing:
            skipped.append(f"{e['type']} on {', '.join(missing)}: column not in this file")
        else:
            usable.append(ExpectationConfiguration(**e))

    project_root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(project_root))
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    context.variables.save()
    source = context.data_sources.add_or_update_pandas("aduana")
    asset = next((a for a in source.assets if a.name == kind), None) or source.add_dataframe_asset(kind)
    definition = next((b for b in asset.batch_definitions if b.name == "batch"), None) \
        or asset.add_batch_definition_whole_dataframe("batch")
    suite = context.suites.add_or_update(ExpectationSuite(name=spec["name"], expectations=usable, meta=spec.get("meta", {})))
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{kind}-batch", data=definition, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=f"{kind}-ingest", validation_definitions=[validation],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")], result_format="SUMMARY",
    ))
    result = checkpoint.run(batch_parameters={"dataframe": sample})
    failures, rejected = [], False
    for run in result.run_results.values():
        for r in run.results:
            if r.success:
                continue
            config = r.expectation_config
            severity = str(getattr(config.severity, "value", config.severity))
            rejected |= severity == "critical"
            observed = r.result.get("observed_value", r.result.get("unexpected_percent"))
            target = config.kwargs.get("column", "table")
            failures.append(f"{severity}: {config.type} on {target} (observed {_short(observed)})")
    docs = context.get_docs_sites_urls()
    docs_index = Path(docs[0]["site_url"].removeprefix("file://")) if docs else None
    return QualityReport(passed=not failures, rejected=rejected, evaluated_rows=len(sample), failures=failures,
                         skipped=skipped, docs_index=docs_index)


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)[:80]
