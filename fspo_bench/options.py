"""``KEY=VALUE`` command-line options for plugins (``--judge-option``, ``--backend-option``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fspo_bench.errors import FspoBenchError


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as keyword arguments; a VALUE that is valid JSON (a number, true,
    false, null, a list) is decoded, anything else stays a string."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise FspoBenchError(f"option {item!r} is not KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options
