"""Losses against hand computations on a tiny model; packed log-probs equal the naive ones."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from fspo_bench.logprobs import completion_logps  # noqa: E402
from fspo_bench.trainers.data import Example  # noqa: E402
from fspo_bench.trainers.losses import (  # noqa: E402
    dpo_loss,
    ipo_loss,
    preference_loss,
    sft_loss,
)
from fspo_bench.trainers.tokens import encode, special_ids  # noqa: E402
from tests.tiny_model import build_tiny_model  # noqa: E402

EXAMPLES = [
    Example("# Example 1\n## Question \nWhat should I cook?\n## Preferred Response \nCurry\n"
            "## Dispreferred Response \nLamb\n\n# Task\nGiven the examples above, generate a "
            "preferred response to the following question.\n## Question \nA book?\n",
            ("## Preferred Response \nScience fiction.\n",
             "## Preferred Response \nA long history of the lazy dog.\n"), "pair"),
    Example("Hello world! The quick brown fox", ("jumps.", "Hi"), "pair"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_tiny_model(tmp_path_factory.mktemp("tiny-losses"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    policy = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    reference = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():  # a different reference: perturb its weights
        generator = torch.Generator().manual_seed(3)
        for p in reference.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return path, tokenizer, policy, reference


def hand_logp(model, prompt: list[int], comp: list[int]) -> float:
    """Sum over completion tokens of log p(token | everything before), one row, in Python."""
    ids = torch.tensor([prompt + comp])
    with torch.no_grad():
        logits = model(ids).logits[0].double()
    total = 0.0
    for j, token in enumerate(comp):
        row = logits[len(prompt) + j - 1]
        total += float(row[token] - torch.logsumexp(row, 0))
    return total


def test_summed_logprobs_losses_and_rewards_match_a_hand_computation(tiny):
    _, tokenizer, policy, reference = tiny
    items, _ = encode(tokenizer, EXAMPLES)
    _, pad, _ = special_ids(tokenizer)
    with torch.no_grad():
        pol, counts = completion_logps(policy, items, pad_id=pad)
        ref, _ = completion_logps(reference, items, pad_id=pad)
    beta, eps = 0.1, 0.2
    for b, item in enumerate(items):
        prompt = list(item.prompt)
        pc, pr = (hand_logp(policy, prompt, list(c)) for c in item.completions)
        rc, rr = (hand_logp(reference, prompt, list(c)) for c in item.completions)
        assert pol[b, 0].item() == pytest.approx(pc, abs=1e-3)
        assert pol[b, 1].item() == pytest.approx(pr, abs=1e-3)
        assert counts[b].tolist() == [len(c) for c in item.completions]
        assert item.completions[0][-1] == tokenizer.eos_token_id
        h = (pc - rc) - (pr - rr)
        ipo = (h - 1 / (2 * beta)) ** 2
        sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
        dpo = -math.log(sigmoid(beta * h)) * (1 - eps) - math.log(sigmoid(-beta * h)) * eps
        nc, nr = (len(c) for c in item.completions)
        h_mean = (pc / nc - rc / nc) - (pr / nr - rr / nr)
        ipo_mean = (h_mean - 1 / (2 * beta)) ** 2
        got_ipo = preference_loss("ipo", pol, ref, counts, beta=beta)
        got_dpo = preference_loss("dpo", pol, ref, counts, beta=beta, label_smoothing=eps)
        got_mean = preference_loss("ipo_token_mean", pol, ref, counts, beta=beta)
        assert got_ipo.losses[b].item() == pytest.approx(ipo, rel=1e-4)
        assert got_dpo.losses[b].item() == pytest.approx(dpo, rel=1e-4)
        assert got_mean.losses[b].item() == pytest.approx(ipo_mean, rel=1e-4)
        assert got_ipo.chosen_rewards[b].item() == pytest.approx(beta * (pc - rc), rel=1e-4)
        assert got_ipo.rejected_rewards[b].item() == pytest.approx(beta * (pr - rr), rel=1e-4)
        assert got_mean.losses[b].item() != pytest.approx(ipo, rel=1e-2)  # not the same loss
    # SFT: mean over target completions of the summed negative log-likelihood
    expected = -sum(hand_logp(policy, list(it.prompt), list(c))
                    for it in items for c in it.completions) / 4
    assert sft_loss(pol, counts).item() == pytest.approx(expected, rel=1e-4)


def test_dpo_without_smoothing_is_minus_logsigmoid():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-10.0, -12.0, -11.0, -11.5))
    h = (-10 + 11) - (-12 + 11.5)
    assert dpo_loss(pc, pr, rc, rr, 0.5).losses.item() == pytest.approx(
        math.log(1 + math.exp(-0.5 * h)), rel=1e-6)
    assert ipo_loss(pc, pr, rc, rr, 0.5).losses.item() == pytest.approx((h - 1) ** 2, rel=1e-6)


def test_unknown_loss_is_an_error():
    with pytest.raises(ValueError, match="ipo, dpo, ipo_token_mean"):
        preference_loss("kto", torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), beta=0.1)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_packed_logprobs_and_gradients_equal_the_naive_two_row_computation(tiny, implementation):
    from transformers import AutoModelForCausalLM

    path, tokenizer, _, _ = tiny
    examples = EXAMPLES + [Example("x", ("a much longer completion than the other one", "b"),
                                   "pair"),
                           Example("Only one target here", ("target",), "supervised")]
    items, _ = encode(tokenizer, examples)
    _, pad, _ = special_ids(tokenizer)
    results = {}
    for layout in ("packed", "naive"):
        model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=implementation)
        sums, counts = completion_logps(model, items, pad_id=pad, layout=layout)
        (sums * torch.arange(1, sums.numel() + 1).reshape(sums.shape)).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        results[layout] = (sums.detach(), counts, grads)
    packed, naive = results["packed"], results["naive"]
    assert torch.equal(packed[1], naive[1])
    assert packed[1][3].tolist() == [len(items[3].completions[0]), 0]
    torch.testing.assert_close(packed[0], naive[0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(packed[2], naive[2], rtol=1e-4, atol=1e-4)


def test_packed_layout_refuses_attention_without_custom_masks(tiny):
    _, tokenizer, policy, _ = tiny
    items, _ = encode(tokenizer, EXAMPLES)
    old = policy.config._attn_implementation
    try:
        policy.config._attn_implementation = "flash_attention_2"
        with pytest.raises(ValueError, match="layout='naive'"):
            completion_logps(policy, items, pad_id=0)
    finally:
        policy.config._attn_implementation = old


def test_too_long_examples_are_counted_not_truncated(tiny):
    _, tokenizer, _, _ = tiny
    items, too_long = encode(tokenizer, EXAMPLES, max_length=30)
    assert too_long and len(items) + len(too_long) == len(EXAMPLES)
    assert all(item.longest <= 30 for item in items)
    assert all(len(c) >= 2 for item in items for c in item.completions)


def test_train_step_benchmark_runs_and_prints_the_ratio_last():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "train_step.py"), "--layers", "1", "--hidden",
         "64", "--vocab", "256", "--prompt", "40", "--completion", "4", "--steps", "1"],
        capture_output=True, text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("speed-up packed / naive: ") and lines[-1].endswith("x")
    assert any(line.startswith("losses equal to") for line in lines)
