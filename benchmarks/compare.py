"""Two trees' `make bench` stages measured in one run: each stage run by the old tree's bench, then the new tree's,
in turn, each tree with its own code. Writes each stage's figures from both and their ratio (new / old).

Each tree runs as `make bench` runs a stage: `benchmarks/bench.py --stage STAGE --work WORK --rows ROWS` in a child
process, from the tree's root with the tree first on PYTHONPATH (the project's venv has the working tree installed
editable; PYTHONPATH comes first), the stages in `make bench`'s order on one work folder per tree and round. A
stage's headline figure is the child process's wall time (start-up and imports included); its own timings
(keys in seconds or milliseconds) follow. Rounds alternate the order (old then new, then new then old) so that a
drift in the machine's load favours neither tree; each figure is the median over rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NEW = Path(__file__).resolve().parent.parent
# make bench's stage order; the old tree's bench has the same stages and child-process mode
STAGES = ("generate", "ingest", "raw_baseline", "flow", "cli", "model", "serving", "backtest", "quality",
          "worst_request")
SELF_CONTAINED = {"backtest", "quality", "worst_request", "cli"}  # no landing files needed
ENV = {"GX_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
TIME_KEY = re.compile(r"(?<!per)_m?s([_.]|$)")  # simulate_s, refit_s.model, healthz_p99_ms; not rows_per_s


def tree_env(tree: Path) -> dict:
    return {**os.environ, **ENV, "PYTHONPATH": str(tree)}


def check_imports(tree: Path) -> str:
    """Where the tree's child processes import the project from; it must be the tree itself."""
    probe = "import features, serving, training, flows; print(features.__file__)"
    where = subprocess.run([sys.executable, "-c", probe], cwd=tree, env=tree_env(tree), capture_output=True,
                           text=True, check=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree} imports the project from {where}, not from itself")
    return where


def run_stage(tree: Path, stage: str, work: Path, rows: int) -> dict:
    """One stage in the tree's own child process, as make bench runs it: its figures and the process's wall time."""
    command = [sys.executable, str(tree / "benchmarks" / "bench.py"), "--stage", stage, "--work", str(work),
               "--rows", str(rows)]
    t = time.perf_counter()
    out = subprocess.run(command, cwd=tree, env=tree_env(tree), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise StageFailed(out.stderr[-2000:])
    return {"stage_wall_s": wall, **json.loads(out.stdout.strip().splitlines()[-1])}


class StageFailed(Exception):
    """A tree's bench could not run a stage (the old tree's backtest at some sizes, for example)."""


def flatten(figures: dict, prefix: str = "") -> dict[str, float]:
    """Numeric figures by dotted key (nested dicts flattened)."""
    flat = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = float(value)
    return flat


def compare(old_runs: list[dict], new_runs: list[dict]) -> dict:
    """Median of each time (and peak memory) over rounds for both trees, and new / old."""
    old = [flatten(r) for r in old_runs]
    new = [flatten(r) for r in new_runs]
    out: dict = {"times_s": {}, "memory_mb": {}}
    for key in old[0]:
        if key not in new[0]:
            continue
        section = "memory_mb" if "_mb" in key else "times_s" if TIME_KEY.search(key) else None
        if section is None:
            continue
        a, b = statistics.median(r[key] for r in old), statistics.median(r[key] for r in new)
        out[section][key] = {"old": a, "new": b, "new_over_old": b / a if a else None}
    headline = out["times_s"]["stage_wall_s"]
    return {"stage_wall_s_new_over_old": headline["new_over_old"], **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, required=True, help="the old tree's root")
    parser.add_argument("--new", type=Path, default=NEW, help="the new tree's root (default: this one)")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=2, help="old/new pairs per stage, the order alternating")
    parser.add_argument("--only", nargs="*", choices=STAGES, help="these stages only (generate is implied for "
                        "the others, as in make bench, and compared too); an earlier run's other stages are kept")
    parser.add_argument("--out", type=Path, default=NEW / "benchmarks" / "refactor-comparison.json")
    args = parser.parse_args()
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    imports = {name: check_imports(tree) for name, tree in trees.items()}
    chosen = [s for s in STAGES if s != "generate" and (not args.only or s in args.only)]
    if not args.only or "generate" in args.only or any(s not in SELF_CONTAINED for s in chosen):
        chosen.insert(0, "generate")
    runs: dict[str, dict[str, list]] = {s: {"old": [], "new": []} for s in chosen}
    failed: dict[str, dict] = {}
    started = time.perf_counter()

    def write() -> dict:
        """The figures so far, written after every stage, so that a long run that stops keeps what it measured."""
        done = {s: r for s, r in runs.items() if r["old"] and len(r["old"]) == len(r["new"])}
        stages = {s: {"rows": args.rows, "rounds": len(r["old"]), **compare(r["old"], r["new"])}
                  for s, r in done.items()}
        kept_runs, kept_failed = dict(done), dict(failed)
        if args.only and args.out.exists():  # compare some stages, keep the others' figures from an earlier run
            earlier = json.loads(args.out.read_text())
            stages = {**{k: v for k, v in earlier["stages"].items() if k not in chosen}, **stages}
            kept_runs = {**{k: v for k, v in earlier["runs"].items() if k not in chosen}, **kept_runs}
            kept_failed = {**{k: v for k, v in earlier.get("failed", {}).items() if k not in chosen}, **kept_failed}
        result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                              "platform": platform.platform(), "load_average_now": os.getloadavg()[0]},
                  "rows": args.rows, "rounds": args.rounds, "trees": {k: str(v) for k, v in trees.items()},
                  "imports_from": imports, "wall_s": time.perf_counter() - started,
                  "slowest_stage_wall_s_new_over_old": max((s["stage_wall_s_new_over_old"] for s in stages.values()),
                                                           default=None),
                  "stages": stages, "failed": kept_failed, "runs": kept_runs}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        return stages

    with tempfile.TemporaryDirectory(prefix="aduana-compare-") as tmp:
        for round_ in range(args.rounds):
            order = ("old", "new") if round_ % 2 == 0 else ("new", "old")
            works = {name: Path(tmp) / f"{name}-{round_}" for name in order}
            for stage in chosen:
                if stage in failed:
                    continue
                for name in order:
                    print(f"compare: round {round_ + 1}, {stage}, {name}…", file=sys.stderr, flush=True)
                    works[name].mkdir(exist_ok=True)
                    try:
                        runs[stage][name].append(run_stage(trees[name], stage, works[name], args.rows))
                    except StageFailed as error:
                        failed[stage] = {"tree": name, "rows": args.rows, "stderr_tail": str(error)}
                        runs.pop(stage)
                        break
                write()
    stages = write()
    print(json.dumps({s: v["stage_wall_s_new_over_old"] for s, v in stages.items()}, indent=2))
    if failed:
        names = ", ".join(f"{stage} ({v['tree']} tree)" for stage, v in failed.items())
        print(f"compare: could not run {names}", file=sys.stderr)

if __name__ == "__main__":
    main()
