"""A planted API key is used, and never written: not in any file a run or the leaderboard writes
(run directory, SQLite cache with its WAL files, leaderboard output), nor in stdout or stderr.

The runs are real ``fspo-bench`` child processes whose only key is ``OPENAI_API_KEY`` in the
environment; the model and the judge are a :class:`FaultServer`, which records the bearer token
it receives (proof that the key was live) and, on errors, echoes it back like a careless server.
Refusing known-bad litellm releases (1.82.7, 1.82.8, 1.107.0) is tested in tests/test_safety.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .api_runs import PLANTED_KEY, child_env, cli_command, needs_litellm, reply, run_args
from .fault_server import FaultServer


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli_command(*args), env=child_env(), capture_output=True, timeout=120)


@pytest.mark.slow
def test_a_planted_key_is_sent_but_never_written(tmp_path: Path):
    needs_litellm()
    good, echoing = FaultServer(reply=reply), FaultServer(["401"] * 10)
    try:
        outputs = [cli(*run_args(good, tmp_path / "run", tmp_path / "cache" / "c.sqlite")),
                   cli(*run_args(echoing, tmp_path / "failed", tmp_path / "cache" / "c.sqlite"))]
        outputs.append(cli("leaderboard", "build", str(tmp_path / "run"), "--out",
                           str(tmp_path / "board")))
        outputs.append(cli("judge", str(tmp_path / "run"), "--cache",
                           str(tmp_path / "cache" / "c.sqlite")))
    finally:
        good.close()
        echoing.close()
    assert [o.returncode for o in outputs] == [0, 1, 0, 0], [o.stderr for o in outputs]
    assert {e.authorization for e in good.exchanges + echoing.exchanges} == {
        f"Bearer {PLANTED_KEY}"}
    assert b"401" in outputs[1].stderr and b"[redacted]" in outputs[1].stderr  # echoed, scrubbed
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    names = {p.name for p in written}
    assert {"results.json", "c.sqlite", "index.html", "leaderboard.json"} <= names
    leaks = [str(p) for p in written if PLANTED_KEY.encode() in p.read_bytes()]
    leaks += [f"output {i}" for i, o in enumerate(outputs)
              if PLANTED_KEY.encode() in o.stdout + o.stderr]
    print(f"\n[secrets] key sent in {len(good.exchanges) + len(echoing.exchanges)} requests; "
          f"searched {len(written)} files ({sum(p.stat().st_size for p in written):,} bytes) "
          f"and {len(outputs)} stdout/stderr pairs: {len(leaks)} leaks")
    assert leaks == []
