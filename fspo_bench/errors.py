"""Errors meant for the user: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class FspoBenchError(Exception):
    """A problem the user can fix (bad input, unknown name, unreadable file)."""

    exit_code = 1


class UnknownNameError(FspoBenchError):
    """A domain, method, backend, judge or metric name that no plugin registered."""

    exit_code = 2

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        choices = ", ".join(valid) if valid else "(none registered)"
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s: {choices}")


class PluginError(FspoBenchError):
    """A plugin failed to load or registered something wrongly."""
