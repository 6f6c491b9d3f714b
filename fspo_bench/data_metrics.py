"""The paper's two data metrics: response diversity and label consistency."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

from fspo_bench.records import Preference


def label_entropy(preferences: Sequence[Preference]) -> float:
    """Mean entropy (nats) of the label of each (user, question, response pair).

    A pair labelled the same way every time it appears contributes 0; one labelled each way
    half the time contributes ln 2. Data with one label per pair scores 0 by construction.
    """
    votes: dict[tuple, Counter] = defaultdict(Counter)
    for p in preferences:
        votes[(p.user_id, p.question_id, frozenset((p.chosen, p.rejected)))][p.chosen] += 1
    entropies = []
    for counter in votes.values():
        total = sum(counter.values())
        entropies.append(-sum(c / total * math.log(c / total) for c in counter.values()))
    return sum(entropies) / len(entropies) if entropies else 0.0


def mean_pairwise_similarity(preferences: Sequence[Preference]) -> float:
    """Mean cosine similarity between distinct responses to the same question (lower = more
    diverse), averaged over questions, with the offline MiniLM embeddings."""
    from fspo_bench.embeddings import embed

    responses: dict[str, set[str]] = defaultdict(set)
    for p in preferences:
        responses[p.question_id].update((p.chosen, p.rejected))
    groups = [sorted(texts) for texts in responses.values() if len(texts) > 1]
    flat = [t for group in groups for t in group]
    vectors = embed(flat)
    scores, start = [], 0
    for group in groups:
        block = vectors[start:start + len(group)]
        start += len(group)
        sim = block @ block.T
        n = len(group)
        scores.append((sim.sum() - n) / (n * (n - 1)))
    return float(sum(scores) / len(scores)) if scores else float("nan")
