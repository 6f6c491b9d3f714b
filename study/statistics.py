"""Statistics of human ratings: winrate with a participant-clustered CI, a sign test, and the
agreement of LLM judges with the humans on the same pairs.

The winrate is the run statistics' own (``fspo_bench.stats``): a query is one (participant, new
question) pair, scored 1 / 0.5 / 0 from the method's side, and the 95% interval resamples
participants, so each participant is one cluster, exactly as users are in a run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from fspo_bench.records import Judgment
from fspo_bench.stats import bootstrap_mean_ci, cluster_bootstrap, outcome, query_scores


def sign_test(wins: int, losses: int) -> float | None:
    """Exact two-sided binomial (sign) test of wins against losses (ties dropped), p = 1/2.

    The probability, under a fair coin, of a split at least as uneven as the one seen. None
    without any decided pair.
    """
    n = wins + losses
    if n == 0:
        return None
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def winrate_summary(judgments: Sequence[Judgment], *, seed: int = 0) -> dict[str, Any]:
    """Winrate (percent) of the method against the reference, its participant-clustered 95% CI,
    counts and the sign-test p-value. ``judgments`` are of one (method, reference) comparison."""
    outcomes = [outcome(j) for j in judgments]
    scores = query_scores(outcomes)
    valid = [o.score for o in outcomes if o.score is not None]
    wins, losses = valid.count(1.0), valid.count(0.0)
    ci = cluster_bootstrap(scores, seed=seed) if scores else (None, None)
    return {
        "winrate": 100 * sum(scores.values()) / len(scores) if scores else None,
        "ci_low": ci[0], "ci_high": ci[1],
        "n_wins": wins, "n_losses": losses, "n_ties": valid.count(0.5),
        "n_invalid": len(outcomes) - len(valid),
        "n_participants": len({user for user, _ in scores}),
        "sign_test_p": sign_test(wins, losses),
    }


def _agreement_score(human: str, judge: str) -> float:
    """1 for the same verdict, 1/2 when exactly one of them is a tie, 0 for opposite picks."""
    if human == judge:
        return 1.0
    return 0.5 if "tie" in (human, judge) else 0.0


def agreement(humans: Sequence[Judgment], judged: Sequence[Judgment], *,
              seed: int = 0) -> dict[str, Any]:
    """Agreement of a judge with the humans, pair by pair (``judged[i]`` is the judge's verdict
    on the pair of ``humans[i]``, in the same order), with a participant-clustered 95% CI.
    Pairs the judge could not judge are counted in ``n_invalid`` and left out."""
    if len(humans) != len(judged):
        raise ValueError(f"{len(humans)} human and {len(judged)} judge verdicts")
    by_participant: dict[str, list[float]] = defaultdict(list)
    invalid = 0
    for human, other in zip(humans, judged, strict=True):
        if not (other.valid and other.winner and human.valid and human.winner):
            invalid += 1
            continue
        by_participant[human.user].append(_agreement_score(human.winner, other.winner))
    scores = [s for values in by_participant.values() for s in values]
    ci = bootstrap_mean_ci(by_participant, seed=seed)
    return {
        "agreement": sum(scores) / len(scores) if scores else None,
        "agreement_ci": list(ci) if ci is not None else None,
        "n_pairs": len(scores),
        "n_invalid": invalid,
    }
