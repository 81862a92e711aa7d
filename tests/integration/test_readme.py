"""The README's commands, top to bottom, in a fresh copy of the working tree: each one works (the slow ones with
small sizes, see tests/readme.py), no world is mixed into another's home, and no server is left running.

It is the slowest test of the suite (165 s in CI's run on 2 cores; 3.5 to 4.5 min when other work shares them):
some forty commands, each paying the CLI's start-up, three homes each starting its Prefect server, and four
trainings."""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from tests import readme

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    found = readme.commands(README)
    texts = [c.text.split("#")[0].strip() for c in found]
    assert not [s for s in readme.SKIPPED if s not in texts], "SKIPPED names a command the README no longer has"
    assert not readme.unfenced_commands(README), "commands in a block not marked bash would not be run"
    placeholders = [c.text for c in found if re.search(r"\[--|\w\|\w", c.text.split("#")[0])]
    assert not placeholders, "[--optional] and a|b notation is not a command: explain options in a comment"


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "aduana").exists(), reason="the README's commands use .venv")
def test_readme_runs_top_to_bottom(tmp_path):
    root = readme.copy_tree(REPO, tmp_path / "clone")
    cloned = {p.name for p in root.iterdir()}
    runner = readme.Runner(root)
    started, block = time.monotonic(), 0
    try:
        for command in readme.commands(README):
            if command.block != block:
                runner.end_block()
                block = command.block
            runner.run(command)
        runner.end_block()
    finally:
        stopped = runner.stop_everything()
        print(f"\nREADME run in {time.monotonic() - started:.0f} s; Prefect servers stopped: {stopped}\n"
              f"{runner.report()}")

    assert runner.used_patterns == {p for p, _, _ in readme.SUBSTITUTIONS}, "a substitution matches no command"
    homes = sorted(p.parent.name for p in root.glob("*/warehouse.duckdb"))
    assert homes == [".aduana", ".aduana-cli", ".aduana-islas", ".aduana-prod"]
    for home in homes:  # one world per home: no declaration id came back with other values
        with duckdb.connect(str(root / home / "warehouse.duckdb"), read_only=True) as db:
            mixed = db.execute("SELECT count(*) FROM quarantine WHERE reason = 'duplicate_id'").fetchone()[0]
        assert mixed == 0, f"{home}: {mixed} declarations quarantined as duplicate_id"
    with duckdb.connect(str(root / ".aduana-prod" / "warehouse.duckdb"), read_only=True) as db:  # the stack's API
        answered = db.execute("SELECT count(*) FROM decisions WHERE source = 'api'").fetchone()[0]
    assert answered == 2, "the two declarations answered on the stack are not in its warehouse's decision log"
    assert not list(root.glob("*/prefect/server.json")), "a home's Prefect server is still recorded as running"
    left = sorted(p.name + "/" * p.is_dir() for p in root.iterdir() if p.name not in cloned)
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--", *left], cwd=REPO, capture_output=True,
                             text=True).stdout.split()
    assert sorted(set(left) - set(ignored)) == [], "the README's commands leave files that git does not ignore"
