"""FSPO really learns: on held-out users it beats the untrained few-shot model by more than the
bootstrap CI, on a synthetic task only the shots can solve.

The task (:mod:`fspo_bench.trainers.synthetic`): each user prefers answers ending with a secret
word among four; every pair contrasts the user's word with another; each word is as common as
the others, so without using the shots the best accuracy is 50%. Held-out users are users never
trained on. The model is a random 4-layer Llama (hidden 128) with the tiny test tokenizer, built
here. Preference accuracy = how often log p(chosen | shots, question) > log p(rejected | ...),
for the trained model and for the untrained model (the reference, scored before training), with
95% bootstrap CIs resampling users (``fspo_card.json``'s ``held_out_metrics``).

About 80 s on 2 idle CPU cores (most of it the 250 steps).
"""

from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from fspo_bench.stats import paired_difference  # noqa: E402
from fspo_bench.trainers.presets import make_config  # noqa: E402
from fspo_bench.trainers.synthetic import secret_word_data  # noqa: E402
from fspo_bench.trainers.trainer import Trainer  # noqa: E402
from tests.tiny_model import build_tokenizer  # noqa: E402


def build_model(path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
def test_fspo_beats_the_untrained_few_shot_model_on_held_out_users(tmp_path):
    started = time.monotonic()
    model = build_model(tmp_path / "model")
    data = secret_word_data(n_train_users=16, n_eval_users=8, n_questions=24, shots=3)
    config = make_config(
        "fspo", preset="cpu-tiny", domain="secret-word", model=str(model),
        out=str(tmp_path / "out"), steps=250, batch_size=8, lr=3e-3, warmup_steps=10,
        beta=0.1, loss="ipo", eval_limit=1000, save_every=0)
    trainer = Trainer(config, domain_data=data, progress=False)
    result = trainer.run()
    held = result.card["held_out_metrics"]
    trained, untrained = held["loglik_accuracy"], held["initial_loglik_accuracy"]
    elapsed = time.monotonic() - started
    print(f"\nheld-out users {held['n_users']}, pairs {held['n_pairs']}: trained "
          f"{trained['value']:.1f} [{trained['ci_low']:.1f}, {trained['ci_high']:.1f}], untrained "
          f"{untrained['value']:.1f} [{untrained['ci_low']:.1f}, {untrained['ci_high']:.1f}], "
          f"implicit reward accuracy {held['reward_accuracy']['value']:.1f}; "
          f"first loss {result.card['train_metrics']['first_loss']:.2f} -> last-50 mean "
          f"{result.card['train_metrics']['loss']:.2f}; {elapsed:.0f} s")
    assert held["n_users"] == 8 and held["n_pairs"] == len(data.eval_preferences())
    # better by more than the CIs: the intervals do not even overlap
    assert trained["ci_low"] > untrained["ci_high"]
    assert trained["value"] - untrained["value"] > 25
    # and the paired, user-clustered bootstrap of the difference excludes zero
    policy = trainer.score(trainer.runtime.unwrap(trainer.policy.model), trainer.eval_items, 8)
    examples = trainer.built_eval.examples
    keys = [(examples[it.index].user_id, f"{examples[it.index].question_id}#{n}")
            for n, it in enumerate(trainer.eval_items)]
    after = dict(zip(keys, (policy[:, 0] > policy[:, 1]).float().tolist(), strict=True))
    reference = trainer.ref_eval
    before = dict(zip(keys, (reference[:, 0] > reference[:, 1]).float().tolist(), strict=True))
    diff = paired_difference(after, before)
    print(f"trained - untrained: {diff['difference']:+.1f} points "
          f"[{diff['ci_low']:+.1f}, {diff['ci_high']:+.1f}]")
    assert diff["ci_low"] > 0
