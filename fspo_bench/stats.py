"""Winrates from pairwise judgments, with confidence intervals from a cluster bootstrap.

The cluster is the user: queries of one user are not independent (same shots, same tastes), so
resampling users, not queries, gives honest intervals. Methods are compared by paired
differences on the same queries and pairs, clustered the same way. docs/runs.md states every
definition.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fspo_bench.records import DomainResult, Generation, Judgment

N_BOOTSTRAP = 10_000
METHOD_FIRST = "method_first"
#: Fewer judged single-order verdicts than this give no length-controlled winrate.
LC_MIN_VERDICTS = 4
#: Ridge penalty on the length weight of the length-controlled GLM (a N(0, 1) prior).
LC_LENGTH_PENALTY = 1.0
#: The two kinds of per-pair preference accuracy a paired comparison can use.
CALIBRATED, SUMMED = "calibrated", "summed"

Key = tuple[str, str]


@dataclass(frozen=True)
class Outcome:
    """One single-order verdict from the method's side: 1 win, 0.5 tie, 0 loss, None invalid.
    ``judged`` is false for a verdict scored by rule (a failed answer), not by the judge."""

    user: str
    question_id: str
    method_first: bool
    score: float | None
    judged: bool = True


def outcome(judgment: Judgment) -> Outcome:
    method_first = judgment.meta["order"] == METHOD_FIRST
    if not judgment.valid or judgment.winner is None:
        score = None
    elif judgment.winner == "tie":
        score = 0.5
    else:
        score = 1.0 if (judgment.winner == "a") == method_first else 0.0
    return Outcome(judgment.user, judgment.meta["question_id"], method_first, score,
                   not judgment.meta.get("not_judged", False))


def query_scores(outcomes: Sequence[Outcome]) -> dict[Key, float]:
    """(user, question_id) -> mean score over the query's valid orders; invalid queries are left
    out."""
    valid: dict[Key, list[float]] = defaultdict(list)
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


def _by_user(scores: Mapping[Key, float]) -> dict[str, list[float]]:
    per_user: dict[str, list[float]] = defaultdict(list)
    for (user, _), score in scores.items():
        per_user[user].append(score)
    return per_user


def cluster_bootstrap(scores: dict[Key, float], *, seed: int = 0,
                      n: int = N_BOOTSTRAP) -> tuple[float, float]:
    """95% interval of the mean query score, in percent, resampling users."""
    low, high = bootstrap_mean_ci(_by_user(scores), seed=seed, n=n)
    return 100 * low, 100 * high


# --------------------------------------------------------------------------- paired statistics


def paired_difference(a: Mapping[Key, float], b: Mapping[Key, float], *, seed: int = 0,
                      n: int = N_BOOTSTRAP) -> dict[str, float]:
    """Mean of A minus B over their common (user, item) keys, in percentage points, with a 95%
    paired interval that resamples users (each user's items keep their pairing). Items are
    queries (winrate) or labelled pairs (preference accuracy); ValueError if none is common."""
    diffs = {key: a[key] - b[key] for key in sorted(set(a) & set(b))}
    if not diffs:
        raise ValueError("the two runs share no item (judged query or labelled pair)")
    low, high = bootstrap_mean_ci(_by_user(diffs), seed=seed, n=n)
    return {"difference": 100 * float(np.mean(list(diffs.values()))),
            "ci_low": 100 * low, "ci_high": 100 * high,
            "n_queries": len(diffs), "n_users": len({u for u, _ in diffs})}


def sign_test(a: Mapping[Key, float], b: Mapping[Key, float]) -> dict[str, float | int]:
    """Exact McNemar test over the common keys, as a sign test: the items on which A scores
    higher and those on which B does (equal scores, ties included, are left out), and the
    two-sided exact binomial p-value of that split under p = 1/2."""
    from scipy.stats import binomtest

    common = set(a) & set(b)
    a_better = sum(a[k] > b[k] for k in common)
    b_better = sum(a[k] < b[k] for k in common)
    discordant = a_better + b_better
    p_value = binomtest(a_better, discordant).pvalue if discordant else 1.0
    return {"n_a_better": a_better, "n_b_better": b_better, "p_value": float(p_value)}


def prefacc_kind(*sample_lists: Sequence[Mapping[str, Any]]) -> str:
    """``calibrated`` when every sample carries the calibrated accuracy (the samples of runs
    that have it also carry ``acc_summed``), else ``summed``: older runs' ``acc`` is the
    summed-log-probability accuracy, so only that can be paired with them."""
    new = all("acc_summed" in s for samples in sample_lists for s in samples)
    return CALIBRATED if new else SUMMED


def pair_accuracies(samples: Iterable[Mapping[str, Any]], kind: str) -> dict[Key, float]:
    """(user_id, pair id) -> one method's accuracy on that pair (1, 1/2 for a tie, 0), from the
    ``samples`` of one domain of preference_accuracy.json."""
    if kind == CALIBRATED:
        return {(s["user_id"], s["id"]): float(s["acc"]) for s in samples}
    return {(s["user_id"], s["id"]): float(s.get("acc_summed", s["acc"])) for s in samples}


def prefacc_difference(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], *,
                       seed: int = 0, n: int = N_BOOTSTRAP) -> dict[str, Any]:
    """Preference accuracy of A minus B (percentage points) over their common pairs, with the
    paired user bootstrap interval and the exact McNemar test; ValueError if no pair is common.
    """
    kind = prefacc_kind(a, b)
    acc_a, acc_b = pair_accuracies(a, kind), pair_accuracies(b, kind)
    diff = paired_difference(acc_a, acc_b, seed=seed, n=n)
    return {"kind": kind, "difference": diff["difference"], "ci_low": diff["ci_low"],
            "ci_high": diff["ci_high"], "n_pairs": diff["n_queries"],
            "n_users": diff["n_users"], **sign_test(acc_a, acc_b)}


def method_difference(scores_a: Mapping[Key, float], scores_b: Mapping[Key, float],
                      samples_a: Sequence[Mapping[str, Any]],
                      samples_b: Sequence[Mapping[str, Any]], *, seed: int = 0,
                      n: int = N_BOOTSTRAP) -> dict[str, dict[str, Any] | None]:
    """Method A against method B on one domain: ``winrate`` (:func:`paired_difference` of the
    query scores) and ``prefacc`` (:func:`prefacc_difference` of the pair samples), each None
    when the two share nothing to pair."""
    out: dict[str, dict[str, Any] | None] = {"winrate": None, "prefacc": None}
    if set(scores_a) & set(scores_b):
        out["winrate"] = paired_difference(scores_a, scores_b, seed=seed, n=n)
    pairs_a, pairs_b = ({(s["user_id"], s["id"]) for s in samples}
                        for samples in (samples_a, samples_b))
    if pairs_a & pairs_b:
        out["prefacc"] = prefacc_difference(samples_a, samples_b, seed=seed, n=n)
    return out


# --------------------------------------------------------------------------- length control


@dataclass(frozen=True)
class LengthControlled:
    """The length-controlled winrate of one method on one domain (percent). ``fitted`` is the
    GLM's prediction (None with too few judged verdicts); ``low`` and ``high`` bound AlpacaEval's
    sanity band around ``raw``; outside it, or without a fit, the number is unreliable."""

    fitted: float | None
    raw: float | None
    low: float | None
    high: float | None

    @property
    def reliable(self) -> bool:
        return self.fitted is not None and self.low <= self.fitted <= self.high

    @property
    def winrate(self) -> float | None:
        return self.fitted if self.reliable else None


def lc_band(raw: float) -> tuple[float, float]:
    """AlpacaEval's sanity band for a length-controlled winrate, given the raw one (percent):
    ``[min(raw - raw/4, raw - 10), max(raw + (100 - raw)/4, raw + 10)]``
    (``get_is_extreme_changes`` in alpaca_eval/metrics/glm_winrate.py)."""
    return min(raw - raw / 4, raw - 10), max(raw + (100 - raw) / 4, raw + 10)


def _fit_logistic(x: np.ndarray, y: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Weights of a logistic regression with soft labels ``y`` in [0, 1] (maximum likelihood,
    plus ``penalty * w**2 / 2`` per weight)."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        value = -(y * log_expit(z) + (1 - y) * log_expit(-z)).sum() + (penalty * w * w).sum() / 2
        return float(value), x.T @ (expit(z) - y) + penalty * w

    return minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B").x


def length_controlled_winrate(outcomes: Sequence[Outcome], length_diff: Sequence[float]
                              ) -> LengthControlled:
    """AlpacaEval's length-controlled winrate (Dubois et al. 2024, ``length_controlled_v1``) on
    our single-order verdicts.

    The GLM: ``outcome ~ 1 + tanh(length_diff / std(length_diff)) + order``, a logistic
    regression fitted to the judged verdicts (ties are soft labels of 1/2, invalid verdicts left
    out), ``length_diff`` the method's minus the reference's length in characters, ``order`` +1
    when the method's answer was shown first and -1 otherwise. The length-controlled winrate is
    the mean of the predicted preferences with the length term at zero (each verdict keeps its
    order); verdicts scored by rule (failed answers) keep their score. Unlike AlpacaEval there
    is **no instruction-difficulty term** (it is estimated from AlpacaEval's own models on its
    805 instructions; we have nothing like it) and no regularization towards AlpacaEval's gamed
    baselines: a fixed ridge penalty (``LC_LENGTH_PENALTY``, a N(0, 1) prior) on the length
    weight stands in for it and for AlpacaEval's cross-validated L1 penalty. The result is
    reliable only inside :func:`lc_band` of the raw winrate (the mean of the same verdicts).
    """
    from scipy.special import expit

    rows = [(o, d) for o, d in zip(outcomes, length_diff, strict=True) if o.score is not None]
    if not rows:
        return LengthControlled(None, None, None, None)
    raw = 100 * float(np.mean([o.score for o, _ in rows]))
    low, high = lc_band(raw)
    judged = [(o, d) for o, d in rows if o.judged]
    if len(judged) < LC_MIN_VERDICTS:
        return LengthControlled(None, raw, low, high)
    y = np.array([o.score for o, _ in judged])
    order = np.array([1.0 if o.method_first else -1.0 for o, _ in judged])
    diff = np.array([d for _, d in judged], dtype=float)
    scale = diff.std(ddof=1)
    length = np.tanh(diff / scale) if scale > 0 else np.zeros(len(judged))
    x = np.column_stack([np.ones(len(judged)), length, order])
    w = _fit_logistic(x, y, np.array([0.0, LC_LENGTH_PENALTY, 0.0]))
    predicted = expit(w[0] + w[2] * order)
    ruled = [o.score for o, _ in rows if not o.judged]
    fitted = 100 * float(np.mean([*predicted, *ruled]))
    return LengthControlled(fitted, raw, low, high)


# --------------------------------------------------------------------------- one domain


def words(text: str) -> int:
    return len(text.split())


def domain_result(domain: str, judgments: Sequence[Judgment], generations: Sequence[Generation],
                  *, seed: int = 0) -> DomainResult:
    """The statistics of one method against its reference on one domain (docs/runs.md)."""
    texts = {(g.meta["role"], g.query.user.id, g.meta["question_id"]): g.text for g in generations}
    outcomes = [outcome(j) for j in judgments]
    scores = query_scores(outcomes)
    valid = [o.score for o in outcomes if o.score is not None]
    by_query: dict[Key, dict[bool, float | None]] = defaultdict(dict)
    for o in outcomes:
        by_query[(o.user, o.question_id)][o.method_first] = o.score
    judged: dict[Key, dict[bool, float | None]] = defaultdict(dict)
    for o in outcomes:
        if o.judged:  # verdicts of failed answers follow a rule: no judge's consistency
            judged[(o.user, o.question_id)][o.method_first] = o.score
    both = [v for v in judged.values() if v.get(True) is not None and v.get(False) is not None]
    method_words = [words(t) for (role, _, _), t in texts.items() if role == "method"]
    reference_words = [words(t) for (role, _, _), t in texts.items() if role == "reference"]
    length_diff = [len(texts.get(("method", o.user, o.question_id), ""))
                   - len(texts.get(("reference", o.user, o.question_id), "")) for o in outcomes]
    length_controlled = length_controlled_winrate(outcomes, length_diff)
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
            "length_controlled_winrate": length_controlled.winrate,
            "length_controlled_reliable": length_controlled.reliable,
            "n_queries": len(by_query),
            "n_users": len({u for u, _ in by_query}),
            "mean_length": float(np.mean(method_words)) if method_words else None,
            "mean_length_reference": float(np.mean(reference_words)) if reference_words else None,
        },
    )
