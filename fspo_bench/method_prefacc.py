"""A method's preference accuracy: as it would answer, does it prefer the user's chosen response?

The pairs are :mod:`fspo_bench.prefacc`'s (held-out users' labelled pairs on held-out
questions, stratified over users in a seeded order, with the same shots). Each method is scored
in its own context: the prompt of its :meth:`~fspo_bench.method.Method.scoring_request` for the
pair's query, rendered by the backend (the few-shot prompt and its prefill for ``fewshot``,
``preft`` and ``fspo``; after the model's own user description for ``fspo-rat``; the user
description for ``oracle``; the bare question in the chat template for ``base``), with the
request's checkpoint as adapter. The two choices are the chosen and the rejected response.

The headline, **calibrated** accuracy scores each response by its implicit reward against one
reference shared by every method: ``s(y) = log p_method(y | its context) - log p_base(y | the
reference method's context)``, where the reference is the run's reference method (``base``: the
question alone, no shots, no adapter). A pair is right when ``s(chosen) > s(rejected)``; a tie
counts one half. The reference therefore scores exactly 50, and the length of the responses,
which dominates summed log-probabilities, cancels. Secondary: ``summed`` (the higher summed
log-probability wins, a tie goes to the first choice as in lm-eval) and ``norm`` (per
character, lm-eval's ``acc_norm``).

**Specificity**: each pair is also scored with the shots (and, for methods that see it, the
profile) of another held-out user who labelled the same two responses the other way round.
Specificity = calibrated accuracy with the user's own shots minus accuracy with those
mismatched shots, over the pairs that have such a user: a method that is better for everyone but
personal to no one scores 0; one that follows whatever shots it is given scores up to 100.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fspo_bench.backend import Backend, GenerationParams, GenerationRequest
from fspo_bench.calls import drive
from fspo_bench.dataset import DomainData
from fspo_bench.method import Method
from fspo_bench.prefacc import (
    LoglikCount,
    Progress,
    cached_loglikelihood,
    choice_order,
    doc_id,
    ordered_preferences,
    request_pairs,
    score_doc,
    shots_for,
    user_ci,
)
from fspo_bench.records import Preference, Query

#: Generates the texts of scoring calls (a RAT method's description), through the run's cache.
Complete = Callable[[list[GenerationRequest]], list[str]]


@dataclass(frozen=True)
class Scorer:
    """What scores one method on one domain: the backend, the cached calls and their counts."""

    backend: Backend
    complete: Complete
    params: GenerationParams
    cache: Any = None
    count: LoglikCount | None = None
    progress: Progress | None = None

    def contexts(self, method: Method, queries: Sequence[Query]) -> list[GenerationRequest]:
        return drive([method.scoring_request(method.visible(q), self.params) for q in queries],
                     self.complete)

    def logliks(self, method: Method, queries: Sequence[Query], prefs: Sequence[Preference],
                domain: str) -> list[list[float]]:
        """Per pair, the summed log-probabilities of its two choices (:func:`choices`) in the
        method's context for the query, with the context request's adapter."""
        requests = self.contexts(method, queries)
        lls: list[list[float]] = [[] for _ in requests]
        for adapter in dict.fromkeys(r.adapter for r in requests):
            mine = [i for i, r in enumerate(requests) if r.adapter == adapter]
            pairs = [pair for i in mine for pair in request_pairs(
                {"context": self.backend.render_prompt(requests[i]),
                 "choices": choices(prefs[i], domain)})]
            scores = cached_loglikelihood(self.backend, pairs, adapter=adapter, cache=self.cache,
                                          count=self.count, progress=self.progress,
                                          label=f"prefacc {method.name} [{domain}]")
            for k, i in enumerate(mine):
                lls[i] = scores[2 * k:2 * k + 2]
        return lls


def choices(pref: Preference, domain: str) -> list[str]:
    """The pair's two responses, the chosen one at index ``choice_order(domain, pref)``."""
    return ([pref.rejected, pref.chosen] if choice_order(domain, pref)
            else [pref.chosen, pref.rejected])


def calibrated(lls: Sequence[float], ref: Sequence[float], gold: int) -> float:
    """1 when the chosen response's implicit reward beats the rejected one's, 0.5 on a tie."""
    margin = (lls[gold] - ref[gold]) - (lls[1 - gold] - ref[1 - gold])
    return 1.0 if margin > 0 else 0.5 if margin == 0 else 0.0


def query_of(data: DomainData, pref: Preference, shots: int, seed: int) -> Query:
    """The query a pair stands for: its user (whole), seeded shots and question."""
    return Query(data.users[pref.user_id], shots_for(data, pref, shots, seed), pref.question,
                 pref.question_id)


def opponent(data: DomainData, pref: Preference) -> Preference | None:
    """Another held-out user's pair with the same question and the two responses the other
    way round (the first by user id), or None."""
    others = [p for p in data.eval_preferences()
              if p.user_id != pref.user_id and p.question_id == pref.question_id
              and p.chosen == pref.rejected and p.rejected == pref.chosen]
    return min(others, key=lambda p: p.user_id, default=None)


def summarize(samples: Sequence[dict[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """Calibrated accuracy (percent) with its user-clustered 95% interval, the secondary
    accuracies, specificity where scored, and the same by the users' ``group`` (Reviews:
    trained and interpolated users) in ``by_group``."""
    out = _summary(samples, seed)
    groups = sorted({s["group"] for s in samples if s.get("group")})
    if groups:
        out["by_group"] = {g: _summary([s for s in samples if s.get("group") == g], seed)
                           for g in groups}
    return out


def _summary(samples: Sequence[dict[str, Any]], seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"n_docs": len(samples),
                           "n_users": len({s["user_id"] for s in samples})}
    for key in ("acc", "acc_summed", "acc_norm", "specificity"):
        scored = [s for s in samples if s.get(key) is not None]
        out[key] = 100 * sum(s[key] for s in scored) / len(scored) if scored else None
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = (
            None if v is None else 100 * v for v in user_ci(scored, key, seed))
        out[f"{key}_n"] = len(scored)
    return out


def method_preference_accuracy(method: Method, reference: Method, data: DomainData, *,
                               scorer: Scorer, shots: int | None, seed: int, limit: int,
                               specificity: bool = False) -> dict[str, Any]:
    """The method's calibrated (and secondary) preference accuracy on the first ``limit``
    held-out pairs of ``data``, with per-pair ``samples``; with ``specificity``, also scored
    with mismatched shots."""
    n = data.default_shots if shots is None else shots
    prefs = ordered_preferences(data, seed)[:max(limit, 0)]
    queries = [query_of(data, p, n, seed) for p in prefs]
    own = scorer.logliks(method, queries, prefs, data.domain)
    ref = scorer.logliks(reference, queries, prefs, data.domain)
    samples = []
    for pref, lls, ref_lls in zip(prefs, own, ref, strict=True):
        gold = choice_order(data.domain, pref)
        doc = {"id": doc_id(data.domain, pref), "domain": data.domain, "user_id": pref.user_id,
               "question_id": pref.question_id, "n_shots": n, "gold": gold,
               "choices": choices(pref, data.domain)}
        lm_eval = score_doc(doc, lls)
        samples.append({"id": doc["id"], "user_id": pref.user_id,
                        "question_id": pref.question_id,
                        "group": data.users[pref.user_id].attributes.get("group"),
                        "gold": gold, "lls": list(lls), "reference_lls": list(ref_lls),
                        "acc": calibrated(lls, ref_lls, gold), "acc_summed": lm_eval["acc"],
                        "acc_norm": lm_eval["acc_norm"]})
    if specificity:
        _add_specificity(method, data, prefs, samples, ref, scorer, n, seed)
    return {"domain": data.domain, "method": method.name, "reference": reference.name,
            "shots": n, "seed": seed, "limit": limit, **summarize(samples, seed=seed),
            "samples": samples}


def _add_specificity(method: Method, data: DomainData, prefs: Sequence[Preference],
                     samples: list[dict[str, Any]], ref: Sequence[Sequence[float]],
                     scorer: Scorer, shots: int, seed: int) -> None:
    """Score each pair again with its opponent's shots; ``specificity`` per sample."""
    matched = [(i, o) for i, o in enumerate(opponent(data, p) for p in prefs) if o is not None]
    queries = [query_of(data, o, shots, seed) for _, o in matched]
    mismatched = scorer.logliks(method, queries, [prefs[i] for i, _ in matched],
                                data.domain)
    for (i, other), lls in zip(matched, mismatched, strict=True):
        acc = calibrated(lls, ref[i], samples[i]["gold"])
        samples[i].update(opponent=other.user_id, acc_mismatched=acc,
                          specificity=samples[i]["acc"] - acc)
