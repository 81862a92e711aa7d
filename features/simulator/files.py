"""Writing a simulated world's observable sources: traders, manifests and declarations, as Parquet or CSV.

A world is written whole (`write_world`) or generated and written a slice at a time (`generate_world`), through
the same appending files, so a world of one slice is written the same either way. The hidden truth is never
written.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.simulator.world import CHUNK_ROWS, World, world_slices

SOURCES = ("traders", "manifests", "declarations")
FORMATS = ("parquet", "csv")


class _AppendedFile:
    """One output file that frames are appended to: row groups of a Parquet file, or lines of a CSV file (the
    header once). Every Parquet row group takes the first frame's schema, so the file has one."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt, self.rows = path, fmt, 0
        self._parquet: pq.ParquetWriter | None = None
        self._started = False

    def append(self, frame: pd.DataFrame) -> None:
        if self.fmt == "csv":
            frame.to_csv(self.path, mode="a" if self._started else "w", header=not self._started, index=False,
                         date_format="%Y-%m-%d")
        elif self._parquet is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
        else:
            self._parquet.write_table(pa.Table.from_pandas(frame, schema=self._parquet.schema, preserve_index=False))
        self._started = True
        self.rows += len(frame)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()


def write_world(world: World, out_dir: Path, fmt: str = "parquet") -> dict[str, Path]:
    """Write the three observable sources of a world in memory; the hidden truth is never written."""
    return {name: path for name, (path, _) in _write([world], out_dir, fmt).items()}


def generate_world(out_dir: Path, rows: int, seed: int = 7, fmt: str = "parquet", chunk_rows: int = CHUNK_ROWS,
                   on_slice: Callable[[int], None] | None = None) -> dict[str, tuple[Path, int]]:
    """Simulate the world `simulate(rows, seed, chunk_rows=chunk_rows)` and write it a slice at a time, so that
    peak memory is that of one slice (`chunk_rows` goods items) and the registries, whatever `rows`. Returns
    each source's path and row count; `on_slice` hears how many declarations are written after each slice."""
    return _write(world_slices(rows, seed, chunk_rows=chunk_rows), out_dir, fmt, on_slice)


def _write(parts: Iterable[World], out_dir: Path, fmt: str,
           on_slice: Callable[[int], None] | None = None) -> dict[str, tuple[Path, int]]:
    """Append each part's declarations and manifests, and the first part's traders (the registry is whole in
    every part), to one file per source."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use parquet or csv")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: _AppendedFile(out_dir / f"{name}.{fmt}", fmt) for name in SOURCES}
    try:
        for k, part in enumerate(parts):
            if k == 0:
                files["traders"].append(part.traders)
            files["manifests"].append(part.manifests)
            files["declarations"].append(part.declarations)
            if on_slice is not None:
                on_slice(files["declarations"].rows)
            del part  # let go of this slice before the next is drawn
    finally:
        for file in files.values():
            file.close()
    return {name: (file.path, file.rows) for name, file in files.items()}
