"""One batch scored in a process of its own, so that its peak memory is the scoring's alone (the serving stage's own
peak includes fitting the model): `python benchmarks/scored_batch.py WAREHOUSE MODEL FILE OUT ROWS [snapshot]` scores
FILE with the pickled MODEL against WAREHOUSE, whole when ROWS is 0, else in partitions of ROWS declarations (as
`aduana score` reads a file beyond ADUANA_SCORE_PARTITION_ROWS): the history in pandas, or with `snapshot` through the
warehouse's snapshot in DuckDB (as for a warehouse beyond ADUANA_TRAINING_MEMORY_ROWS). It writes the output to OUT
and prints its wall time, the scoring's part of it and the process's peak RSS as JSON."""
from __future__ import annotations

import json
import pickle
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from features.warehouse import Warehouse  # noqa: E402
from serving.batch import write_output  # noqa: E402
from serving.lanes import LanePolicy  # noqa: E402
from serving.model_source import FixedSource  # noqa: E402
from serving.partitions import score_source  # noqa: E402
from serving.scorer import Scorer  # noqa: E402


def main(warehouse: str, model: str, source: str, out: str, rows: int, snapshot: bool = False) -> dict:
    start = time.perf_counter()
    scorer = Scorer(Warehouse(Path(warehouse)), LanePolicy(), FixedSource({"bench": pickle.loads(Path(model).read_bytes())},
                                                                         "bench"), reload_seconds=3600)
    scorer.refresh_model(force=True)
    loaded = time.perf_counter()
    scored = score_source(Path(source), scorer, rows or 10**12, Path(out).with_suffix(".run"),
                          snapshot=snapshot)
    write_output(scored.output_chunks(), Path(out))
    scored.remove()
    end = time.perf_counter()
    return {"rows": scored.read, "partition_rows": rows or None, "history": "snapshot" if snapshot else "pandas",
            "wall_s": end - start, "model_load_s": loaded - start, "scoring_s": end - loaded, "peak_mb": high_water_mb()}


def high_water_mb() -> float:
    """This process's peak RSS since its exec (VmHWM): getrusage's ru_maxrss keeps, across fork and exec, the
    parent's peak at the fork, which in the serving stage holds the fitted model and the snapshot."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5], int(sys.argv[5]), sys.argv[6:] == ["snapshot"])))
