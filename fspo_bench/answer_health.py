"""Answer health: whether a generated answer can be judged, and what a failed one scores.

An answer is ``empty`` (nothing left after the format is stripped), a ``format_error`` (the
method's format was not followed: a RAT generation with a user description and no answer),
``truncated`` (it filled ``max_new_tokens``; judged as it is) or ``ok``. Empty answers and
format errors are failed answers: a judge never sees them, and a failed answer loses its
comparison in both orders (two failed answers tie). docs/runs.md states the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fspo_bench.judge import Comparison
from fspo_bench.prompts import ParsedGeneration
from fspo_bench.records import AnswerStatus, Generation, Judgment


def answer_status(parsed: ParsedGeneration, *, truncated: bool) -> AnswerStatus:
    """The status of one parsed answer; ``truncated`` when its last call hit the token limit."""
    if not parsed.response.strip():
        return "format_error" if parsed.description is not None else "empty"
    return "truncated" if truncated else "ok"


def failed_verdict(comparison: Comparison, judge: str, a: Generation, b: Generation
                   ) -> Judgment:
    """The verdict of a comparison in which ``a`` or ``b`` (or both) failed, without a judge:
    the answer that did not fail wins; two failed answers tie."""
    if a.failed and b.failed:
        winner, why = "tie", f"both answers failed ({a.status}, {b.status}): a tie"
    elif a.failed:
        winner, why = "b", f"answer a failed ({a.status}) and loses"
    else:
        winner, why = "a", f"answer b failed ({b.status}) and loses"
    return Judgment(judge=judge, user=comparison.user.id, question=comparison.question,
                    a=comparison.a, b=comparison.b, winner=winner, valid=True,
                    raw=f"not judged: {why}; Verdict: {winner}",
                    meta={**comparison.meta, "not_judged": True})


def health_columns(generations: Sequence[Generation]) -> dict[str, Any]:
    """Per-domain answer-health columns of results.json: failed answers of the method and of
    the reference, the method's failed share (percent) and its truncated answers."""
    method = [g for g in generations if g.meta.get("role") == "method"]
    reference = [g for g in generations if g.meta.get("role") == "reference"]
    n_failed = sum(g.failed for g in method)
    return {"n_failed": n_failed, "n_failed_reference": sum(g.failed for g in reference),
            "failed_share": 100 * n_failed / len(method) if method else None,
            "n_truncated": sum(g.status == "truncated" for g in method)}
