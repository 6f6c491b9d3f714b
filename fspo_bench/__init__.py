"""fspo-bench: a benchmark harness for few-shot personalization of language models.

What this module exports is the public API for plugin authors (``docs/plugins.md``). Importing
it never imports torch, transformers, vLLM, litellm or lm-eval.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("fspo-bench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

hookimpl = pluggy.HookimplMarker("fspo_bench")

from fspo_bench.backend import Backend, GenerationParams, GenerationRequest  # noqa: E402
from fspo_bench.domain import Domain  # noqa: E402
from fspo_bench.errors import FspoBenchError, UnknownNameError  # noqa: E402
from fspo_bench.judge import Comparison, Judge  # noqa: E402
from fspo_bench.method import Method, OfficialPromptMethod  # noqa: E402
from fspo_bench.metric import Metric  # noqa: E402
from fspo_bench.prompts import (  # noqa: E402
    ParsedGeneration,
    chat_messages,
    completion,
    few_shot_prompt,
    oracle_prompt,
    parse_generation,
)
from fspo_bench.records import (  # noqa: E402
    Generation,
    Judgment,
    Preference,
    Query,
    RunResult,
    RunSpec,
    User,
)

__all__ = [
    "__version__", "hookimpl",
    "Backend", "GenerationParams", "GenerationRequest",
    "Domain", "Method", "OfficialPromptMethod", "Judge", "Comparison", "Metric",
    "FspoBenchError", "UnknownNameError",
    "ParsedGeneration", "chat_messages", "completion", "few_shot_prompt", "oracle_prompt",
    "parse_generation",
    "User", "Preference", "Query", "Generation", "Judgment", "RunSpec", "RunResult",
]
