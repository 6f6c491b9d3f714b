"""Hook specifications: what a plugin can contribute.

Every hook takes a ``register`` callback (or the CLI app). A plugin implements the hooks it needs
with ``@fspo_bench.hookimpl`` and is found through the ``fspo_bench`` entry-point group; the
built-in domains, methods, backends, judges and metrics are plugins of exactly this kind.
``docs/plugins.md`` documents each hook with a complete example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("fspo_bench")

Register = Callable[[type], None]


@hookspec
def register_domains(register: Register) -> None:
    """Register :class:`fspo_bench.Domain` subclasses: ``register(MyDomain)``."""


@hookspec
def register_methods(register: Register) -> None:
    """Register :class:`fspo_bench.Method` subclasses: ``register(MyMethod)``."""


@hookspec
def register_backends(register: Register) -> None:
    """Register :class:`fspo_bench.Backend` subclasses: ``register(MyBackend)``."""


@hookspec
def register_judges(register: Register) -> None:
    """Register :class:`fspo_bench.Judge` subclasses: ``register(MyJudge)``."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register :class:`fspo_bench.Metric` subclasses (extra leaderboard columns)."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to the ``fspo-bench`` command line (a ``typer.Typer`` app)."""
