"""Two processes (torchrun, gloo, CPU) train the same model as one process with the same global
batch: the distributed path of the trainer (accelerate runtime, data split across processes,
reference log-probs split and gathered, metrics gathered, rank 0 writing) on a CPU-only machine.
FSDP itself needs GPUs and is not exercised here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from tests.test_trainer_cli import elix_rows  # noqa: E402
from tests.test_trainer_train import assert_same_weights  # noqa: E402
from tests.tiny_model import build_tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    model = build_tiny_model(tmp_path / "model")
    data = tmp_path / "elix.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in elix_rows()))
    common = ["--method", "fspo", "--domain", "elix", "--data", str(data), "--model", str(model),
              "--preset", "cpu-tiny", "--steps", "3", "--shots", "1", "--eval-limit", "4",
              "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    single, double = tmp_path / "single", tmp_path / "double"
    subprocess.run([sys.executable, "-m", "fspo_bench.trainers", *common, "--batch-size", "2",
                    "--out", str(single)], check=True, env=env, capture_output=True, cwd=tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "-m", "fspo_bench.trainers", *common, "--batch-size", "1", "--out", str(double)],
        env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained fspo on elix") == 1  # only rank 0 reports
    one = json.loads((single / "fspo_card.json").read_text())
    two = json.loads((double / "fspo_card.json").read_text())
    assert two["hyperparameters"]["world_size"] == 2
    assert one["hyperparameters"]["global_batch"] == two["hyperparameters"]["global_batch"] == 2
    assert two["train_metrics"]["loss"] == pytest.approx(one["train_metrics"]["loss"], rel=1e-4)
    assert two["held_out_metrics"]["n_pairs"] == one["held_out_metrics"]["n_pairs"] == 4
    assert_same_weights(single, double, tol=1e-4)
