"""``study export``: human ratings as ``Judgment`` records, their statistics, and LLM judges'
verdicts and agreement on the same pairs.

Files written to the output folder:

``judgments.jsonl``
    one human ``Judgment`` per rated pair, in a run directory's format (docs/runs.md):
    ``judge = "human"``, ``user`` = the participant id (a prefix of the SHA-256 of their token),
    ``a``/``b`` as shown, ``winner`` ``"a"``, ``"b"`` or ``"tie"`` (no preference); ``meta``:
    ``domain``, ``question_id``, ``method``, ``reference``, ``order`` (``method_first`` or
    ``reference_first``), ``judge_id`` and ``participant``.
``judgments.JUDGE.jsonl``
    the same pairs, in the same order and the same A/B sides, judged by each judge of the study
    file (through the response cache).
``summary.json``
    per comparison: the human winrate and its participant-clustered CI, counts and the sign-test
    p-value; for each judge its own winrate on these pairs and its agreement with the humans.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fspo_bench.cache import ResponseCache
from fspo_bench.judge import Comparison
from fspo_bench.records import Judgment
from fspo_bench.rundir import JUDGMENTS, write_json, write_records
from fspo_bench.runner import (
    REFERENCE_FIRST,
    StageCount,
    cached_judge,
    judge_identity_id,
    make_judge,
)
from fspo_bench.stats import METHOD_FIRST

from .config import StudyConfig
from .prepare import participant_user
from .statistics import agreement, winrate_summary
from .store import StudyStore, participant_id

HUMAN = "human"
SUMMARY = "summary.json"


def human_judgments(config: StudyConfig, store: StudyStore) -> list[Judgment]:
    """Every rated pair of every participant, as human judgments."""
    out = []
    for key in store.participant_keys():
        pid = participant_id(key)
        for task in store.tasks(key):
            if task.winner is None:
                continue
            meta = {"domain": config.domain, "question_id": task.question_id,
                    "method": task.method, "reference": task.reference,
                    "order": METHOD_FIRST if task.method_first else REFERENCE_FIRST,
                    "judge_id": HUMAN, "participant": pid}
            out.append(Judgment(HUMAN, pid, task.question, task.text_a, task.text_b,
                                task.winner, task.winner, True, meta))
    return out


def judge_same_pairs(name: str, options: dict[str, Any], config: StudyConfig,
                     store: StudyStore, humans: list[Judgment], cache: ResponseCache,
                     log: Callable[[str], None]) -> list[Judgment]:
    """The judge's verdicts on the humans' pairs, same sides, same order."""
    judge = make_judge(name, options)
    judge.check()
    users = {participant_id(k): participant_user(k, store.shots(k))[0]
             for k in store.participant_keys()}
    comparisons = [Comparison(users[h.user], h.question, h.a, h.b,
                              {"domain": h.meta["domain"], "question_id": h.meta["question_id"]})
                   for h in humans]
    count = StageCount(f"judge ({name})")
    judged = cached_judge(judge, comparisons, cache, count, lambda *a, **k: None)
    log(str(count))
    judge_id = judge_identity_id(judge)
    copied = ("domain", "question_id", "method", "reference", "order")
    return [Judgment(j.judge, j.user, j.question, j.a, j.b, j.winner, j.raw, j.valid,
                     {**j.meta, **{k: h.meta[k] for k in copied}, "judge_id": judge_id})
            for j, h in zip(judged, humans, strict=True)]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def export(config: StudyConfig, store: StudyStore, out: Path, cache: ResponseCache,
           log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Write the files described in the module docstring; return the summary."""
    humans = human_judgments(config, store)
    judged = {name: judge_same_pairs(name, options, config, store, humans, cache, log)
              for name, options in config.judges.items()}
    write_records(out / JUDGMENTS, humans)
    for name, judgments in judged.items():
        write_records(out / f"judgments.{_safe(name)}.jsonl", judgments)
    comparisons = []
    for method, reference in config.comparisons:
        picked = [i for i, h in enumerate(humans)
                  if (h.meta["method"], h.meta["reference"]) == (method, reference)]
        judges = {}
        for name, judgments in judged.items():
            theirs = [judgments[i] for i in picked]
            judges[name] = {**winrate_summary(theirs, seed=config.seed),
                            **agreement([humans[i] for i in picked], theirs, seed=config.seed)}
        comparisons.append({"method": method, "reference": reference,
                            "human": winrate_summary([humans[i] for i in picked],
                                                     seed=config.seed),
                            "judges": judges})
    summary = {"study": config.title, "domain": config.domain,
               "n_participants": len({h.user for h in humans}), "n_judgments": len(humans),
               "comparisons": comparisons}
    write_json(out / SUMMARY, summary)
    return summary


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as a few readable lines."""
    lines = [f"{summary['study']}: {summary['n_judgments']} human judgments from "
             f"{summary['n_participants']} participant(s)"]
    for c in summary["comparisons"]:
        h = c["human"]
        p = "n/a" if h["sign_test_p"] is None else f"{h['sign_test_p']:.3g}"
        lines.append(
            f"{c['method']} vs {c['reference']}: human winrate {_pct(h['winrate'])}% "
            f"[{_pct(h['ci_low'])}, {_pct(h['ci_high'])}] (wins {h['n_wins']}, losses "
            f"{h['n_losses']}, ties {h['n_ties']}; {h['n_participants']} participant(s)); "
            f"sign test p = {p}")
        for name, j in c["judges"].items():
            agree = "n/a" if j["agreement"] is None else f"{100 * j['agreement']:.1f}%"
            lines.append(f"  judge {name}: winrate {_pct(j['winrate'])}%, agreement with "
                         f"humans {agree} over {j['n_pairs']} pair(s) ({j['n_invalid']} "
                         f"invalid)")
    return lines
