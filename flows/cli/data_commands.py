"""Data commands: `generate` a world, `ingest` files into the warehouse, `score` a file, and the `demo` loop."""
from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from features.errors import UserError
from flows.cli.output import emit
from flows.cli.root import INPUT, JsonOption, check_layouts, headers_fit, runs_flows, settings
from flows.orchestration import runtime

# The score output's formats, by suffix, as serving.batch.write_output writes them.
SCORE_SUFFIXES = (".csv", ".parquet", ".pq")


class WorldName(StrEnum):
    """The embedded worlds `aduana generate` can write."""

    default = "default"  # declarations, manifests and traders in canonical fields
    islas = "islas"  # a third-party export: islas_train.csv, islas_test.csv, islas_arrivals.csv, its mapping file


def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the world's files into.")],
    rows: Annotated[int, typer.Option("--rows", min=100, help="Number of declarations (goods items).")] = 200_000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same world.")] = 7,
    fmt: Annotated[str | None, typer.Option("--format", help="parquet or csv (default parquet). The default world "
                                                           "only: islas is always CSV.")] = None,
    world_name: Annotated[WorldName, typer.Option(
        "--world", help="default: declarations, manifests and traders in canonical fields. islas: a third-party "
                        "export in its own layout (islas_train.csv, islas_test.csv, and islas_arrivals.csv: the "
                        "test rows without their labels), with islas_mapping.yaml to ingest them all by.")
    ] = WorldName.default,
    as_json: JsonOption = False,
) -> None:
    """Simulate a customs administration: by default declarations, manifests and the trader registry."""
    from features.simulator import generate_world, simulate_islas, write_islas
    from flows.render import generate_text

    if world_name is WorldName.islas:
        if fmt not in (None, "csv"):
            raise UserError(f"--format {fmt}: the islas world is written as CSV only")
        if rows < 500:
            raise UserError(f"--rows {rows}: the islas world needs at least 500 rows")
        runtime.progress(f"simulating the islas world: {rows:,} goods items (seed {seed})…")
        islas = simulate_islas(rows, seed=seed)
        paths = write_islas(islas, out)
        result = {"train": {"path": str(paths["train"]), "rows": len(islas.train)},
                  "test": {"path": str(paths["test"]), "rows": len(islas.test)},
                  "arrivals": {"path": str(paths["arrivals"]), "rows": len(islas.arrivals)},
                  "mapping": {"path": str(paths["mapping"])}, "bad_rows": islas.injected()}
        emit(result, as_json, generate_text(result))
        return
    fmt = fmt or "parquet"
    if fmt not in ("parquet", "csv"):
        raise UserError(f"--format must be parquet or csv, not {fmt!r}")
    runtime.progress(f"simulating {rows:,} declarations (seed {seed})…")

    def written(declarations: int) -> None:  # big worlds are written a slice at a time: say how far
        if declarations < rows:
            runtime.progress(f"{declarations:,} of {rows:,} declarations written…")

    files = generate_world(out, rows, seed=seed, fmt=fmt, on_slice=written)
    result = {name: {"path": str(path), "rows": count} for name, (path, count) in files.items()}
    emit(result, as_json, generate_text(result))


def _check_ingest(paths: list[Path], mapping: Path | None, kind: str | None, **_) -> None:
    from features.contract import KINDS

    if kind is not None and kind not in KINDS:
        raise UserError(f"--kind must be one of {', '.join(KINDS)}, not {kind!r}")
    check_layouts(paths, mapping, kind)


TOTALS = ("read", "stored", "quarantined", "duplicates")


@runs_flows(check=_check_ingest)
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="CSV or Parquet files: declarations, manifests, traders, outcomes.", **INPUT)],
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML column mapping for a foreign layout.", **INPUT)] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="declarations|manifests|traders|outcomes "
                                                             "(default: from the file name).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Validate files and store them in the warehouse; invalid rows go to quarantine with a reason."""
    from flows.ingest import customs_ingest
    from flows.render import ingest_text

    summaries = customs_ingest([str(p) for p in paths], kind=kind, mapping=str(mapping) if mapping else None)
    result = {"files": summaries, **{k: sum(s[k] for s in summaries) for k in TOTALS}}  # one shape, however many files
    home = settings()
    emit(result, as_json, ingest_text(summaries, home.warehouse_path, home.data_docs_index))


def _score_out(out: Path) -> Path:
    """--out names a format the score output is written in (a callback: refused before any flow starts)."""
    if out.suffix.lower() not in SCORE_SUFFIXES:
        raise typer.BadParameter(f"{out.name}: give the score output a suffix it is written in: "
                                 f"{', '.join(SCORE_SUFFIXES)}")
    return out


@runs_flows(check=headers_fit("path"))
def score(
    path: Annotated[Path, typer.Argument(help="Declarations to score (CSV or Parquet).", **INPUT)],
    out: Annotated[Path, typer.Option("--out", help="Score output file (.csv or .parquet).", dir_okay=False,
                                      callback=_score_out)],
    mapping: Annotated[Path | None, typer.Option("--mapping", help="YAML column mapping.", **INPUT)] = None,
    policy: Annotated[Path | None, typer.Option("--policy", help="YAML lane policy (capacity, exploration, rules).", **INPUT)] = None,
    dask: Annotated[str | None, typer.Option(
        "--dask", help="Score the partitions on a Dask cluster: its scheduler (tcp://host:8786), or 'local' for a "
                       "LocalCluster on this machine. Default: ADUANA_DASK_ADDRESS, else in this process.")] = None,
    dask_workers: Annotated[int | None, typer.Option(
        "--dask-workers", min=1, help="With --dask local: worker processes (default: one per core).")] = None,
    partition_rows: Annotated[int | None, typer.Option(
        "--partition-rows", min=1, help="Declarations per partition (default: ADUANA_SCORE_PARTITION_ROWS).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Give every declaration a lane (red/yellow/green) with reasons, using customs-risk@champion."""
    from flows.render import score_text
    from flows.score import customs_score, with_dask

    address = dask or settings().dask_address
    run = with_dask(address, dask_workers) if address else customs_score
    result = run(str(path), str(out), str(mapping) if mapping else None, str(policy) if policy else None,
                 partition_rows, cluster=bool(address))
    emit(result, as_json, score_text(result))


@runs_flows
def demo(
    rows: Annotated[int, typer.Option("--rows", min=1000, help="Declarations to simulate.")] = 200_000,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    as_json: JsonOption = False,
) -> None:
    """Run the whole loop on the embedded default: simulate, ingest, train, promote, score, audit."""
    from flows.demo import customs_demo
    from flows.render import demo_text

    result = customs_demo(rows=rows, seed=seed)
    emit(result, as_json, demo_text(result, settings()))
