"""Benchmark: preference-accuracy scoring, both responses behind one prompt vs one row each.

A run's preference accuracy scores each held-out pair's chosen and rejected response after the
method's few-shot prompt (about ten times longer than a response). The naive layout (what
lm-eval's ``hf`` model and this project did before) runs ``[prompt, chosen]`` and ``[prompt,
rejected]`` as two rows; the packed layout runs ``[prompt, chosen, rejected]`` once with a 4D
mask (:mod:`fspo_bench.logprobs`, the ``hf`` backend's default ``layout="packed"``).

Both layouts score the same ``fewshot`` requests of the same pairs on the embedded model
(SmolLM2-135M-Instruct, the shipped data), alternating rounds so that load on the machine hits
both alike, after one warm-up round each. Every pair's log-likelihoods must agree (``--atol``
nats). The ratio of pairs per second, packed over naive, is the last line printed.

    python benchmarks/prefacc.py [--domain reviews --pairs 16 --shots 2 --rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="reviews")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--atol", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    from fspo_bench import plugins
    from fspo_bench.backend import GenerationParams
    from fspo_bench.backends.hf import HFBackend
    from fspo_bench.embedded import EMBEDDED
    from fspo_bench.method_prefacc import choices, query_of
    from fspo_bench.prefacc import load_domain, ordered_preferences, request_pairs

    data = load_domain(args.domain, "builtin", args.shots)
    method = plugins.get("method", "fewshot")()
    params = GenerationParams()
    prefs = ordered_preferences(data)[:args.pairs]
    backends = {layout: HFBackend(EMBEDDED, layout=layout, threads=args.threads).load()
                for layout in ("naive", "packed")}
    pairs = [pair for p in prefs for pair in request_pairs({
        "context": backends["naive"].render_prompt(
            method.build_request(method.visible(query_of(data, p, args.shots, 0)), params)),
        "choices": choices(p, args.domain)})]
    prompt_chars = statistics.mean(len(c) for c, _ in pairs)
    answer_chars = statistics.mean(len(x) for _, x in pairs)
    print(f"{args.domain}: {len(prefs)} pairs, {args.shots} shots; prompt {prompt_chars:.0f} "
          f"characters, responses {answer_chars:.0f} on average")

    times: dict[str, list[float]] = {"naive": [], "packed": []}
    scores: dict[str, list[float]] = {}
    for round_ in range(args.rounds + 1):
        for layout, backend in backends.items():
            start = time.perf_counter()
            scores[layout] = backend.loglikelihood(pairs)
            if round_:  # round 0 warms up
                times[layout].append(time.perf_counter() - start)
    worst = max(abs(a - b) for a, b in zip(scores["naive"], scores["packed"], strict=True))
    if worst > args.atol:
        sys.exit(f"the layouts disagree: largest difference {worst:.2e} nats > {args.atol}")
    rates = {k: len(prefs) / statistics.median(v) for k, v in times.items()}
    for layout, rate in rates.items():
        print(f"{layout:>6}: {rate:.2f} pairs/s (median of {args.rounds} rounds)")
    print(f"log-likelihoods equal within {worst:.1e} nats")
    print(f"packed / naive: {rates['packed'] / rates['naive']:.2f}x")


if __name__ == "__main__":
    main()
