"""An output written under a temporary name appears whole, or not at all; a folder is refused before the work."""
from __future__ import annotations

import subprocess
import sys

import pytest

from features.errors import UserError
from flows.orchestration.runtime import staged


def test_a_folder_is_refused_before_the_work(tmp_path):
    worked = False
    with pytest.raises(UserError, match="is a folder"), staged(tmp_path):
        worked = True
    assert not worked and list(tmp_path.iterdir()) == []


def test_the_file_appears_only_when_the_block_ends_well(tmp_path):
    out = tmp_path / "lanes.csv"
    out.write_text("previous")
    with pytest.raises(RuntimeError), staged(out) as temporary:
        temporary.write_text("half")
        raise RuntimeError("the decision log could not be written")
    assert out.read_text() == "previous" and [p.name for p in tmp_path.iterdir()] == ["lanes.csv"]
    with staged(out) as temporary:
        temporary.write_text("new")
    assert out.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["lanes.csv"]


def test_score_refuses_a_folder_as_its_output_before_any_flow(tmp_path):
    source = tmp_path / "declarations.csv"
    source.write_text("declaration_id\nD1\n")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "--home", str(tmp_path / "home"), "score", str(source),
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "is a directory" in done.stderr
