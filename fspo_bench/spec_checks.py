"""Checks of a run's options before any work: each problem is one error naming the option.

Only what the options alone decide is checked here. What depends on the model (``max_new_tokens``
beyond its context) is checked by the backend (``HFBackend.check``); unknown component names are
refused where they are looked up, and component options by the component that takes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from fspo_bench.errors import FspoBenchError
from fspo_bench.records import RunSpec


class OptionError(FspoBenchError):
    """A run option out of its range: a usage error, like click's (exit code 2)."""

    exit_code = 2


#: Seeds go to numpy (the bootstrap), whose seeds are unsigned 32-bit integers.
SEED_LIMIT = 2**32

#: Generation key -> (option, integer only, rule in words, the rule).
GENERATION_RULES: dict[str, tuple[str, bool, str, Callable[[Any], bool]]] = {
    "max_new_tokens": ("--max-new-tokens", True, ">= 1", lambda v: v >= 1),
    "temperature": ("--temperature", False, ">= 0", lambda v: v >= 0),
    "top_p": ("top_p", False, "in (0, 1]", lambda v: 0 < v <= 1),
    "repetition_penalty": ("--repetition-penalty", False, "> 0", lambda v: v > 0),
}


def check_spec(spec: RunSpec) -> None:
    """Raise :class:`OptionError`, naming the option, for the first option out of its range."""
    repeated = [d for i, d in enumerate(spec.domains) if d in spec.domains[:i]]
    if repeated:
        raise OptionError(f"--domain {repeated[0]} is given more than once")
    if spec.shots is not None:
        _check("--shots", spec.shots, True, ">= 0", lambda v: v >= 0)
    if spec.limit is not None:
        _check("--limit", spec.limit, True, ">= 1", lambda v: v >= 1)
    _check("--seed", spec.seed, True, f"from 0 to {SEED_LIMIT - 1}",
           lambda v: 0 <= v < SEED_LIMIT)
    _check("--prefacc", spec.prefacc, True, ">= 0", lambda v: v >= 0)
    if spec.specificity and not spec.prefacc:
        raise OptionError("--specificity scores preference-accuracy pairs: give --prefacc N > 0")
    for key, value in spec.generation.items():
        if key not in GENERATION_RULES:
            raise OptionError(f"unknown generation option {key!r}; valid: "
                              f"{', '.join(GENERATION_RULES)}")
        option, integer, rule, ok = GENERATION_RULES[key]
        _check(option, value, integer, rule, ok)


def _check(option: str, value: Any, integer: bool, rule: str, ok: Callable[[Any], bool]) -> None:
    """OptionError unless ``value`` is a number (an integer if ``integer``), finite, and ok."""
    kinds = (int,) if integer else (int, float)
    if (isinstance(value, bool) or not isinstance(value, kinds)
            or (isinstance(value, float) and not math.isfinite(value)) or not ok(value)):
        kind = "an integer" if integer else "a finite number"
        raise OptionError(f"{option} must be {kind} {rule}, not {value!r}")
