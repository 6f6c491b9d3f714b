"""Preference accuracy of a method: as it would answer, does it prefer the user's chosen response?

The docs are :mod:`fspo_bench.prefacc`'s (held-out users' labelled pairs on held-out questions,
in the same seeded order, with the same shots), but the context of each is the method's own
request for that query, rendered to text by the backend: the few-shot prompt with its prefill
for ``fewshot``, ``preft`` and ``fspo``, the user description for ``oracle``, the bare question
in the chat template for ``base``; the request's checkpoint is the adapter. The two choices are
the chosen and the rejected response as the method would write them (no headers). A choice wins
by its summed log-probability (a tie goes to the first choice, whose place a hash of the pair
fixes, as in lm-eval). Cheap (no generation) and exact (the labels are
known), so it complements judged winrates, which are noisy on small models and samples.
"""

from __future__ import annotations

from typing import Any

from fspo_bench.backend import Backend, GenerationParams
from fspo_bench.dataset import DomainData
from fspo_bench.method import Method
from fspo_bench.prefacc import (
    LoglikCount,
    Progress,
    make_doc,
    ordered_preferences,
    score_docs,
    shots_for,
    summarize,
)
from fspo_bench.records import Preference, Query


def method_doc(method: Method, backend: Backend, data: DomainData, pref: Preference,
               shots: int, seed: int, params: GenerationParams) -> dict[str, Any]:
    """One doc whose context is the method's rendered request for the pair's query."""
    picked = shots_for(data, pref, shots, seed)
    doc = make_doc(data.domain, pref, picked)
    query = Query(data.users[pref.user_id], picked, pref.question, pref.question_id)
    doc["context"] = backend.render_prompt(method.build_request(query, params))
    doc["choices"] = [pref.rejected, pref.chosen] if doc["gold"] else [pref.chosen, pref.rejected]
    return doc


def method_preference_accuracy(method: Method, backend: Backend, data: DomainData, *,
                               shots: int | None, seed: int, limit: int,
                               params: GenerationParams, cache: Any = None,
                               count: LoglikCount | None = None,
                               progress: Progress | None = None) -> dict[str, Any]:
    """acc (share of pairs won by the chosen response) with its user-clustered 95% bootstrap
    interval over the first ``limit`` held-out pairs of ``data``, plus per-pair ``samples``."""
    n = data.default_shots if shots is None else shots
    prefs = ordered_preferences(data, seed)[:max(limit, 0)]
    docs = [method_doc(method, backend, data, p, n, seed, params) for p in prefs]
    samples = score_docs(backend, docs, adapter=method.checkpoint, cache=cache, count=count,
                         progress=progress, label=f"prefacc {method.name} [{data.domain}]")
    return {"domain": data.domain, "method": method.name, "shots": n, "seed": seed,
            "limit": limit, **summarize(samples, seed=seed), "samples": samples}
