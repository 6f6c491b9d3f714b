from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

from fspo_bench import plugins

# Third-party plugins installed on the developer's machine must not leak into tests.
os.environ.setdefault("FSPO_BENCH_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A folder on sys.path where tests create plugin distributions; plugins reload around it."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("FSPO_BENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("FSPO_BENCH_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("FSPO_BENCH_STRICT_PLUGINS", raising=False)
    importlib.invalidate_caches()
    plugins.reset()
    yield site
    plugins.reset()
    for name in [m for m in sys.modules if m.startswith("tp_")]:
        del sys.modules[name]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random causal LM folder (tests/tiny_model.py), built once per test session."""
    from .tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
