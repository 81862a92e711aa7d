"""Risk views: the post-clearance `audit` list, entity `ratings`, and the `backtest` of selection policies."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.errors import UserError
from flows.cli.output import emit
from flows.cli.root import INPUT, JsonOption, headers_fit, runs_flows


def _period(period: str | None) -> str | None:
    """--period in one of its forms (a callback: refused before anything heavy is imported)."""
    from serving.periods import parse_period

    if period is not None:
        try:
            parse_period(period)
        except UserError as exc:
            raise typer.BadParameter(str(exc).removeprefix("--period ")) from exc
    return period


def _entity(entity: str) -> str:
    """--entity names an entity of features/entities.py (a callback, as a Click choice would be)."""
    from features.entities import NAMES

    if entity not in NAMES:
        raise typer.BadParameter(f"{entity!r} is not one of {', '.join(NAMES)}")
    return entity


@runs_flows
def audit(
    period: Annotated[str | None, typer.Option(
        "--period", callback=_period, help="START:END dates, a month (2024-11) or a year (2024). Default: the "
                                           "latest complete month of the declarations in the warehouse.")] = None,
    capacity: Annotated[int, typer.Option("--capacity", min=1, help="Enterprises the audit teams can take.")] = 20,
    random_share: Annotated[float | None, typer.Option(
        "--random-share", min=0.0, max=1.0, help="Share of the capacity drawn at random from the enterprises the "
                                                 "ranking leaves out (default: ADUANA_AUDIT_RANDOM_SHARE, 0.1).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Pick enterprises for post-clearance audit: expected unrecovered revenue in their released goods, and a random
    share to measure compliance where the ranking does not look."""
    from flows.audit import customs_audit
    from flows.render import audit_text

    result = customs_audit(period, capacity, random_share)
    emit(result, as_json, audit_text(result))


@runs_flows
def ratings(
    entity: Annotated[str, typer.Option("--entity", callback=_entity, help=(
        "An entity of features/entities.py: importer, declarant, exporter, hs_heading, lane, importer_heading, …"))
    ] = "importer",
    top: Annotated[int, typer.Option("--top", min=1)] = 20,
    min_controls: Annotated[int, typer.Option("--min-controls", min=0)] = 5,
    as_json: JsonOption = False,
) -> None:
    """Risk ratings of goods, enterprises and trade lanes: band, smoothed hit rate with interval, volume."""
    from features.entities import BY_NAME
    from flows.audit import customs_ratings
    from flows.render import ratings_text

    rows = customs_ratings(entity, top, min_controls)
    emit(rows, as_json, ratings_text(rows, list(BY_NAME[entity].columns)))


@runs_flows(check=headers_fit("path"))
def backtest(
    path: Annotated[Path | None, typer.Argument(help="Labelled declarations to replay (default: the warehouse's "
                                                      "labelled declarations, or a simulated world when it has none).",
                                                 **INPUT)] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML column mapping for PATH.", **INPUT)] = None,
    rows: Annotated[int | None, typer.Option("--rows", min=5000, help="Replay a simulated world of this many "
                                                                     "declarations instead (no PATH).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    capacity: Annotated[float | None, typer.Option(
        "--capacity", min=0.001, max=1.0, help="Share inspected each week (default: the lane policy's red_share).")] = None,
    exploration: Annotated[float | None, typer.Option(
        "--exploration", min=0.0, max=1.0,
        help="Random share of the hybrid policy's capacity (default: the lane policy's exploration_share).")] = None,
    lane_policy: Annotated[Path | None, typer.Option(
        "--lanes", help="YAML lane policy whose capacity, exploration and hard rules are replayed (default: the "
                        "home's, ADUANA_LANE_POLICY).", **INPUT)] = None,
    retrain_every: Annotated[int, typer.Option("--retrain-every", min=1, help="Weeks between refits.")] = 4,
    warmup_weeks: Annotated[int, typer.Option("--warmup-weeks", min=1, help="Weeks of historical labels to start from.")] = 8,
    policies: Annotated[list[str] | None, typer.Option("--policy", help="model, hybrid, targeted, random, rules (repeatable).")]
    = None,
    iterations: Annotated[int | None, typer.Option("--iterations", min=10, help="CatBoost rounds per refit.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Replay labelled history week by week (BACUDA protocol): would each selection policy have worked?"""
    from flows.backtest import customs_backtest
    from flows.render import backtest_markdown

    if path is not None and rows is not None:
        raise UserError("backtest: give PATH or --rows (a simulated world), not both")
    result = customs_backtest(path=str(path) if path else None, mapping=str(mapping) if mapping else None, rows=rows,
                              seed=seed, capacity=capacity, exploration=exploration, retrain_every=retrain_every,
                              warmup_weeks=warmup_weeks, policies=policies, iterations=iterations,
                              lane_policy=str(lane_policy) if lane_policy else None)
    emit(result, as_json, backtest_markdown(result) + f"\n\nMLflow run: {result['mlflow_run_id']} (experiment aduana-backtest)")
