"""Judges: decide which of two responses a given user prefers."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fspo_bench.component import Component
from fspo_bench.records import Judgment, Record, User


@dataclass(frozen=True)
class Comparison(Record):
    """Two responses to one question, to be judged for one user.

    ``meta`` holds what is known about the responses without reading them (for example the
    attribute each was written for), which exact oracle judges use.
    """

    user: User
    question: str
    a: str
    b: str
    meta: dict[str, Any] = field(default_factory=dict)


class Judge(Component):
    """A pairwise judge. Subclasses implement :meth:`judge`."""

    kind: ClassVar[str] = "judge"
    #: How many comparisons the runner hands over at once; each batch is cached when it returns.
    batch_size: int = 8

    def __init__(self, **options: Any) -> None:
        self.options = options

    def identity(self) -> dict[str, Any]:
        """What names this judge's verdicts in cache keys and leaderboard rows."""
        return {"judge": self.name}

    def check(self) -> None:
        """Fail early, with one clear FspoBenchError, if the judge cannot run at all."""

    def status(self) -> str:
        """A short live status for progress displays (retries, cost so far); may be empty."""
        return ""

    def estimate_cost(self, n_comparisons: int) -> float:
        """Estimated USD cost of judging this many comparisons (0 for local judges)."""
        return 0.0

    @abstractmethod
    def judge(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        """One judgment per comparison, in order; unparseable verdicts are ``valid=False``."""
