"""`make bench`: throughput and peak memory of each stage, next to the raw libraries measured in the same run.

Each stage runs in its own child process so that its peak RSS is its own. Results go to one JSON file. This module
holds the command line and the stage table; the stages are in intake_stages, cli_stages, model_stages,
serving_stages, stack_stages, scale_stages and detective_stages, what they share about child processes in processes, the API's
load generator and server processes in http_load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from cli_stages import ingest_work_cpu, stage_cli, stage_flow
from detective_stages import stage_detective
from http_load import load
from intake_stages import stage_generate, stage_ingest, stage_raw_baseline
from model_stages import stage_backtest, stage_model, stage_quality
from scale_stages import stage_scale
from serving_stages import stage_serving, stage_source_layout, stage_worst_request
from stack_stages import stage_workers

ROWS = 1_000_000


STAGES = {"generate": stage_generate, "ingest": stage_ingest, "raw_baseline": stage_raw_baseline, "flow": stage_flow,
          "cli": stage_cli, "model": stage_model, "serving": stage_serving, "backtest": stage_backtest, "quality": stage_quality,
          "worst_request": stage_worst_request, "workers": stage_workers, "scale": stage_scale,
          "detective": stage_detective, "source_layout": stage_source_layout}
SELF_CONTAINED = {"backtest", "quality", "worst_request", "cli", "workers", "scale", "detective", "source_layout"}  # stages that simulate their own data: no landing files needed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--stage", choices=list(STAGES), help=argparse.SUPPRESS)  # child-process mode
    parser.add_argument("--only", nargs="*", choices=list(STAGES),
                        help="run only these stages (generate is implied, except for self-contained ones: backtest, quality)")
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)  # load-generator mode: the API's URL
    parser.add_argument("--ingest-work", help=argparse.SUPPRESS)  # the cli stage's in-process ingest of this file
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(load(args.load, args.work, args.rows, args.concurrency)))
        return
    if args.ingest_work:
        print(json.dumps(ingest_work_cpu(args.work, args.ingest_work)))
        return
    if args.stage:
        print(json.dumps(STAGES[args.stage](args.work, args.rows)))
        return
    os.environ.update({"GX_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "true",
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
               "rows": args.rows}
    if args.only and args.out.exists():  # re-measure some stages, keep the others' figures
        results = {**json.loads(args.out.read_text()), **results}
    with tempfile.TemporaryDirectory(prefix="aduana-bench-") as tmp:
        chosen = [s for s in STAGES if s != "generate" and (not args.only or s in args.only)]
        landing = not args.only or "generate" in args.only or any(s not in SELF_CONTAINED for s in chosen)
        stages = ["generate"] * landing + chosen
        for stage in stages:
            print(f"bench: {stage}…", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--stage", stage, "--work", tmp, "--rows", str(args.rows)],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"bench stage {stage} failed:\n{out.stderr[-3000:]}")
            results[stage] = json.loads(out.stdout.strip().splitlines()[-1])
    if "ingest" in results and "raw_baseline" in results:
        results["ingest_vs_raw_throughput"] = results["ingest"]["rows_per_s"] / results["raw_baseline"]["rows_per_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
