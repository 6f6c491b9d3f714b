"""Run many methods' multi-call plans together, one round of model calls at a time.

A plan is what :meth:`fspo_bench.method.Method.calls` (or ``scoring_request``) returns: a
generator that yields requests and receives their texts, or a plain value when no call is
needed. Round k sends the k-th request of every plan still running in one batch to
``complete`` (the runner's cached generation), so batching and caching work across queries.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from fspo_bench.backend import GenerationRequest


def drive(plans: Sequence[Any], complete: Callable[[list[GenerationRequest]], list[str]],
          on_text: Callable[[int, GenerationRequest, str], None] | None = None) -> list[Any]:
    """The value each plan returns, making its calls through ``complete``; ``on_text(i,
    request, text)`` sees every call of plan ``i``."""
    results: list[Any] = [None] * len(plans)
    pending: dict[int, GenerationRequest] = {}

    def advance(i: int, text: str | None) -> None:
        try:
            pending[i] = plans[i].send(text)
        except StopIteration as stop:
            results[i] = stop.value

    for i, plan in enumerate(plans):
        if inspect.isgenerator(plan):
            advance(i, None)
        else:
            results[i] = plan
    while pending:
        batch = sorted(pending)
        requests = [pending.pop(i) for i in batch]
        for i, request, text in zip(batch, requests, complete(requests), strict=True):
            if on_text is not None:
                on_text(i, request, text)
            advance(i, text)
    return results
