"""Domains: a population of users with labelled preferences, and how to split it."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar

from fspo_bench.component import Component

if TYPE_CHECKING:
    from fspo_bench.dataset import DomainData


class Domain(Component):
    """A personalization domain. Subclasses implement :meth:`load`.

    ``data`` is ``"builtin"`` (the data shipped with the plugin), ``"hub"`` (the official dataset
    ``hub_id``) or a path to a local file in the official columns.
    """

    kind: ClassVar[str] = "domain"
    default_shots: ClassVar[int] = 4
    hub_id: ClassVar[str] = ""

    @abstractmethod
    def load(self, data: str = "builtin", *, strict: bool = False) -> DomainData:
        """Users, preferences and splits; ``strict`` turns skipped bad rows into an error."""
