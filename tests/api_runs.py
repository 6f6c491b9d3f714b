"""Real ``fspo-bench run`` invocations whose model and judge are a :class:`FaultServer`.

The method and reference generate through the ``litellm`` backend (served model ``gen``) and the
pairwise judge runs through ``litellm`` too (served model ``judge``), both against one server on
loopback: every model call is an HTTP request the test can count. :func:`reply` answers
deterministically from the prompt, so two runs with the same seed write the same files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fspo_bench.judges.pairwise import parse_verdict
from fspo_bench.rundir import CONFIG, GENERATIONS, JUDGMENTS, RESULTS, read_json

from .fault_server import FaultServer, body_key

PLANTED_KEY = "sk-fspo-PLANTED-0123456789abcdef"
GEN, JUDGE = "gen", "judge"
UNDECIDED = "I cannot decide which of the two this person would prefer."
RUN_FILES = (CONFIG, GENERATIONS, JUDGMENTS, RESULTS)


def _digest(body: dict[str, Any]) -> bytes:
    return hashlib.sha256(body["messages"][-1]["content"].encode()).digest()


def reply(body: dict[str, Any]) -> str:
    """A generation names its prompt's hash; a verdict is A, B or tie by the prompt's hash."""
    digest = _digest(body)
    if body["model"] != JUDGE:
        return f"Answer {digest.hex()[:16]}: short, plain and friendly."
    verdict = ("A", "B", "tie")[digest[1] % 3]
    return f"Response ({verdict.lower()}) suits this person.\nVerdict: {verdict}"


def reply_sometimes_undecided(body: dict[str, Any]) -> str:
    """:func:`reply`, except that one judge prompt in four never gets a parseable verdict."""
    if body["model"] == JUDGE and _digest(body)[0] % 4 == 0:
        return UNDECIDED
    return reply(body)


def run_args(server: FaultServer, out: Path, cache: Path, *, limit: int = 6,
             concurrency: int = 1, timeout: float = 30.0, extra: tuple[str, ...] = ()
             ) -> list[str]:
    """``fspo-bench`` arguments of a fewshot run on ELIX against ``server``; model and judge
    send ``concurrency`` requests at a time (and commit to the cache every ``4 * concurrency``
    items), each request timing out after ``timeout`` seconds."""
    connection = (f"api_base={server.api_base}", f"timeout={timeout}", "backoff=0.01",
                  f"concurrency={concurrency}")
    return [  # seed 2: six queries with six different questions, so every item has its own key
        "run", "--method", "fewshot", "--domain", "elix", "--limit", str(limit), "--shots", "1",
        "--seed", "2",
        "--max-new-tokens", "16", "--backend", "litellm", "--model", f"openai/{GEN}",
        *[a for option in connection for a in ("--backend-option", option)],
        "--judge", f"openai/{JUDGE}",
        *[a for option in connection for a in ("--judge-option", option)],
        "--out", str(out), "--cache", str(cache), *extra,
    ]


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "fspo_bench", *args]


def needs_litellm() -> None:
    """Skip unless litellm is installed; without importing it here (the CLI children do)."""
    if importlib.util.find_spec("litellm") is None:
        pytest.skip("litellm is not installed (extra [api])")


def child_env() -> dict[str, str]:
    """The environment of a CLI child: the planted key, built-in plugins only."""
    return {**os.environ, "OPENAI_API_KEY": PLANTED_KEY,
            "FSPO_BENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}


def run_files(run_dir: Path) -> dict[str, Any]:
    """A run directory's four files, with what legitimately differs between two runs of the
    same configuration (the creation time) left out."""
    files: dict[str, Any] = {name: (run_dir / name).read_bytes()
                             for name in (GENERATIONS, JUDGMENTS)}
    for name in (CONFIG, RESULTS):
        value = read_json(run_dir / name)
        value.pop("created", None)
        files[name] = value
    return files


def answered_texts(server: FaultServer) -> dict[str, list[str]]:
    """Judge prompt -> the completions the server answered with status 200, in order."""
    texts: dict[str, list[str]] = {}
    for e in server.work(JUDGE):
        if e.text is not None:
            texts.setdefault(e.body["messages"][-1]["content"], []).append(e.text)
    return texts


def requests_per_body(server: FaultServer, model: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in server.work(model):
        key = body_key(e.body)
        counts[key] = counts.get(key, 0) + 1
    return counts


def verdicts_match_server(judgments: list[dict[str, Any]], server: FaultServer) -> None:
    """Assert that every judgment's completions are texts the server sent, and that its winner is
    exactly what the last of them says (None when it says nothing parseable)."""
    sent = {text for texts in answered_texts(server).values() for text in texts}
    for judgment in judgments:
        completions = judgment["meta"]["completions"]
        assert completions and set(completions) <= sent, judgment
        assert judgment["winner"] == parse_verdict(completions[-1]), judgment
        assert judgment["valid"] == (judgment["winner"] is not None), judgment


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@contextmanager
def replying_server() -> Iterator[FaultServer]:
    """A fault server that answers every request with :func:`reply` (needs litellm)."""
    needs_litellm()
    server = FaultServer(reply=reply)
    try:
        yield server
    finally:
        server.close()
