"""Supply-chain and secret hygiene for the API backends.

``check_litellm_version()`` refuses the litellm releases known to be malicious or compromised
(read from the installed distribution's metadata, without importing litellm), and
``scrub_secrets(text)`` removes the values of secret-looking environment variables from text that
may end up in an error message, a log line or a run directory.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Iterable

from fspo_bench.errors import FspoBenchError

#: litellm releases that must never run: 1.82.7 and 1.82.8 (malicious uploads, March 2026) and
#: 1.107.0 (compromised, October 2026).
BAD_LITELLM_VERSIONS = ("1.82.7", "1.82.8", "1.107.0")
LITELLM_REQUIREMENT = "litellm>=1.83.7,!=1.107.0"
LITELLM_FIX = f"pip install '{LITELLM_REQUIREMENT}'"

#: Environment variables whose names end like this hold secrets (OPENAI_API_KEY, HF_TOKEN, ...).
SECRET_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
#: Shorter values are not scrubbed: replacing every "1" or "yes" in a message helps nobody.
MIN_SECRET_LENGTH = 6
REDACTED = "[redacted]"


def _release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string, trailing zeros dropped: 1.107.0 -> (1, 107)."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if not match:
        return ()
    parts = [int(p) for p in match.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


_BAD_RELEASES = {_release(v): v for v in BAD_LITELLM_VERSIONS}


def check_litellm_version() -> str | None:
    """The installed litellm version (None if litellm is not installed).

    Raises FspoBenchError if it is a known-bad release (any build of 1.82.7, 1.82.8 or 1.107.0,
    such as ``1.82.7+local``). litellm itself is not imported.
    """
    try:
        version = importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        return None
    bad = _BAD_RELEASES.get(_release(version))
    if bad is not None:
        raise FspoBenchError(
            f"litellm {version} is installed, a known-bad release (1.82.7 and 1.82.8 were "
            f"malicious, 1.107.0 was compromised): uninstall it now and install a safe one with "
            f"{LITELLM_FIX}"
        )
    return version


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of the environment variables named ``*_KEY``, ``*_TOKEN``, ``*_SECRET`` or
    ``*_PASSWORD`` (at least MIN_SECRET_LENGTH characters), longest first."""
    env = os.environ if environ is None else environ
    values = {
        value.strip()
        for name, value in env.items()
        if name.upper().endswith(SECRET_SUFFIXES) and len(value.strip()) >= MIN_SECRET_LENGTH
    }
    return sorted(values, key=lambda v: (-len(v), v))


def scrub_secrets(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every secret environment value (and every string in ``extra``) replaced by
    ``[redacted]``. Longest values go first, so a secret that contains another is removed whole.
    """
    text = str(text)
    secrets = set(secret_values())
    secrets.update(s for s in extra if s and len(s) >= MIN_SECRET_LENGTH)
    for secret in sorted(secrets, key=lambda v: (-len(v), v)):
        text = text.replace(secret, REDACTED)
    return text
