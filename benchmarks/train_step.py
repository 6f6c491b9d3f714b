"""Benchmark: one FSPO training step, shared-prefix (packed) layout vs the naive layout.

The naive step is the official one: ``[prompt, chosen]`` and ``[prompt, rejected]`` as two rows
of one batch, so the long few-shot prompt runs twice. The packed step runs
``[prompt, chosen, rejected]`` once with a 4D mask (:mod:`fspo_bench.logprobs`).

Both run in the same process on identical copies of a random Llama (same seed), on the same
few-shot-shaped batches (prompt about 10x a completion), as full training steps: summed
log-probs, IPO loss against stored reference log-probs, backward, grad-norm clip, AdamW step.
Steps alternate between the layouts (so load on the machine hits both alike); the first step of
each is a warm-up and is not timed. Every step's losses must agree to ``--rtol`` (relative).

Throughput counts the same tokens for both, the pair's logical tokens (prompt + chosen +
prompt + rejected), so the ratio of the two throughputs is the speed-up. The ratio is the last
line printed.

    python benchmarks/train_step.py [--layers 4 --hidden 512 --prompt 640 --completion 64
                                     --batch 2 --steps 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time


def build_model(args: argparse.Namespace):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=int(args.hidden * 8 / 3),
        num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
        num_key_value_heads=args.hidden // 64, max_position_embeddings=4096,
        tie_word_embeddings=False, attn_implementation="sdpa")
    torch.manual_seed(args.seed)
    return LlamaForCausalLM(config).train()


def make_batches(args: argparse.Namespace):
    """Few-shot-shaped examples of random tokens: prompt ~ ratio x completion (lengths jittered)."""
    import random

    from fspo_bench.trainers.tokens import TokenizedExample

    rng = random.Random(args.seed)
    batches = []
    for _ in range(args.steps + 1):
        items = []
        for i in range(args.batch):
            p = int(args.prompt * rng.uniform(0.9, 1.1))
            c = int(args.completion * rng.uniform(0.8, 1.2))
            r = int(args.completion * rng.uniform(0.8, 1.2))
            tok = lambda n: tuple(rng.randrange(3, args.vocab) for _ in range(n))  # noqa: E731
            items.append(TokenizedExample(tok(p), (tok(c) + (2,), tok(r) + (2,)), "pair", i))
        batches.append(items)
    return batches


def step(model, optimizer, items, reference, layout: str, beta: float) -> float:
    import torch

    from fspo_bench.logprobs import completion_logps
    from fspo_bench.trainers.losses import preference_loss

    sums, counts = completion_logps(model, items, pad_id=0, layout=layout)
    loss = preference_loss("ipo", sums, reference, counts, beta=beta).losses.mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--prompt", type=int, default=640, help="prompt tokens (about)")
    parser.add_argument("--completion", type=int, default=64, help="completion tokens (about)")
    parser.add_argument("--batch", type=int, default=2, help="pairs per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per layout")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--rtol", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    packed_model = build_model(args)
    naive_model = copy.deepcopy(packed_model)
    optimizers = {
        "packed": torch.optim.AdamW(packed_model.parameters(), lr=1e-4),
        "naive": torch.optim.AdamW(naive_model.parameters(), lr=1e-4),
    }
    models = {"packed": packed_model, "naive": naive_model}
    batches = make_batches(args)
    # Stored reference log-probs (as the trainer stores them): any fixed numbers will do.
    generator = torch.Generator().manual_seed(args.seed)
    references = [-200 * torch.rand((args.batch, 2), generator=generator) for _ in batches]
    pair_tokens = [sum(it.naive_tokens for it in items) for items in batches]
    n_params = sum(p.numel() for p in packed_model.parameters())
    print(f"random Llama: {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}, "
          f"{n_params / 1e6:.1f}M parameters; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"{args.batch} pairs per step; prompt ~{args.prompt}, completions ~{args.completion} "
          f"tokens; {args.steps} timed steps per layout after 1 warm-up")
    times: dict[str, list[float]] = {"packed": [], "naive": []}
    worst = 0.0
    for i, items in enumerate(batches):
        losses = {}
        for layout in ("naive", "packed") if i % 2 else ("packed", "naive"):
            start = time.perf_counter()
            losses[layout] = step(models[layout], optimizers[layout], items, references[i],
                                  layout, beta=0.01)
            elapsed = time.perf_counter() - start
            if i > 0:
                times[layout].append(elapsed)
        rel = abs(losses["packed"] - losses["naive"]) / max(abs(losses["naive"]), 1e-12)
        worst = max(worst, rel)
        print(f"step {i}{' (warm-up)' if i == 0 else ''}: loss packed {losses['packed']:.8g} "
              f"naive {losses['naive']:.8g} (relative difference {rel:.1e})")
        if rel > args.rtol:
            print(f"FAIL: losses differ by {rel:.2e} > {args.rtol:g} relative", file=sys.stderr)
            sys.exit(1)
    tokens = sum(pair_tokens[1:])
    rate = {layout: tokens / sum(t) for layout, t in times.items()}
    for layout in ("naive", "packed"):
        print(f"{layout:>6}: {rate[layout]:8.0f} pair tokens/s  (median step "
              f"{statistics.median(times[layout]):.3f} s)")
    print(f"losses equal to {worst:.1e} relative (tolerance {args.rtol:g})")
    ratio = rate["packed"] / rate["naive"]
    print(f"speed-up packed / naive: {ratio:.2f}x")
    return ratio


if __name__ == "__main__":
    main()
