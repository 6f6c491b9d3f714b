"""Train FSPO with `fspo-bench train`, then evaluate it with `fspo-bench run --method fspo`."""

from __future__ import annotations

import json
import subprocess
import sys


def cli(*argv: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fspo_bench", *argv], capture_output=True,
                          text=True, cwd=cwd)


def test_a_trained_checkpoint_is_evaluated_by_run(tiny_model, tmp_path):
    trained = cli("train", "--method", "fspo", "--domain", "reviews", "--model", str(tiny_model),
                  "--preset", "cpu-tiny", "--steps", "2", "--shots", "1", "--out",
                  str(tmp_path / "ckpt"), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    run = cli("run", "--method", "fspo", "--domain", "reviews", "--model", str(tiny_model),
              "--checkpoint", str(tmp_path / "ckpt"), "--limit", "3", "--shots", "1",
              "--max-new-tokens", "8", "--cache", str(tmp_path / "c.sqlite"), "--out",
              str(tmp_path / "run"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    generations = [json.loads(line) for line in
                   (tmp_path / "run" / "generations.jsonl").read_text().splitlines()]
    assert {g["method"] for g in generations} == {"fspo", "base"}
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["spec"]["checkpoint"] == str(tmp_path / "ckpt")
    without = cli("run", "--method", "fspo", "--domain", "reviews", "--model", str(tiny_model),
                  cwd=tmp_path)
    assert without.returncode == 1
    assert without.stderr.strip() == (
        "fspo-bench: error: method 'fspo' needs a trained checkpoint (--checkpoint)")
