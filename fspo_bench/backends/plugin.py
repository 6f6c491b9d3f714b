"""The built-in backends plugin. Importing it imports neither torch nor transformers."""

from __future__ import annotations

from fspo_bench import hookimpl
from fspo_bench.backends.hf import HFBackend
from fspo_bench.backends.litellm_backend import LiteLLMBackend
from fspo_bench.backends.vllm_backend import VLLMBackend


@hookimpl
def register_backends(register):
    for backend in (HFBackend, LiteLLMBackend, VLLMBackend):
        register(backend)
