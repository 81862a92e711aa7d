"""Every result as people read it: the CLI's text and the Prefect artifacts' markdown, one function per result and
form. The flows return plain dicts (their `--json`); this turns them into words."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from flows.settings import Settings
    from serving.batch import BatchSummary

# training.metrics (scikit-learn) and training.registry (MLflow) are imported by the functions that use them:
# the flows import this module, and a CLI command pays for neither unless its result needs them.


NO_REVENUE = "revenue metrics: none (the data has no revenue figures on the holdout)"


def _metric_rows(*metrics: dict) -> list[tuple[str, str]]:
    """(metric key, its label) for the holdout tables, in reading order; the revenue rows only where one of
    `metrics` has a revenue figure (none at all is said once, by NO_REVENUE)."""
    from training.metrics import RATES, label

    keys = [f"{m}_at_{n}pct" for m in ("precision", "recall", "revenue") for n in RATES] + ["pr_auc"]
    if metrics and not _has_revenue(*metrics):
        keys = [k for k in keys if not k.startswith("revenue_")]
    return [(k, label(k)) for k in keys]


def _has_revenue(*metrics: dict) -> bool:
    return any(v is not None for m in metrics for k, v in m.items() if k.startswith("revenue_at_"))


def _metric(value: float | None) -> str:
    return "absent" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _cell(value: object) -> str:
    """A value as one markdown table cell: pipes escaped, line breaks as spaces."""
    return " ".join(str(value).splitlines()).replace("|", "\\|")


# ---------------------------------------------------------------- ingest

def ingest_text(summaries: list[dict], warehouse: Path, data_docs: Path) -> str:
    lines = [f"{'file':<28} {'kind':<13} {'read':>10} {'stored':>10} {'quarantined':>12} {'duplicates':>11}"]
    for s in summaries:
        lines.append(f"{Path(s['source']).name:<28} {s['kind']:<13} {s['read']:>10,} {s['stored']:>10,} "
                     f"{s['quarantined']:>12,} {s['duplicates']:>11,}")
        for reason, n in sorted(s["reasons"].items()):
            lines.append(f"{'':<42}quarantined {reason}: {n:,}")
        lines += [f"{'':<42}converted {c}" for c in s.get("conversions", [])]
        lines += [f"{'':<42}note: {n}" for n in s.get("notes", [])]
    lines.append(f"warehouse: {warehouse}")
    lines.append(f"data docs: {data_docs}")
    return "\n".join(lines)


def ingest_markdown(summaries: list[dict], refused: dict[str, str] | None = None) -> str:
    lines = ["| file | kind | read | stored | updated | quarantined | duplicates | expectations |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for s in summaries:
        lines.append(f"| {Path(s['source']).name} | {s['kind']} | {s['read']:,} | {s['stored']:,} | {s['updated']:,} | "
                     f"{s['quarantined']:,} | {s['duplicates']:,} | {'passed' if s['expectations_passed'] else 'failed'} |")
    reasons: dict[str, int] = {}
    for s in summaries:
        for reason, n in s["reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    if reasons:
        lines += ["", "Quarantine reasons: " + ", ".join(f"`{r}` {n:,}" for r, n in sorted(reasons.items()))]
    lines += [f"- refused `{n}`: {r}" for n, r in (refused or {}).items()]
    return "\n".join(lines)


# ---------------------------------------------------------------- training and evaluation

def metrics_text(result: dict) -> str:
    lines = [f"{'metric (holdout)':<18} {'model':>8} {'reference':>10}"]
    lines += [f"{name:<18} {_metric(result['metrics'].get(k)):>8} {_metric(result['reference_metrics'].get(k)):>10}"
              for k, name in _metric_rows(result["metrics"], result["reference_metrics"])]
    if not _has_revenue(result["metrics"], result["reference_metrics"]):
        lines.append(NO_REVENUE)
    lines.append("reference: a library-default CatBoost on the mapped columns")
    lines += _ceiling_lines(result["metrics"])
    groups = result.get("feature_groups") or []
    if groups:
        lines.append("feature groups: " + ", ".join(_group(g) for g in groups))
    if result.get("blend"):
        lines.append(f"model: {result['blend']}")
    return "\n".join(lines)


def _group(g: dict) -> str:
    """A feature group's fate: with its effect on validation where it was measured, else why it was not (a group
    without data is left out unmeasured)."""
    text = f"{g['group']} {'kept' if g['kept'] else 'left out'}"
    if g["delta"] is not None:
        return text + f" ({g['delta']:+.4f})"
    note = g.get("note", "")
    return text + (f" ({note})" if note and not g["kept"] else "")


def _ceiling_lines(metrics: dict) -> list[str]:
    """A rare label caps precision@n%: say so, with the cap, rather than let a low figure read as a poor model."""
    from training.metrics import RATES, precision_ceiling

    capped = [(n, precision_ceiling(metrics, n)) for n in RATES]
    capped = [(n, c) for n, c in capped if c is not None and c < 1]
    if not capped:
        return []
    return [f"frauds are {metrics['positive_share']:.1%} of the holdout, so precision@n% can reach at most "
            + ", ".join(f"{c:.3f} at {n}%" for n, c in capped) + "; PR-AUC is the measure to compare"]


def metrics_markdown(model: dict, reference: dict) -> str:
    rows = ["| metric | model | reference (default CatBoost) |", "|---|---:|---:|"]
    rows += [f"| {name} | {_metric(model.get(k))} | {_metric(reference.get(k))} |"
             for k, name in _metric_rows(model, reference)]
    return "\n".join(rows) + ("" if _has_revenue(model, reference) else f"\n\n{NO_REVENUE}")


def train_text(result: dict, settings: Settings) -> str:
    from training.registry import CHAMPION, MODEL_NAME

    verdict = f"promoted to @{CHAMPION}" if result["promoted"] else "kept as challenger"
    lines = [f"trained on {result['counts']['train']:,} controlled declarations, "
             f"holdout {result['counts']['holdout']:,}", metrics_text(result),
             f"{MODEL_NAME} v{result['version']} ({result['candidate']}): {verdict}"]
    lines += [f"  - {r}" for r in result["reasons"]]
    page = ""  # with the experiment's id: its runs table with the headline metrics, not MLflow's GenAI overview
    if result.get("experiment_id"):
        from training.runs import experiment_path

        page = "/" + experiment_path(result["experiment_id"])
    server = result.get("tracking_uri", "")
    if server.startswith(("http://", "https://")):  # a tracking server (the production stack's): its own UI
        lines.append(f"MLflow UI: {server.rstrip('/')}{page}")
    else:
        lines.append(f"MLflow UI: MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false .venv/bin/mlflow server --backend-store-uri "
                     f"sqlite:///{settings.mlflow_db} --default-artifact-root {settings.mlflow_artifacts.as_uri()} "
                     f"--host 127.0.0.1 --port 5000 --workers 1  (then open http://127.0.0.1:5000{page})")
    return "\n".join(lines)


def train_markdown(result: dict) -> str:
    from training.registry import MODEL_NAME

    return (f"## {MODEL_NAME} v{result['version']} ({result['candidate']}): "
            f"{'promoted' if result['promoted'] else 'not promoted'}\n\n"
            + metrics_markdown(result["metrics"], result["reference_metrics"])
            + "\n\n" + "\n".join(f"- {r}" for r in result["reasons"])
            + f"\n\nMLflow runs: model `{result['model_run_id']}`, reference `{result['reference_run_id']}` "
            f"(the {result['candidate']} was registered as v{result['version']})")


def evaluate_text(result: dict) -> str:
    return (f"trained on {result['counts']['train']:,} rows, evaluated on {result['counts']['holdout']:,}\n"
            + metrics_text(result) + f"\nMLflow run: {result['run_id']}")


# ---------------------------------------------------------------- scoring

def score_text(result: dict) -> str:
    return (f"scored {result['read']:,} declarations with customs-risk v{result['model_version']} → {result['out']}\n"
            + "lanes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result["lanes"].items()))
            + f"\ninvalid rows (validation lane, quarantined): {result['invalid']:,}\nreport: {result['report']}")


def score_markdown(summary: BatchSummary, batch_id: str, model_version: str | None, policy_hash: str) -> str:
    """A scoring batch: lane counts, the top-risk declarations with their reasons, the score distribution."""
    lines = [f"# Scoring batch {batch_id}", "",
             f"Model `customs-risk` v{model_version}, lane policy `{policy_hash}`, {summary.rows:,} declarations.", "",
             "## Lanes", "", "| lane | selected by | rows |", "|---|---|---:|"]
    lines += [f"| {_cell(r.lane)} | {_cell(r.selected_by or '—')} | {r.rows:,} |" for r in summary.lanes.itertuples()]
    # The reasons go in a list under the table: a table cell of Prefect's artifact view clips long text.
    lines += ["", f"## Top {summary.top} by risk", "", "| declaration | risk | expected revenue | lane |",
              "|---|---:|---:|---|"]
    highest = summary.highest
    for r in highest.itertuples():
        revenue = "" if pd.isna(r.expected_revenue) else f"{r.expected_revenue:,.0f}"
        lines.append(f"| {_cell(r.declaration_id)} | {r.risk_score:.3f} | {revenue} | {_cell(r.lane)} |")
    lines += ["", "Their reasons:", ""]
    lines += [f"- **{_cell(r.declaration_id)}**: {' '.join(str(r.reasons or '—').splitlines())}"
              for r in highest.itertuples()]
    lines += ["", "## Score distribution", "", "| risk score | rows |", "|---|---:|"]
    lines += [f"| {i.left:.2f}–{min(i.right, 1):.2f} | {n:,} |" for i, n in summary.histogram.items()]
    return "\n".join(lines)


# ---------------------------------------------------------------- monitoring

def monitor_text(result: dict) -> str:
    verdict = result.get("verdict") or ("DRIFT DETECTED" if result["drift_detected"] else "no drift")
    lines = [f"monitor: customs-risk v{result['model_version']}, window {result['window_start']}…{result['window_end']} "
             f"({result['rows']:,} declarations): {verdict}"]
    lines += [f"  - {a}" for a in result["alerts"]]
    lines.append("  top PSI (features that can alert): "
                 + (", ".join(f"{f['feature']} {f['psi']:.3f}" for f in result["top_features"][:5]) or "none")
                 + f"; risk score {result['score_psi']:.3f}")
    for name, o in result["outcomes"].items():
        lines.append(f"  {name}: {o['controlled']:,} controlled, hit rate {_pct(o['hit_rate'])} "
                     f"(95% CI {_pct(o['ci_low'])}–{_pct(o['ci_high'])}), model expected {_pct(o['expected_hit_rate'])}")
    lines += [f"  {line}" for line in compliance_lines(result.get("compliance")) if line and not line.startswith("#")]
    if found := result.get("released_compliance"):
        lines.append(f"  {released_compliance_text(found)}")
    if result["event_id"]:
        lines.append(f"  event aduana.drift.detected emitted ({result['event_id']})")
    lines.append(f"  MLflow run: {result['mlflow_run_id']} (experiment aduana-monitoring)")
    return "\n".join(lines)


def _drift_rows(features: pd.DataFrame) -> list[str]:
    lines = ["| feature | PSI | test | statistic | missing (ref → now) |", "|---|---:|---|---:|---|"]
    return lines + [f"| {row.feature} | {row.psi:.3f} | {row.test} | {row.statistic:.3g} | "
                    f"{row.missing_reference:.1%} → {row.missing_current:.1%} |" for row in features.itertuples()]


def monitor_markdown(report, top: int = 25) -> str:  # noqa: ANN001 - a training.monitoring.MonitorReport
    """The check as a report: the verdict and why, the features that can alert (worst first), then apart the ones
    only reported (they trend with time by construction), the score and the outcomes."""
    verdict = "**drift detected**" if report.drift_detected else report.verdict()
    lines = [f"## customs-risk v{report.model_version}: {verdict}",
             f"Window {report.window[0].date()}…{report.window[1].date()}: {report.rows:,} declarations against "
             f"{report.reference_rows:,} reference rows.", ""]
    lines += [f"- {a}" for a in report.alerts] + ([""] if report.alerts else [])
    alerting = report.features[report.features["alerting"].astype(bool)]
    reported = report.features[~report.features["alerting"].astype(bool)]
    lines += [f"### Features that can alert ({len(alerting)}; alert at PSI ≥ {report.thresholds.psi:g})", ""]
    lines += _drift_rows(alerting.head(top))
    if len(alerting) > top:
        lines.append(f"\n{len(alerting) - top} more with smaller PSI in the MLflow run's feature_drift table.")
    if len(reported):
        lines += ["", f"### Reported, not alerted on ({len(reported)}: they trend with time by construction)", ""]
        lines += _drift_rows(reported.head(top))
    lines += ["", f"Risk score PSI {report.score['psi']:.3f}.", "", "| stratum | controlled | hit rate | 95% CI | expected |",
              "|---|---:|---:|---|---:|"]
    for name, o in report.outcomes.items():
        lines.append(f"| {name} | {o['controlled']:,} | {_pct(o['hit_rate'])} | {_pct(o['ci_low'])}–{_pct(o['ci_high'])} "
                     f"| {_pct(o['expected_hit_rate'])} |")
    lines += compliance_lines(report.compliance)
    if report.audit_findings:
        lines += ["", "### Released goods: the random audits' findings", "", released_compliance_text(report.audit_findings)]
    return "\n".join(lines)


def compliance_lines(compliance: dict | None) -> list[str]:
    """The estimate of fraud among all decided declarations, released ones included, as report lines."""
    if not compliance:
        return ["", "Compliance: no decision with an inclusion probability in the outcome window yet."]
    rate = compliance["fraud_rate"]
    level = f"{compliance['level']:.0%}"
    lines = ["", f"### Fraud among all {compliance['declarations']:,} decided declarations (released included)", ""]
    if rate["estimate"] is None:
        lines.append(f"No estimate yet: {rate['method']}.")
    else:
        lines.append(f"Estimated fraud rate {_pct(rate['estimate'])} ({level} interval {_pct(rate['ci_low'])}–"
                     f"{_pct(rate['ci_high'])}), from {rate['observed']:,} controlled declarations of which "
                     f"{rate['sampled']:,} drawn at random; {rate['method']}.")
    revenue = compliance.get("revenue_at_stake")
    if revenue and revenue["estimate"] is not None:
        high = "no upper bound" if revenue["ci_high"] is None else f"{revenue['ci_high']:,.0f}"
        lines.append(f"Revenue at stake {revenue['estimate']:,.0f} ({level} interval {revenue['ci_low']:,.0f}–{high}).")
    if compliance["outside_design"]:
        lines.append(f"{compliance['outside_design']:,} declarations have no inclusion probability (validation "
                     "failures, or answered before any batch set the exploration cut-off): not estimated.")
    for group, found in compliance["groups"].items():
        if found:
            shown = ", ".join(f"{k} {_pct(v['estimate'])} ({_pct(v['ci_low'])}–{_pct(v['ci_high'])})"
                              for k, v in list(found.items())[:12])
            lines.append(f"- by {group}: {shown}")
    return lines


# ---------------------------------------------------------------- audit and ratings

def audit_text(result: dict) -> str:
    drawn = sum(r.get("selected_by") == "random" for r in result["selected"])
    lines = [f"post-clearance audit list for {result['period']} ({len(result['selected'])} of capacity "
             f"{result['capacity']}, {drawn} drawn at random)"]
    for r in result["selected"]:
        how = "random  " if r.get("selected_by") == "random" else "priority"
        lines.append(f"{r['rank']:>3}. {r['importer_id']:<12} {how} {r['audit_priority']:>12,.0f}  {r['reasons']}")
        for e in [e for e in result["evidence"] if e["importer_id"] == r["importer_id"]][:3]:
            lines.append(f"       {e['declaration_id']} ({e['lane']}, risk {e['risk_score']:.2f}, "
                         f"expected {e['residual_revenue']:,.0f})")
    if found := result.get("released_compliance"):
        lines.append(released_compliance_text(found))
    return "\n".join(lines)


def released_compliance_text(found: dict) -> str:
    """What the random audits' findings say of fraud in the released goods the rankings leave out."""
    periods = found["periods"][0] + (f"…{found['periods'][-1]}" if len(found["periods"]) > 1 else "")
    said = [f"random audits ({periods}): {found['random_audited']} of {found['random_drawn']} drawn enterprises "
            f"reported findings, {found['examined']:,} declarations examined, {found['frauds_found']:,} frauds"]
    if rate := found["fraud_rate"]:
        interval = (f" ({100 * found['level']:.0f} % CI {rate['ci_low']:.1%}–{rate['ci_high']:.1%})"
                    if rate["ci_low"] is not None else " (no interval below 2 audited draws)")
        said.append(f"fraud in the {found['released_outside_priority']:,} released declarations outside the rankings "
                    f"≈ {rate['estimate']:.1%}{interval}, about {rate['released_total']:,.0f} declarations")
    if found["priority_audited"]:
        said.append(f"priority audits: {found['priority_audited']} enterprises, {found['priority_frauds_found']:,} "
                    f"frauds in {found['priority_examined']:,} declarations examined")
    return "; ".join(said)


def ratings_text(rows: list[dict], keys: list[str]) -> str:
    return "\n".join(f"{' → '.join(str(r[k]) for k in keys):<22} {r['band']:<10} {r['why']}" for r in rows)


def ratings_markdown(rows: list[dict], keys: list[str]) -> str:
    lines = [f"| {' → '.join(keys)} | band | why |", "|---|---|---|"]
    lines += [f"| {' → '.join(str(r[k]) for k in keys)} | {r['band']} | {r['why']} |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- backtest

def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def backtest_markdown(summary: dict) -> str:
    """A backtest's summary (serving.backtest, as a dict) as a short report: the Prefect artifact and the CLI."""
    rows = ["| policy | precision | recall | revenue share | precision pre → post drift | recall pre → post drift |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, p in summary["policies"].items():
        pre, post = p["pre_drift"] or {}, p["post_drift"] or {}
        rows.append(f"| {name} | {_share(p['precision'])} | {_share(p['recall'])} | {_share(p['revenue_share'])} | "
                    f"{_share(pre.get('precision'))} → {_share(post.get('precision'))} | "
                    f"{_share(pre.get('recall'))} → {_share(post.get('recall'))} |")
    setup = (f"{summary['source']}: {summary['universe_rows']:,} declarations over {summary['weeks_total']} weeks; "
             f"warm-up {summary['warmup_weeks']} weeks, {summary['weeks']} weeks replayed from "
             f"{summary['replay_start']}; capacity {_share(summary['capacity'])} of each week, hybrid exploration "
             f"{_share(summary['exploration'])} of the capacity, refit every {summary['retrain_every']} weeks; "
             f"drift date {summary['drift_date'] or 'none'}.")
    if summary["unlabelled_rows_left_out"]:
        setup += f" {summary['unlabelled_rows_left_out']:,} unlabelled rows were left out of the universe."
    return ("## Backtest (BACUDA protocol)\n\n" + setup + "\n\n" + "\n".join(rows) + "\n\n"
            + "\n".join(_detective_lines(summary)) + "\n".join(f"- {line}" for line in summary["findings"]))


def _first_find(policy: dict) -> str:
    week = policy["weeks_to_first_detection"]
    if week is None:
        return "never"
    chance = policy.get("detection_chance_at_random")
    return f"week {week}" + (f": {chance:.0%} at random" if chance is not None else "")


def _detective_lines(summary: dict) -> list[str]:
    """The emerging scheme per policy (simulator only), and each estimate of fraud among all declarations."""
    lines = []
    scheme = (summary.get("frauds_by_typology") or {}).get("new_scheme")
    if scheme:
        lines += [f"New scheme ({scheme:,} frauds replayed): frauds found and the week of the first one (with the "
                  "chance that the week's capacity drawn at random would have found one by then), by policy: "
                  + ", ".join(f"{n} {p['new_scheme_frauds_found']} ({_first_find(p)})"
                              for n, p in summary["policies"].items()), ""]
        chance = (summary.get("scheme_at_random") or {}).get("chance_by_week")
        if chance:
            lines += [f"The capacity drawn at random would have found one by the scheme's week "
                      f"{', '.join(str(w) for w in range(1, len(chance) + 1))}: "
                      f"{', '.join(f'{c:.0%}' for c in chance)}.", ""]
    for name, p in summary["policies"].items():
        found = p.get("compliance_estimate")
        if found and found.get("estimate") is not None:
            truth = f"; true rate {_share(found['truth'])}" if found.get("truth") is not None else ""
            lines.append(f"- {name}: estimated fraud rate among all declarations {_share(found['estimate'])} "
                         f"({found['level']:.0%} interval {_share(found['ci_low'])}–{_share(found['ci_high'])}){truth}; "
                         f"its weekly intervals covered the week's true rate in {_share(found['weekly_coverage'])} of "
                         f"{found['weeks_estimated']} weeks")
        if p.get("strata"):
            lines.append(f"- {name}'s picks per stratum: " + ", ".join(
                f"{k} {v['frauds']}/{v['picks']}" for k, v in p["strata"].items()))
    return lines + ([""] if lines else [])


# ---------------------------------------------------------------- registry and warnings

def _wrapped(text: str, indent: str, width: int = 110) -> list[str]:
    """`text` (lines of it) wrapped at word boundaries, never cut: each line indented by `indent`."""
    import textwrap

    return [line for part in text.splitlines() or [""] for line in
            textwrap.wrap(part, width, initial_indent=indent, subsequent_indent=indent + "  ", break_long_words=False,
                          break_on_hyphens=False) or [indent]]


def promote_text(result: dict, promotions_log: Path) -> str:
    """The registry as `aduana promote` shows it: each alias's version with the gate's decision and its reasons,
    the version's other tags (checksums left out), and the last promotions with their reasons whole."""
    from training.registry import CHALLENGER, CHAMPION

    if "demoted" in result:
        return f"@{CHAMPION} rolled back from v{result['demoted']} to v{result['champion']}"
    if "reason" in result:
        return (f"@{CHAMPION} is now v{result['champion']}"
                + (f" (was v{result['previous']})" if result["previous"] else "") + f"; logged in {promotions_log}")
    lines = []
    for alias in (CHAMPION, CHALLENGER):
        if not result[alias]:
            lines.append(f"@{alias}: none")
            continue
        summary = (result.get("versions") or {}).get(alias) or {}
        gate = summary.get("gate")
        lines.append(f"@{alias}: v{result[alias]}" + (f" (gate: {gate})" if gate else ""))
        for reason in summary.get("gate_reasons", []):
            lines += _wrapped(f"- {reason}", "    ")
        tags = summary.get("tags") or {}
        if tags:
            lines += _wrapped("tags: " + ", ".join(f"{k}={v}" for k, v in tags.items()), "    ")
    if result.get("promotions"):
        lines.append("promotions (latest last):")
    for p in result.get("promotions", []):
        lines += _wrapped(f"{p['at'][:19]} {p['action']} v{p['version']} by {p['by']}: {p['reason']}", "  ")
    return "\n".join(lines)


def warnings_text(rows: list[dict]) -> str:
    if not rows:
        return "no batch has failed expectations"
    lines = []
    for r in rows:
        state = "REJECTED" if r["rejected"] else ("acknowledged" if r["acknowledged"] else "OPEN")
        lines.append(f"{r['batch_id']}  {r['kind']:<12} {r['file']}  {r['started_at']}  stored {r['stored']:,}  [{state}]")
        lines += [f"  - {f}" for f in r["failures"]]
        if r["acknowledged"]:
            lines.append(f"  acknowledged {r['acknowledged_at']} by {r['acknowledged_by']}: {r['ack_reason']}")
    open_ = sum(not r["acknowledged"] and not r["rejected"] for r in rows)
    lines.append(f"{open_} stored batch(es) with open warnings"
                 + (": acknowledge with 'aduana warnings --ack BATCH_ID --reason TEXT'" if open_ else ""))
    return "\n".join(lines)


def acknowledged_text(record: dict) -> str:
    return (f"acknowledged {record['batch_id']} ({record['kind']}) as {record['acknowledged_by']}: {record['reason']}"
            + (f"\nits profile joined the {record['kind']} reference" if record["reference_updated"] else ""))


# ---------------------------------------------------------------- generate and demo

def generate_text(result: dict) -> str:
    if "train" in result:  # the islas world
        lines = [f"{n:<13} {result[n]['rows']:>10,} rows  {result[n]['path']}" for n in ("train", "test", "arrivals")]
        lines.append(f"{'mapping':<13} {'':>15}  {result['mapping']['path']}")
        lines.append(f"injected bad rows: {sum(result['bad_rows'].values())} "
                     f"({', '.join(f'{r} {k}' for r, k in result['bad_rows'].items())})")
        return "\n".join(lines)
    return "\n".join(f"{n:<13} {r['rows']:>10,} rows  {r['path']}" for n, r in result.items())


def demo_text(result: dict, settings: Settings) -> str:
    score, outcome = result["score"], result["outcome"]
    explored = f"{outcome['exploration_hit_rate']:.1%}" if outcome["exploration_hit_rate"] is not None else "n/a"
    return (ingest_text(result["ingest"], Path(result["warehouse"]), Path(result["data_docs"]))
            + f"\nlanding files: {result['landing']}\n\n"
            + train_text(result["train"], settings) + "\n\n"
            + f"scored {score['read']:,} arriving declarations: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(score["lanes"].items())) + "\n"
            + f"red lane hit rate on the simulator's hidden outcomes: {outcome['red_hit_rate']:.1%} "
            + f"(model selections {outcome['model_red_hit_rate']:.1%}, exploration {explored}"
            + f"; base rate {outcome['base_fraud_rate']:.1%}); revenue at stake in red: {outcome['red_revenue_share']:.1%}\n"
            + f"scores: {score['out']}\nbatch report: {score['report']}\n"
            + monitor_text(result["monitor"]) + "\n"
            + f"post-clearance audit: {len(result['audit']['selected'])} enterprises "
            + ", ".join(r["importer_id"] for r in result["audit"]["selected"][:5]) + " …\n"
            + "Prefect UI: this home's server ('.venv/bin/aduana server status' prints its address)")
