"""Winrates from pairwise judgments, with confidence intervals from a cluster bootstrap.

The cluster is the user: queries of one user are not independent (same shots, same tastes), so
resampling users, not queries, gives honest intervals. docs/runs.md states every definition.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fspo_bench.records import DomainResult, Generation, Judgment

N_BOOTSTRAP = 10_000
METHOD_FIRST = "method_first"


@dataclass(frozen=True)
class Outcome:
    """One single-order verdict from the method's side: 1 win, 0.5 tie, 0 loss, None invalid."""

    user: str
    question_id: str
    method_first: bool
    score: float | None


def outcome(judgment: Judgment) -> Outcome:
    method_first = judgment.meta["order"] == METHOD_FIRST
    if not judgment.valid or judgment.winner is None:
        score = None
    elif judgment.winner == "tie":
        score = 0.5
    else:
        score = 1.0 if (judgment.winner == "a") == method_first else 0.0
    return Outcome(judgment.user, judgment.meta["question_id"], method_first, score)


def query_scores(outcomes: Sequence[Outcome]) -> dict[tuple[str, str], float]:
    """(user, question_id) -> mean score over the query's valid orders; invalid queries are left
    out."""
    valid: dict[tuple[str, str], list[float]] = defaultdict(list)
    for o in outcomes:
        if o.score is not None:
            valid[(o.user, o.question_id)].append(o.score)
    return {key: float(np.mean(scores)) for key, scores in valid.items()}


def bootstrap_mean_ci(by_cluster: dict[str, list[float]], *, seed: int = 0,
                      n: int = N_BOOTSTRAP) -> tuple[float, float] | None:
    """95% percentile interval of the pooled mean of the scores, resampling whole clusters
    (users) with replacement. None without scores; a point with a single cluster."""
    clusters = [v for v in by_cluster.values() if v]
    if not clusters:
        return None
    sums = np.array([sum(v) for v in clusters], dtype=float)
    counts = np.array([len(v) for v in clusters], dtype=float)
    if len(clusters) < 2:
        mean = float(sums[0] / counts[0])
        return mean, mean
    idx = np.random.default_rng(seed).integers(0, len(clusters), size=(n, len(clusters)))
    low, high = np.percentile(sums[idx].sum(1) / counts[idx].sum(1), [2.5, 97.5])
    return float(low), float(high)


def cluster_bootstrap(scores: dict[tuple[str, str], float], *, seed: int = 0,
                      n: int = N_BOOTSTRAP) -> tuple[float, float]:
    """95% interval of the mean query score, in percent, resampling users."""
    per_user: dict[str, list[float]] = defaultdict(list)
    for (user, _), score in scores.items():
        per_user[user].append(score)
    low, high = bootstrap_mean_ci(per_user, seed=seed, n=n)
    return 100 * low, 100 * high


def paired_difference(a: dict[tuple[str, str], float], b: dict[tuple[str, str], float], *,
                      seed: int = 0, n: int = N_BOOTSTRAP) -> dict[str, float]:
    """Winrate of A minus winrate of B over their common queries, with a paired cluster CI."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two runs share no judged query")
    diffs = {key: a[key] - b[key] for key in common}
    low, high = cluster_bootstrap({k: (d + 1) / 2 for k, d in diffs.items()}, seed=seed, n=n)
    mean = 100 * float(np.mean(list(diffs.values())))
    # (d + 1) / 2 maps differences in [-1, 1] to [0, 1]; map the interval back.
    return {"difference": mean, "ci_low": 2 * low - 100, "ci_high": 2 * high - 100,
            "n_queries": len(common), "n_users": len({u for u, _ in common})}


def length_controlled_winrate(outcomes: Sequence[Outcome], length_diff: Sequence[float]
                              ) -> float | None:
    """AlpacaEval-style, simplified: logistic regression of the outcome on the standardized
    length difference (method minus reference) and the order; the winrate (percent) predicted at
    zero length difference and no order effect. Ties count as half a win and half a loss."""
    rows = [(o.score, d, 1.0 if o.method_first else -1.0)
            for o, d in zip(outcomes, length_diff, strict=True) if o.score is not None]
    if len(rows) < 4:
        return None
    y = np.array([r[0] for r in rows])
    d = np.array([r[1] for r in rows], dtype=float)
    scale = d.std() or 1.0
    x = np.column_stack([np.ones(len(rows)), (d - d.mean()) / scale, [r[2] for r in rows]])
    beta = np.zeros(3)
    for _ in range(50):  # Newton's method with a small ridge penalty for separable data
        p = 1 / (1 + np.exp(-x @ beta))
        grad = x.T @ (y - p) - 1e-2 * beta
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-2 * np.eye(3)
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    at_zero = beta[0] - beta[1] * d.mean() / scale
    return float(100 / (1 + np.exp(-at_zero)))


def words(text: str) -> int:
    return len(text.split())


def domain_result(domain: str, judgments: Sequence[Judgment], generations: Sequence[Generation],
                  *, seed: int = 0) -> DomainResult:
    """The statistics of one method against its reference on one domain (docs/runs.md)."""
    texts = {(g.meta["role"], g.query.user.id, g.meta["question_id"]): g.text for g in generations}
    outcomes = [outcome(j) for j in judgments]
    scores = query_scores(outcomes)
    valid = [o.score for o in outcomes if o.score is not None]
    by_query: dict[tuple[str, str], dict[bool, float | None]] = defaultdict(dict)
    for o in outcomes:
        by_query[(o.user, o.question_id)][o.method_first] = o.score
    both = [v for v in by_query.values() if v.get(True) is not None and v.get(False) is not None]
    method_words = [words(t) for (role, _, _), t in texts.items() if role == "method"]
    reference_words = [words(t) for (role, _, _), t in texts.items() if role == "reference"]
    length_diff = [words(texts.get(("method", o.user, o.question_id), ""))
                   - words(texts.get(("reference", o.user, o.question_id), "")) for o in outcomes]
    winrate = 100 * float(np.mean(list(scores.values()))) if scores else None
    ci_low, ci_high = cluster_bootstrap(scores, seed=seed) if scores else (None, None)
    return DomainResult(
        domain=domain,
        winrate=winrate,
        ci_low=ci_low,
        ci_high=ci_high,
        n_wins=sum(s == 1.0 for s in valid),
        n_losses=sum(s == 0.0 for s in valid),
        n_ties=sum(s == 0.5 for s in valid),
        n_invalid=sum(o.score is None for o in outcomes),
        extra={
            "position_consistency": (sum(v[True] == v[False] for v in both) / len(both)
                                     if both else None),
            "length_controlled_winrate": length_controlled_winrate(outcomes, length_diff),
            "n_queries": len(by_query),
            "n_users": len({u for u, _ in by_query}),
            "mean_length": float(np.mean(method_words)) if method_words else None,
            "mean_length_reference": float(np.mean(reference_words)) if reference_words else None,
        },
    )
