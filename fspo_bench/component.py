"""The base of everything a plugin registers: a named, described class."""

from __future__ import annotations

from typing import ClassVar


class Component:
    """A registrable class. Subclasses set ``name`` (unique within their kind) and ``description``.

    Registration stores the class, not an instance: constructing one (and importing anything
    heavy) happens only when a run needs it, so listing plugins stays fast.
    """

    kind: ClassVar[str] = "component"
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
