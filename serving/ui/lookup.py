"""A declaration's page (`GET /ui/declaration?id=ID`): its latest decision, the declaration as the warehouse stores
it (its own fields, bookkeeping aside) with its control outcome when it was controlled, and its feature
contributions."""
from __future__ import annotations

import math
from html import escape

import numpy as np
import pandas as pd

from features.contract import LABEL_FIELDS
from features.labels import labelled
from features.warehouse import STORED_BOOKKEEPING
from serving.reasons import TOP_CONTRIBUTIONS, feature_value_text
from serving.selection import GREEN
from serving.ui.charts import contributions_svg
from serving.ui.contributions import Contributions
from serving.ui.layout import lane_badge, record_table, score_text, table, when_text


def decision_section(decision: dict, decisions: int) -> str:
    reasons = decision.get("reason_list")
    if reasons is None:  # logged before the reasons were kept as a list: the sentence is all there is
        reasons = [r for r in str(decision.get("reasons") or "").split("; ") if r]
    listed = "".join(f"<li>{escape(r)}</li>" for r in reasons) or '<li class="empty">none (a green release)</li>'
    where = (f"real-time answer (request <code>{escape(str(decision['request_id']))}</code>)"
             if isinstance(decision.get("request_id"), str) else f"scoring batch <code>{escape(str(decision['batch_id']))}</code>")
    rows = [["lane", lane_badge(str(decision["lane"]))], ["risk score", score_text(decision.get("risk_score"))],
            ["expected revenue", score_text(decision.get("expected_revenue"), 2) or "(no revenue model)"],
            ["selected by", escape(str(decision.get("selected_by") or "")) or "(none: released)"],
            ["model version", escape(str(decision.get("model_version") or ""))],
            ["decided", f"{when_text(decision.get('decided_at'))} in a {where}"]]
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    again = f'<p class="note">Decided {decisions} times: the latest is shown.</p>' if decisions > 1 else ""
    return (f'<section id="decision"><h2>Latest decision for <code>{escape(str(decision["declaration_id"]))}</code></h2>'
            f'<table>{body}</table>{again}<h3>Reasons</h3><ol id="reasons">{listed}</ol></section>')


def declaration_section(stored: dict | None) -> str:
    """The declaration's own fields as stored, and its control outcome (LABEL_FIELDS) apart: a table when it is
    labelled (features/labels.py), else a line saying it was not controlled (or has no outcome yet)."""
    if stored is None:
        return ('<section id="declaration"><h2>The declaration</h2><p class="empty">The warehouse does not hold this '
                'declaration: it was scored from a file that was not ingested (<code>aduana ingest FILE</code> '
                'stores it).</p></section>')
    fields = [(name, stored_text(value)) for name, value in stored.items()
              if name not in LABEL_FIELDS and name not in STORED_BOOKKEEPING]
    if labelled(pd.DataFrame([stored]))[0]:
        outcome = record_table([(name, stored_text(stored.get(name))) for name in LABEL_FIELDS], "outcome")
    elif stored.get("inspected") == 1:
        outcome = '<p class="empty" id="outcome">Inspected, but no outcome is recorded yet.</p>'
    else:
        outcome = '<p class="empty" id="outcome">Not controlled (no outcome recorded).</p>'
    return (f'<section id="declaration"><h2>The declaration, as the warehouse stores it</h2><div class="grid">'
            f'<div>{record_table(fields, "declaration-fields")}</div><div><h3>Control outcome</h3>{outcome}</div>'
            f'</div></section>')


def stored_text(value: object) -> str:
    """A stored value as it is (numbers unrounded, a date without a midnight time), escaped; missing as '(none)'."""
    if value is None or value is pd.NA or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return '<span class="empty">(none)</span>'
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d") if value == value.normalize() else escape(str(value))
    if isinstance(value, float | np.floating):
        shown = repr(float(value))
        return shown.removesuffix(".0")
    if isinstance(value, np.integer):
        return str(int(value))
    return escape(str(value))


def contributions_section(found: Contributions | None, decision: dict, unavailable: str | None) -> str:
    if found is None:
        return f'<section id="contributions"><h2>Feature contributions</h2><p class="empty">{unavailable}</p></section>'
    top = found.features.head(TOP_CONTRIBUTIONS)
    rows = [[escape(r.feature), escape(r.family), escape(_value(r.value)), f"{r.contribution:+.4f}"]
            for r in top.itertuples()]
    families = [[escape(r.family), f"{r.contribution:+.4f}"] for r in found.families.itertuples()]  # every one
    notes = []
    if found.stored:
        shown = float(found.features["contribution"].sum())
        rest = (f" The other features add {_logit(found.risk_score) - found.base - shown:+.4f}."
                if math.isfinite(found.base) and 0 < found.risk_score < 1 else "")
        intro = (f'<p id="contributions-source" data-source="stored">Stored with the decision: the SHAP values '
                 f'customs-risk v{escape(str(found.model_version))} gave when it decided, in log-odds, for its '
                 f'{len(found.features)} strongest features. The base {found.base:+.4f} plus every feature\'s '
                 f'contribution gives logit(risk), risk {found.risk_score:.4f}.{rest} Positive raises the risk.</p>')
    else:
        why = ("a green release is not explained when it is decided" if decision.get("lane") == GREEN else
               "it was logged before decisions kept their contributions")
        intro = (f'<p id="contributions-source" data-source="recomputed">Recomputed now: this decision has no stored '
                 f'contributions ({why}), so these are the SHAP values of today\'s champion, customs-risk '
                 f'v{escape(str(found.model_version))}, in log-odds, for the declaration as the warehouse stores it: the '
                 f'base {found.base:+.4f} plus every contribution gives logit(risk), risk {found.risk_score:.4f}. '
                 f'Positive raises the risk.</p>')
        if str(decision.get("model_version")) != str(found.model_version):
            notes.append(f"The decision was made by v{escape(str(decision.get('model_version')))}; these "
                         f"contributions are the current champion's (v{escape(str(found.model_version))}).")
        stored = decision.get("risk_score")
        if stored is not None and not pd.isna(stored) and abs(float(stored) - found.risk_score) > 1e-6:
            notes.append(f"Recomputed now, the score is {found.risk_score:.4f} (decided: {float(stored):.4f}): the "
                         "warehouse's history or the champion has changed since.")
    family_title = ("By family, of the stored features" if found.stored else "By family (as the reasons group them)")
    return (f'<section id="contributions"><h2>Feature contributions</h2>{intro}'
            + "".join(f'<p class="note">{n}</p>' for n in notes)
            + f'{contributions_svg(top)}<div class="grid"><div><h3>Strongest features</h3>'
            f'{table(["feature", "family", "value", "contribution"], rows, {3})}</div>'
            f'<div><h3>{family_title}</h3>{table(["family", "contribution"], families, {1})}'
            f'</div></div></section>')


def _value(value: object) -> str:
    shown = feature_value_text(value)
    return "(missing)" if shown is None else shown


def _logit(p: float) -> float:
    return math.log(p / (1 - p))

