"""The vllm backend where vLLM is missing (every CPU machine): a clean error, and the pure
mapping from GenerationParams to SamplingParams arguments. Generation itself needs a GPU."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fspo_bench import FspoBenchError, GenerationParams
from fspo_bench.backends.vllm_backend import (
    VLLM_MISSING,
    VLLMBackend,
    import_vllm,
    sampling_params_kwargs,
)

MESSAGE = "the vllm backend needs a GPU machine with vLLM: pip install 'fspo-bench[vllm]'"


def test_importing_the_module_does_not_import_vllm():
    code = ("import sys, fspo_bench.backends.vllm_backend\n"
            "print(any(m.split('.')[0] in ('vllm', 'torch') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "False"


@pytest.fixture
def no_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, find_spec -> None


def test_constructing_without_vllm_is_one_clear_error(no_vllm):
    assert VLLM_MISSING == MESSAGE
    with pytest.raises(FspoBenchError) as info:
        VLLMBackend("some/model")
    assert str(info.value) == MESSAGE
    assert info.value.__cause__ is None


def test_using_without_vllm_is_the_same_error(no_vllm):
    with pytest.raises(FspoBenchError) as info:
        import_vllm()
    assert str(info.value) == MESSAGE


def test_sampling_params_for_greedy_decoding():
    assert sampling_params_kwargs(GenerationParams(max_new_tokens=32)) == {
        "n": 1, "max_tokens": 32, "temperature": 0.0, "top_p": 1.0,
        "repetition_penalty": 1.0, "seed": 0, "stop": None, "skip_special_tokens": True,
    }


def test_sampling_params_for_seeded_sampling():
    params = GenerationParams(max_new_tokens=64, temperature=0.7, top_p=0.9,
                              repetition_penalty=1.2, seed=3)
    kwargs = sampling_params_kwargs(params, ["\n\n", "###"])
    assert kwargs == {
        "n": 1, "max_tokens": 64, "temperature": 0.7, "top_p": 0.9,
        "repetition_penalty": 1.2, "seed": 3, "stop": ["\n\n", "###"],
        "skip_special_tokens": True,
    }


def test_each_sample_index_gets_its_own_reproducible_seed():
    seeds = [sampling_params_kwargs(GenerationParams(temperature=1.0, seed=3,
                                                     sample_index=i))["seed"] for i in range(8)]
    assert seeds[0] == 3 and len(set(seeds)) == 8
    assert seeds == [sampling_params_kwargs(GenerationParams(temperature=1.0, seed=3,
                                                             sample_index=i))["seed"]
                     for i in range(8)]
