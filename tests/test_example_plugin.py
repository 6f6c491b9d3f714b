"""The example third-party plugin, pip-installed for real, shows up with no change to this repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fspo-bench-example-method"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("example-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(EXAMPLE)],
        check=True, capture_output=True,
    )
    return site


def cli(site: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSPO_BENCH_")}
    env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "fspo_bench", *argv], capture_output=True, text=True, env=env
    )


def test_example_plugin_is_listed(example_site):
    methods = cli(example_site, "list", "methods")
    assert methods.returncode == 0, methods.stderr
    assert "example-chosen-only" in methods.stdout.splitlines()
    listed = json.loads(cli(example_site, "plugins", "--json").stdout)
    example = next(p for p in listed if p["name"] == "example_method")
    assert example["distribution"] == "fspo-bench-example-method"
    assert example["builtin"] is False and example["error"] is None


def test_example_method_builds_a_request_by_name(example_site):
    code = (
        "from fspo_bench import plugins, GenerationParams, Preference, Query, User\n"
        "method = plugins.get('method', 'example-chosen-only')()\n"
        "shot = Preference('u', 'Q1?', 'liked answer', 'disliked answer')\n"
        "query = Query(User('u', 'd'), [shot], 'Q2?')\n"
        "print(method.build_request(query, GenerationParams()).messages[0]['content'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSPO_BENCH_")}
    env["PYTHONPATH"] = str(example_site)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "liked answer" in out.stdout and "disliked answer" not in out.stdout
    assert out.stdout.rstrip().endswith("Question: Q2?")
