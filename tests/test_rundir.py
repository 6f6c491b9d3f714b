"""Run-directory files are written whole, and a killed writer's leftovers are cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fspo_bench.rundir import read_json, write_json


def test_a_dead_writers_temporary_file_is_removed_and_a_live_ones_kept(tmp_path: Path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f".results.json.tmp-{dead}"
    live = tmp_path / f".results.json.tmp-{os.getppid()}"
    other = tmp_path / f".config.json.tmp-{dead}"
    for path in (stale, live, other):
        path.write_text("half of a file")
    write_json(tmp_path / "results.json", {"ok": 1})
    assert read_json(tmp_path / "results.json") == {"ok": 1}
    assert not stale.exists()
    assert live.exists()  # its writer may still be renaming it into place
    assert other.exists()  # another file's temporaries wait for that file's next write
    assert not list(tmp_path.glob(f".results.json.tmp-{os.getpid()}"))
