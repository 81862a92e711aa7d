"""Data Docs renderers: the validation page's table gets a Severity column, and its numbers 4 significant digits.

GX 1.24 stores each expectation's `severity` but no renderer shows it, and here it decides what a failure does
(critical rejects the batch, warning flags it). expectations/data_docs.py names this class in the site's configuration;
GX loads it by module path when it renders a validation page. Thresholds fitted on data ("4097.321098135413") are
shown rounded ("4097"); the expectation keeps its exact value.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable

import numpy as np
from great_expectations.render.components import RenderedStringTemplateContent
from great_expectations.render.renderer.content_block.validation_results_table_content_block import (
    ValidationResultsTableContentBlockRenderer,
)

SEVERITY_HEADER = "Severity"
# Neither badge is red or green, the colours of GX's failed and passed status icons.
BADGE = {"critical": "badge-dark", "warning": "badge-warning", "info": "badge-info"}


SIGNIFICANT = 4
_LONG_DECIMAL = re.compile(r"-?\d+\.\d{5,}")  # a float already written out at full length


def significant(value: float, digits: int = SIGNIFICANT) -> str:
    """`value` to `digits` significant digits, written without an exponent: 4097.321… → "4097", 0.0123456 →
    "0.01235"."""
    return np.format_float_positional(float(f"{value:.{digits}g}"), trim="-")


def _short(value: object) -> object:
    if isinstance(value, float) and math.isfinite(value):
        return significant(value)
    if isinstance(value, str) and _LONG_DECIMAL.fullmatch(value.strip()):
        return significant(float(value))
    return value


def rounded(cell: object) -> object:
    """A rendered cell with the numbers of its string templates rounded, on a copy of each template (the
    parameters may be the expectation's own)."""
    if isinstance(cell, list):
        return [rounded(c) for c in cell]
    template = getattr(cell, "string_template", None)
    if isinstance(template, dict) and isinstance(template.get("params"), dict):
        cell.string_template = {**template, "params": {k: _short(v) for k, v in template["params"].items()}}
    return cell


def severity_of(config: object) -> str:
    severity = getattr(config, "severity", None)
    return str(getattr(severity, "value", severity) or "unknown")


def severity_cell(config: object) -> RenderedStringTemplateContent:
    severity = severity_of(config)
    return RenderedStringTemplateContent(
        content_block_type="string_template",
        string_template={
            "template": "$severity",
            "params": {"severity": severity},
            "styling": {"params": {"severity": {
                "classes": ["badge", BADGE.get(severity, "badge-secondary"), "ge-severity", f"ge-severity-{severity}"],
            }}},
        },
    )


class SeverityTableRenderer(ValidationResultsTableContentBlockRenderer):
    """GX's validation table with the expectation's severity beside its status icon."""

    @classmethod
    def _process_content_block(cls, content_block, has_failed_evr, render_object=None) -> None:  # noqa: ANN001 - GX's hook
        super()._process_content_block(content_block, has_failed_evr, render_object)
        content_block.header_row.insert(1, SEVERITY_HEADER)
        content_block.header_row_options[SEVERITY_HEADER] = {"sortable": True}

    @classmethod
    def _get_content_block_fn(cls, expectation_type: str, expectation_config: object = None) -> Callable | None:
        row_fn = super()._get_content_block_fn(expectation_type, expectation_config)

        def rows_with_severity(configuration=None, result=None, runtime_configuration=None, **kwargs):  # noqa: ANN001, ANN202
            rows = row_fn(configuration=configuration, result=result, runtime_configuration=runtime_configuration,
                          **kwargs)
            cell = severity_cell(result.expectation_config if result is not None else configuration)
            return [[row[0], cell, *(rounded(c) for c in row[1:])] for row in rows]

        return rows_with_severity
