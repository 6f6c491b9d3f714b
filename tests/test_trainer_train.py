"""The trainer end to end on tiny models: checkpoints, cards, resume, LoRA, CLI, methods."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from fspo_bench import GenerationParams, GenerationRequest, Query  # noqa: E402
from fspo_bench.errors import FspoBenchError  # noqa: E402
from fspo_bench.trainers import checkpoint as ckpt  # noqa: E402
from fspo_bench.trainers.methods import FSPOMethod, FSPORATMethod, run_arguments  # noqa: E402
from fspo_bench.trainers.presets import PRESETS, make_config  # noqa: E402
from fspo_bench.trainers.synthetic import secret_word_data  # noqa: E402
from fspo_bench.trainers.trainer import train  # noqa: E402
from tests.tiny_model import build_tiny_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-train") / "model")


@pytest.fixture(scope="module")
def data():
    return secret_word_data(n_train_users=4, n_eval_users=2, n_questions=12, shots=2)


def config(model_dir: Path, out: Path, method: str = "fspo", **overrides):
    options = dict(domain="secret-word", model=str(model_dir), out=str(out), steps=4,
                   eval_limit=4, save_every=2, lr=1e-3)
    options.update(overrides)
    return make_config(method, preset="cpu-tiny", **options)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        if path.name.startswith(("model", "adapter_model")):
            out.update(load_file(str(path)))
    return out


def assert_same_weights(a: Path, b: Path, tol: float = 1e-6) -> None:
    wa, wb = weights(a), weights(b)
    assert wa and wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=tol, rtol=0), key


def test_fspo_training_writes_a_safetensors_checkpoint_and_a_card(model_dir, data, tmp_path):
    result = train(config(model_dir, tmp_path / "out"), domain_data=data, progress=False)
    out = result.out
    assert result.complete and result.steps == 4
    card = json.loads((out / "fspo_card.json").read_text())
    assert card["method"] == "fspo" and card["serve_method"] == "fspo"
    assert card["domain"] == "secret-word" and card["kind"] == "full"
    assert card["base_model"] == str(model_dir) and card["complete"] is True
    assert card["steps"] == 4 and card["wall_time_s"] > 0
    assert len(card["data_hash"]) == 64
    assert card["hyperparameters"]["loss"] == "ipo" and card["hyperparameters"]["beta"] == 0.1
    assert card["examples"]["skipped_too_long"] == 0 and card["examples"]["used"] > 0
    train_metrics = card["train_metrics"]
    assert {"loss", "reward_accuracy", "reward_margin", "tokens_per_s"} <= set(train_metrics)
    held = card["held_out_metrics"]
    assert held["n_pairs"] == 4
    for key in ("loglik_accuracy", "reward_accuracy", "initial_loglik_accuracy"):
        assert held[key]["ci_low"] <= held[key]["value"] <= held[key]["ci_high"]
    assert card["serve_command"].startswith("fspo-bench run --method fspo ")
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert (out / "reference_logps.safetensors").is_file()
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-000004"]
    everything = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in everything if p.suffix in (".bin", ".pt", ".pkl", ".pth")]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]
    # the served model loads (full checkpoint as an adapter) and the card says how to run it
    from fspo_bench.backends.hf import HFBackend

    backend = HFBackend(str(model_dir))
    query = Query(data.users["eval-000"], data.shot_pool("eval-000")[:2], "Topic 1: your pick?")
    request = FSPOMethod(checkpoint=str(out)).build_request(query, GenerationParams(
        max_new_tokens=4))
    assert request.adapter == str(out) and request.prompt.endswith("## Preferred Response \n")
    assert len(backend.generate([request])) == 1
    assert run_arguments(out)[:3] == ["run", "--method", "fspo"]


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_a_stopped_run_resumes_to_the_same_weights(model_dir, data, tmp_path, lora):
    extra = {"lora": True, "lora_r": 4, "lora_dropout": 0.1, "lr": 1e-2} if lora else {}
    whole = train(config(model_dir, tmp_path / "whole", steps=6, save_every=0, **extra),
                  domain_data=data, progress=False)
    first = train(config(model_dir, tmp_path / "split", steps=6, save_every=0, **extra),
                  domain_data=data, progress=False, stop_after=3)
    assert not first.complete and first.steps == 3
    assert ckpt.latest_checkpoint(tmp_path / "split").name == "checkpoint-000003"
    assert not (tmp_path / "split" / "fspo_card.json").exists()
    second = train(config(model_dir, tmp_path / "split", steps=6, save_every=0, **extra),
                   domain_data=data, progress=False)
    assert second.complete and second.steps == 6
    assert_same_weights(whole.out, second.out)
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    a, b = whole.card["train_metrics"], second.card["train_metrics"]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    if lora:
        assert (second.out / "adapter_config.json").is_file()
        assert (second.out / "adapter_model.safetensors").is_file()


def test_resume_refuses_a_checkpoint_of_another_configuration(model_dir, data, tmp_path):
    train(config(model_dir, tmp_path / "out", steps=4), domain_data=data, progress=False,
          stop_after=2)
    with pytest.raises(FspoBenchError, match="different configuration"):
        train(config(model_dir, tmp_path / "out", steps=4, beta=0.5), domain_data=data,
              progress=False)
    with pytest.raises(FspoBenchError, match="already has checkpoints"):
        train(config(model_dir, tmp_path / "out", steps=4), domain_data=data, progress=False,
              resume=False)


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from fspo_bench.trainers.presets import make_config
    from fspo_bench.trainers.synthetic import secret_word_data
    from fspo_bench.trainers.trainer import train
    data = secret_word_data(n_train_users=4, n_eval_users=2, n_questions=12, shots=2)
    config = make_config("fspo", preset="cpu-tiny", domain="secret-word", model=sys.argv[1],
                         out=sys.argv[2], steps=8, save_every=1, eval_limit=4, lr=1e-3)
    train(config, domain_data=data, progress=False)
""")


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(model_dir, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    whole = tmp_path / "whole"
    subprocess.run([sys.executable, str(script), str(model_dir), str(whole)], check=True,
                   env=env, capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(script), str(model_dir), str(killed)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while ckpt.latest_checkpoint(killed) is None or \
            ckpt.latest_checkpoint(killed).name < "checkpoint-000003":
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "fspo_card.json").exists()
    subprocess.run([sys.executable, str(script), str(model_dir), str(killed)], check=True,
                   env=env, capture_output=True)
    assert_same_weights(whole, killed)


def test_lora_training_serves_through_the_hf_backend(model_dir, data, tmp_path):
    from fspo_bench.backends.hf import HFBackend

    result = train(config(model_dir, tmp_path / "lora", method="fspo-rat", lora=True, lora_r=4,
                          lr=5e-2), domain_data=data, progress=False)
    out = result.out
    card = result.card
    assert card["kind"] == "lora" and card["serve_method"] == "fspo-rat"
    assert card["reference"].startswith("computed")
    assert (out / "adapter_model.safetensors").is_file()
    backend = HFBackend(str(model_dir))
    query = Query(data.users["eval-000"], data.shot_pool("eval-000")[:2], "Topic 1: your pick?")
    request = FSPORATMethod(checkpoint=str(out)).build_request(query, GenerationParams(
        max_new_tokens=4))
    assert request.prompt.endswith("## User Description\n")
    params = GenerationParams(max_new_tokens=8)
    base, tuned = backend.generate([GenerationRequest(params=params, prompt=request.prompt),
                                    GenerationRequest(params=params, prompt=request.prompt,
                                                      adapter=str(out))])
    assert isinstance(base, str) and isinstance(tuned, str)
    lp_base, lp_tuned = (backend.loglikelihood([(request.prompt, "The user")], adapter=a)[0]
                         for a in (None, str(out)))
    assert lp_base != lp_tuned  # the adapter changes the model
    # the wrong method is refused: the checkpoint was trained with the RAT prompt
    with pytest.raises(FspoBenchError, match="--method fspo-rat"):
        FSPOMethod(checkpoint=str(out)).build_request(query, GenerationParams())


@pytest.mark.parametrize("method", ["sft", "preft", "oracle"])
def test_supervised_and_oracle_methods_train(model_dir, data, tmp_path, method):
    result = train(config(model_dir, tmp_path / method, method=method, steps=2, eval_limit=4),
                   domain_data=data, progress=False)
    card = result.card
    assert result.complete and card["method"] == method
    assert card["serve_method"] == {"sft": "fewshot", "preft": "preft", "oracle": "oracle"}[method]
    assert card["held_out_metrics"]["n_pairs"] == 4
    if method != "oracle":
        assert "reward_accuracy" not in card["train_metrics"]


def test_tokenizer_without_pad_pads_with_eos_and_long_examples_are_skipped(data, tmp_path):
    from transformers import AutoTokenizer

    from fspo_bench.trainers.data import build_examples
    from fspo_bench.trainers.tokens import encode

    model_dir = build_tiny_model(tmp_path / "nopad", pad_token=False)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert tokenizer.pad_token is None
    items, _ = encode(tokenizer, build_examples("fspo", data).examples)
    median = sorted(item.longest for item in items)[len(items) // 2]
    result = train(config(model_dir, tmp_path / "out", steps=2, batch_size=3, max_length=median),
                   domain_data=data, progress=False)
    special = result.card["special_tokens"]
    assert special["pad_id"] == special["eos_id"] == tokenizer.eos_token_id
    examples = result.card["examples"]
    assert examples["skipped_too_long"] > 0 and examples["used"] > 0
    assert examples["used"] + examples["skipped_too_long"] == examples["examples"]


def test_init_from_an_sft_checkpoint_makes_it_the_reference(model_dir, data, tmp_path):
    sft = train(config(model_dir, tmp_path / "sft", method="sft", steps=2, lr=1e-2,
                       eval_limit=0), domain_data=data, progress=False)
    fspo = train(config(model_dir, tmp_path / "fspo", init=str(sft.out), steps=1, lr=1e-9,
                        optimizer="rmsprop", eval_limit=4), domain_data=data, progress=False)
    held = fspo.card["held_out_metrics"]
    # one step at lr 1e-9: the policy is still the SFT model, the reference is the SFT model
    assert abs(held["reward_margin"]) < 1e-3
    assert fspo.card["init"] == str(sft.out)


def test_presets_follow_the_paper_recipe():
    paper = make_config("fspo", preset="paper", domain="elix")
    assert (paper.optimizer, paper.learning_rate(), paper.loss, paper.beta) == (
        "rmsprop", 1e-6, "ipo", 0.01)
    assert (paper.warmup_steps, paper.max_grad_norm, paper.max_length, paper.global_batch,
            paper.epochs, paper.lora) == (150, 10.0, 8192, 4, 1.0, False)
    assert make_config("sft", preset="paper").learning_rate() == 1e-7
    assert make_config("fspo", preset="paper", lr=3e-6).learning_rate() == 3e-6
    explicit = make_config("fspo", preset="paper", grad_accum=2)
    assert explicit.global_batch is None and explicit.grad_accum == 2
    assert PRESETS["embedded"]["lora"] is True
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("fspo", preset="huge")


def test_bad_options_are_one_clear_error(model_dir, data, tmp_path):
    with pytest.raises(FspoBenchError, match="unknown loss"):
        train(config(model_dir, tmp_path / "x", loss="kto"), domain_data=data, progress=False)
    with pytest.raises(FspoBenchError, match="not a multiple"):
        train(config(model_dir, tmp_path / "y", global_batch=3, batch_size=2), domain_data=data,
              progress=False)
