"""Realistic run directories (docs/runs.md) for the leaderboard tests.

Two methods (``fewshot``, ``fspo``) x two domains (``elix``, ``reviews``), three users per domain
and two held-out questions per user, written with the real record classes and their ``to_json``.
The verdicts are planted so that every statistic is known exactly; one method generation, one judge
answer and one user description carry HTML/JS payloads that must never run in the leaderboard
page.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np

from fspo_bench import plugins
from fspo_bench.records import (
    DomainResult,
    Generation,
    Judgment,
    Preference,
    Query,
    RunResult,
    RunSpec,
    User,
)
from fspo_bench.stats import cluster_bootstrap

SCRIPT_PAYLOAD = "<script>window.__pwned = 1</script>"
IMG_PAYLOAD = '<img src=x onerror="window.__pwned=2">'
JUDGE_PAYLOAD = "</pre></details><script>window.__pwned = 3</script>"
USER_PAYLOAD = '<svg onload="window.__pwned=4"></svg>'

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
JUDGE_MODEL = "gpt-4o-2024-08-06"
TEMPLATE_HASH = "5be1c0a3d2f47e19"
JUDGE_ID = f"pairwise:{JUDGE_MODEL}"
CREATED = "2026-01-15T10:00:00+00:00"

USERS = {
    "elix": [
        ("elix-child-3", "The user is a child."),
        ("elix-teenager-7", "The user is a teenager."),
        ("elix-expert-2", "The user is an expert."),
    ],
    "reviews": [
        ("reviews-concise-1", "This user prefers concise reviews."),
        ("reviews-positive-4", "This user prefers positive reviews."),
        ("reviews-negative-and-verbose-2",
         f"This user prefers negative and verbose reviews. {USER_PAYLOAD}"),
    ],
}
QUESTIONS = {
    "elix": [
        ("elix-q11", "Why is the sky blue?"),
        ("elix-q12", "How do vaccines train the immune system?"),
        ("elix-q13", "What is inflation & why does it happen?"),
        ("elix-q14", "How does a refrigerator keep food cold?"),
        ("elix-q15", "Why do we have leap years?"),
        ("elix-q16", "What makes a rainbow appear?"),
    ],
    "reviews": [
        ("reviews-q21", "Write a review of the movie Inception."),
        ("reviews-q22", "Write a review of the novel Dune."),
        ("reviews-q23", "Write a review of a neighbourhood pizza place."),
        ("reviews-q24", "Write a review of the album Abbey Road."),
        ("reviews-q25", "Write a review of a budget smartphone."),
        ("reviews-q26", "Write a review of the game Tetris."),
    ],
}
SHOT_QUESTIONS = {
    "elix": ["What is gravity?", "How do plants eat?", "Why does ice float?", "What is DNA?"],
    "reviews": ["Write a review of Toy Story.", "Write a review of Hamlet.",
                "Write a review of a coffee shop.", "Write a review of the Beatles."],
}

# Per method and domain: the verdicts of the six queries (user 1 q1, user 1 q2, user 2 q1, ...)
# as (method_first, reference_first), each "M" (method preferred), "R" (reference preferred),
# "T" (tie) or "X" (unparseable).
VERDICTS = {
    ("fewshot", "elix"): ["MM", "MR", "RR", "MM", "RM", "XM"],
    ("fewshot", "reviews"): ["RR", "MR", "MM", "RR", "MT", "RM"],
    ("fspo", "elix"): ["MM", "MM", "MR", "MM", "RM", "MM"],
    ("fspo", "reviews"): ["MM", "MT", "MM", "RM", "MM", "MM"],
}
# Exact winrates of the verdicts above (mean query score over valid orders, in percent).
EXPECTED_WINRATE = {
    ("fewshot", "elix"): 100 * 4 / 6,
    ("fewshot", "reviews"): 100 * 2.75 / 6,
    ("fspo", "elix"): 100 * 5 / 6,
    ("fspo", "reviews"): 100 * 5.25 / 6,
}
METHODS = ("fewshot", "fspo")
DOMAINS = ("elix", "reviews")
SCORE = {"M": 1.0, "R": 0.0, "T": 0.5, "X": None}


def _shots(domain: str, user_id: str, description: str) -> list[Preference]:
    shots = []
    for number, question in enumerate(SHOT_QUESTIONS[domain]):
        shots.append(Preference(
            user_id=user_id,
            question=question,
            chosen=f"An answer in the way this user likes ({question})",
            rejected=f"An answer written for someone else entirely ({question})",
            question_id=f"{domain}-shot-{number}",
            meta={"level_chosen": user_id.split("-")[1], "level_rejected": "other"},
        ))
    return shots


def _method_text(method: str, domain: str, user_id: str, question: str, first: bool) -> str:
    text = (f"[{method}] For {user_id}: {question} Here is an answer shaped by this user's "
            f"examples, with a few more words for {domain}.")
    if method == "fewshot" and domain == "elix" and first:
        text += f"\n{SCRIPT_PAYLOAD}\n{IMG_PAYLOAD}\nThe sky scatters blue light most."
    return text


def _judge_raw(verdict: str, a_is_method: bool, payload: bool) -> tuple[str | None, str]:
    if verdict == "X":
        return None, "Both responses have merits; I cannot pick one for this user."
    if verdict == "T":
        return "tie", 'Both fit the user equally well.\n{"winner": "tie"}'
    method_preferred = verdict == "M"
    winner = "a" if method_preferred == a_is_method else "b"
    raw = f'Response ({winner}) fits the user better.\n{{"winner": "{winner}"}}'
    if payload:
        raw = JUDGE_PAYLOAD + "\n" + raw
    return winner, raw


def write_run(root: Path, method: str) -> Path:
    """Write one run directory of ``method`` on both domains; returns its path."""
    spec = RunSpec(method=method, domains=list(DOMAINS), model=MODEL, backend="hf",
                   judge="pairwise", limit=6, seed=0,
                   checkpoint="checkpoints/fspo-elix-reviews" if method == "fspo" else None,
                   generation={"max_new_tokens": 256, "temperature": 0.0})
    generations: list[Generation] = []
    judgments: list[Judgment] = []
    results: list[DomainResult] = []
    for domain in DOMAINS:
        verdicts = VERDICTS[(method, domain)]
        scores: dict[tuple[str, str], float] = {}
        counts = {"M": 0, "R": 0, "T": 0, "X": 0}
        consistent = both_valid = 0
        method_words, reference_words = [], []
        for number, pair in enumerate(verdicts):
            user_id, description = USERS[domain][number // 2]
            question_id, question = QUESTIONS[domain][number]
            user = User(user_id, description, {"level": user_id.split("-")[1]})
            query = Query(user=user, shots=_shots(domain, user_id, description),
                          question=question, question_id=question_id)
            text = _method_text(method, domain, user_id, question, number == 0)
            meta = {"domain": domain, "role": "method", "question_id": question_id}
            raw = f"## Preferred Response \n{text}\n"
            if method == "fspo":
                meta["description"] = f"Inferred from the shots: {description}"
                raw = f"## User Description\n{meta['description']}\n{raw}"
            reference = f"A plain answer to: {question}"
            generations.append(Generation(method, query, text, raw, meta))
            generations.append(Generation("base", query, reference, reference, {
                "domain": domain, "role": "reference", "question_id": question_id}))
            method_words.append(len(text.split()))
            reference_words.append(len(reference.split()))
            valid_scores = []
            for order, verdict in zip(("method_first", "reference_first"), pair,
                                      strict=True):
                a_is_method = order == "method_first"
                winner, judge_raw = _judge_raw(verdict, a_is_method,
                                               payload=(number == 1 and a_is_method))
                judgments.append(Judgment(
                    judge=JUDGE_ID, user=user_id, question=question,
                    a=text if a_is_method else reference, b=reference if a_is_method else text,
                    winner=winner, raw=judge_raw, valid=winner is not None,
                    meta={"domain": domain, "question_id": question_id, "method": method,
                          "reference": "base", "order": order,
                          "judge_id": f"{JUDGE_ID}:{TEMPLATE_HASH}",
                          "attempts": 3 if winner is None else 1},
                ))
                counts[verdict] += 1
                if SCORE[verdict] is not None:
                    valid_scores.append(SCORE[verdict])
            if valid_scores:
                scores[(user_id, question_id)] = sum(valid_scores) / len(valid_scores)
            if len(valid_scores) == 2:
                both_valid += 1
                consistent += valid_scores[0] == valid_scores[1]
        winrate = 100 * sum(scores.values()) / len(scores)
        ci_low, ci_high = cluster_bootstrap(scores)
        extra = {
            "position_consistency": consistent / both_valid,
            "length_controlled_winrate": winrate - 2.5,
            "n_queries": len(verdicts),
            "n_users": len(USERS[domain]),
            "mean_length": float(np.mean(method_words)),
            "mean_length_reference": float(np.mean(reference_words)),
        }
        if method == "fspo":
            extra["prefacc"] = {"elix": 0.74, "reviews": 0.69}[domain]
        results.append(DomainResult(
            domain=domain, winrate=winrate, ci_low=ci_low, ci_high=ci_high,
            n_wins=counts["M"], n_losses=counts["R"], n_ties=counts["T"],
            n_invalid=counts["X"], extra=extra,
        ))
    config_hash = spec.config_hash()
    run_dir = root / f"{method}-{config_hash}"
    run_dir.mkdir(parents=True)
    config = {
        "spec": spec.to_dict(), "config_hash": config_hash, "package_version": "0.1.0",
        "created": CREATED,
        "backend": {"backend": "hf", "model": MODEL, "revision": "4f2a1c9", "dtype": "float32"},
        "judge": {"judge": "pairwise", "model": JUDGE_MODEL, "template": "pairwise_v1.txt",
                  "template_hash": TEMPLATE_HASH},
    }
    (run_dir / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (run_dir / "generations.jsonl").write_text(
        "".join(g.to_json() + "\n" for g in generations), encoding="utf-8")
    (run_dir / "judgments.jsonl").write_text(
        "".join(j.to_json() + "\n" for j in judgments), encoding="utf-8")
    result = RunResult(spec=spec, results=results, config_hash=config_hash,
                       package_version="0.1.0", created=CREATED, extra={"seconds": 12.5})
    (run_dir / "results.json").write_text(result.to_json(), encoding="utf-8")
    return run_dir


def write_runs(root: Path) -> list[Path]:
    """Both runs (fewshot first, so the leaderboard has to sort them)."""
    return [write_run(root, method) for method in METHODS]


@contextmanager
def leaderboard_registered():
    """Make sure the CLI has the ``leaderboard`` command, whether or not the installed package
    already announces the plugin through its entry point."""
    from fspo_bench.leaderboard import plugin

    original = plugins.add_commands

    def add_commands(cli) -> None:
        original(cli)
        if not any(group.name == "leaderboard" for group in cli.registered_groups):
            plugin.register_commands(cli=cli)

    with mock.patch.object(plugins, "add_commands", add_commands):
        yield


def run_cli(*argv: str) -> int:
    """Run ``fspo-bench ARGV`` in-process; returns the exit code."""
    from fspo_bench.cli import main

    with leaderboard_registered():
        try:
            main(list(argv))
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
    return 0


def canary_count(run_dir: Path, kinds: tuple[str, ...] | None = None) -> int:
    """How many canary verdicts a run's judge_canaries.json reports (of ``kinds`` if given)."""
    report = json.loads((run_dir / "judge_canaries.json").read_text())
    return sum(k["n"] for domain in report.values() for kind, k in domain["by_kind"].items()
               if kinds is None or kind in kinds)
