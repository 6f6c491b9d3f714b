"""Metrics: extra numbers computed from a run's generations and judgments."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from fspo_bench.component import Component
from fspo_bench.records import Generation, Judgment


class Metric(Component):
    """A leaderboard column. Subclasses implement :meth:`compute`."""

    kind: ClassVar[str] = "metric"

    @abstractmethod
    def compute(
        self, generations: Sequence[Generation], judgments: Sequence[Judgment]
    ) -> dict[str, float]:
        """Named values for one method on one domain."""
