"""Plugin loading and the registries of domains, methods, backends, judges and metrics.

Plugins are found through the ``fspo_bench`` entry-point group, built-ins included (they are entry
points of the ``fspo-bench`` distribution itself). Entry points load one at a time, each guarded:
a plugin that fails to import, raises in a hook or registers a name that is already taken is
reported in one line naming it, and everything else keeps working.

Environment switches:

``FSPO_BENCH_STRICT_PLUGINS=1``
    any plugin problem is fatal (raises :class:`PluginError`).
``FSPO_BENCH_DISABLE_PLUGIN_AUTOLOAD=1``
    load only the built-in plugins.
``FSPO_BENCH_LOAD_PLUGINS=a,b``
    load only these third-party plugins (entry-point or distribution names) besides built-ins.
``FSPO_BENCH_TRACE_PLUGINS=1``
    trace every hook call to stderr.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from fspo_bench import hookspecs
from fspo_bench.backend import Backend
from fspo_bench.component import Component
from fspo_bench.domain import Domain
from fspo_bench.errors import PluginError, UnknownNameError
from fspo_bench.judge import Judge
from fspo_bench.method import Method
from fspo_bench.metric import Metric

ENTRY_POINT_GROUP = "fspo_bench"
BUILTIN_DISTRIBUTION = "fspo-bench"

# kind -> (hook name, base class every registered component must subclass)
KINDS: dict[str, tuple[str, type[Component]]] = {
    "domain": ("register_domains", Domain),
    "method": ("register_methods", Method),
    "backend": ("register_backends", Backend),
    "judge": ("register_judges", Judge),
    "metric": ("register_metrics", Metric),
}


@dataclass
class PluginInfo:
    """One plugin as ``fspo-bench plugins`` shows it."""

    name: str
    distribution: str
    version: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class Entry:
    """A registered component and the plugin that provided it."""

    kind: str
    name: str
    component: type[Component]
    provider: str


@dataclass
class PluginState:
    pm: pluggy.PluginManager
    plugins: list[PluginInfo]
    registries: dict[str, dict[str, Entry]]
    problems: list[str]


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _report(problem: str, state: PluginState) -> None:
    state.problems.append(problem)
    if _flag("FSPO_BENCH_STRICT_PLUGINS"):
        raise PluginError(problem)
    print(f"fspo-bench: warning: {problem}", file=sys.stderr)


def _selected(ep: EntryPoint, dist: str) -> bool:
    if _normalize(dist) == BUILTIN_DISTRIBUTION:
        return True
    if _flag("FSPO_BENCH_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    wanted = os.environ.get("FSPO_BENCH_LOAD_PLUGINS")
    if wanted is None:
        return True
    names = {_normalize(n) for n in wanted.split(",") if n.strip()}
    return _normalize(ep.name) in names or _normalize(dist) in names


def _load_entry_points(state: PluginState) -> None:
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist else "unknown"
        version = ep.dist.version if ep.dist else ""
        if not _selected(ep, dist):
            continue
        info = PluginInfo(ep.name, dist, version, _normalize(dist) == BUILTIN_DISTRIBUTION)
        state.plugins.append(info)
        if state.pm.has_plugin(ep.name):
            info.error = "duplicate plugin name"
            _report(f"plugin {ep.name!r} from {dist} has the name of a loaded plugin", state)
            continue
        try:
            module = ep.load()
            state.pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin must not take the tool down
            info.error = f"{type(exc).__name__}: {exc}"
            _report(f"plugin {ep.name!r} from {dist} failed to load: {info.error}", state)


def _drop_plugins_with_unknown_hooks(state: PluginState) -> None:
    """``pm.check_pending()`` catches misspelled hook names; such a plugin is dropped whole."""
    while True:
        try:
            state.pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = state.pm.get_name(exc.plugin) or repr(exc.plugin)
            state.pm.unregister(exc.plugin)
            for info in state.plugins:
                if info.name == name:
                    info.error = str(exc)
            _report(f"plugin {name!r} implements an unknown hook: {exc}", state)


def _call_each(state: PluginState, hook_name: str, make_kwargs: Any) -> None:
    """Call every implementation of a hook on its own, so one failing plugin spoils nothing else.

    ``make_kwargs(provider)`` gives the keyword arguments for the plugin named ``provider``.
    """
    for impl in getattr(state.pm.hook, hook_name).get_hookimpls():
        try:
            impl.function(**make_kwargs(impl.plugin_name))
        except PluginError:
            raise
        except Exception as exc:
            _report(
                f"plugin {impl.plugin_name!r} failed in {hook_name}: {type(exc).__name__}: {exc}",
                state,
            )


def _collect(state: PluginState) -> None:
    for kind, (hook_name, base) in KINDS.items():

        def kwargs_for(provider: str, _kind: str = kind, _base: type = base) -> dict[str, Any]:
            return {"register": lambda c: _register(state, _kind, _base, provider, c)}

        _call_each(state, hook_name, kwargs_for)
        state.registries[kind] = dict(sorted(state.registries[kind].items()))


def add_commands(cli: Any) -> None:
    """Let every plugin add its sub-commands to the CLI app."""
    _call_each(state(), "register_commands", lambda provider: {"cli": cli})


def _register(
    state: PluginState, kind: str, base: type[Component], provider: str, component: Any
) -> None:
    if not (isinstance(component, type) and issubclass(component, base)):
        _report(f"plugin {provider!r} registered {component!r}, not a {base.__name__}", state)
        return
    name = component.name
    if not name:
        _report(f"plugin {provider!r} registered {component.__name__} without a name", state)
        return
    registry = state.registries[kind]
    if name in registry:
        first = registry[name].provider
        _report(
            f"{kind} {name!r} is registered by both plugin {first!r} and plugin {provider!r}; "
            f"keeping the one from {first!r}",
            state,
        )
        return
    registry[name] = Entry(kind, name, component, provider)


def _hooks_of(pm: pluggy.PluginManager, info: PluginInfo) -> list[str]:
    plugin = pm.get_plugin(info.name)
    if plugin is None:
        return []
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])


def build_state() -> PluginState:
    """Load every selected plugin and collect what it registers (uncached; see :func:`state`)."""
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    if _flag("FSPO_BENCH_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda message: print(message, end="", file=sys.stderr))
        pm.enable_tracing()
    state = PluginState(pm, [], {kind: {} for kind in KINDS}, [])
    _load_entry_points(state)
    _drop_plugins_with_unknown_hooks(state)
    _collect(state)
    for info in state.plugins:
        info.hooks = _hooks_of(pm, info)
    return state


@functools.cache
def state() -> PluginState:
    """The loaded plugins, built once per process."""
    return build_state()


def reset() -> None:
    """Forget the loaded plugins (tests use this after changing the environment)."""
    state.cache_clear()


def names(kind: str) -> list[str]:
    """Registered names of one kind, sorted."""
    return list(state().registries[kind])


def entries(kind: str) -> list[Entry]:
    return list(state().registries[kind].values())


def get(kind: str, name: str) -> type[Component]:
    """The component class registered under ``name``; UnknownNameError lists the valid names."""
    registry = state().registries[kind]
    if name not in registry:
        raise UnknownNameError(kind, name, list(registry))
    return registry[name].component
