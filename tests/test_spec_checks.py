"""Every run option is checked before any work, with one line naming the option."""

from __future__ import annotations

import dataclasses

import pytest

from fspo_bench.backend import GenerationParams
from fspo_bench.cli import main
from fspo_bench.records import RunSpec
from fspo_bench.spec_checks import OptionError, check_spec

GOOD = RunSpec(method="fewshot", domains=["elix", "reviews"], model="m", shots=0, limit=1,
               seed=2**32 - 1, prefacc=0,
               generation={"max_new_tokens": 1, "temperature": 0.0, "top_p": 1.0,
                           "repetition_penalty": 1.2})


def with_(**changes) -> RunSpec:
    generation = changes.pop("generation", {})
    return dataclasses.replace(GOOD, generation={**GOOD.generation, **generation}, **changes)


BAD = [
    (with_(shots=-1), "--shots must be an integer >= 0, not -1"),
    (with_(shots=2.5), "--shots must be an integer >= 0, not 2.5"),
    (with_(limit=0), "--limit must be an integer >= 1, not 0"),
    (with_(seed=-1), "--seed must be an integer from 0 to 4294967295, not -1"),
    (with_(seed=2**32), "--seed must be an integer from 0 to 4294967295, not 4294967296"),
    (with_(seed=True), "--seed must be an integer"),
    (with_(prefacc=-5), "--prefacc must be an integer >= 0, not -5"),
    (with_(domains=["elix", "roleplay", "elix"]), "--domain elix is given more than once"),
    (with_(generation={"max_new_tokens": 0}), "--max-new-tokens must be an integer >= 1, not 0"),
    (with_(generation={"temperature": float("nan")}),
     "--temperature must be a finite number >= 0, not nan"),
    (with_(generation={"temperature": float("inf")}), "--temperature must be a finite number"),
    (with_(generation={"temperature": -0.5}), "--temperature must be a finite number >= 0"),
    (with_(generation={"top_p": 0.0}), "top_p must be a finite number in (0, 1], not 0.0"),
    (with_(generation={"top_p": 1.5}), "top_p must be a finite number in (0, 1], not 1.5"),
    (with_(generation={"top_p": float("nan")}), "top_p must be a finite number"),
    (with_(generation={"repetition_penalty": 0}),
     "--repetition-penalty must be a finite number > 0, not 0"),
    (with_(generation={"temprature": 0.5}), "unknown generation option 'temprature'"),
]


def test_options_at_the_edges_of_their_ranges_pass():
    check_spec(GOOD)
    check_spec(with_(shots=None, limit=None, seed=0, prefacc=32, generation={"temperature": 2}))


@pytest.mark.parametrize(("spec", "message"), BAD, ids=[m for _, m in BAD])
def test_an_option_out_of_range_is_one_line_naming_it(spec, message):
    with pytest.raises(OptionError) as info:
        check_spec(spec)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["--temperature", "nan"], "--temperature must be a finite number >= 0, not nan"),
    (["--seed", "-1"], "--seed must be an integer from 0 to 4294967295, not -1"),
    (["--domain", "elix"], "--domain elix is given more than once"),  # elix a second time
    (["--limit", "0"], "--limit must be an integer >= 1, not 0"),
])
def test_the_run_command_refuses_before_any_work(tmp_path, capsys, tiny_model, argv, message):
    cache, out = tmp_path / "cache.sqlite", tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["run", "--method", "fewshot", "--domain", "elix", "--model", str(tiny_model),
              "--judge", "oracle", "--cache", str(cache), "--out", str(out), "--dry-run", *argv])
    captured = capsys.readouterr()
    assert info.value.code == 2 and captured.out == ""
    assert captured.err.splitlines() == [f"fspo-bench: error: {message}"]
    assert not cache.exists() and not out.exists()


def test_the_hf_backend_refuses_more_new_tokens_than_the_model_context(tiny_model):
    pytest.importorskip("transformers")
    from fspo_bench.backends.hf import HFBackend
    from fspo_bench.errors import FspoBenchError

    backend = HFBackend(str(tiny_model))  # max_position_embeddings 1024 (tests/tiny_model.py)
    backend.check()
    backend.check(GenerationParams(max_new_tokens=1024))
    with pytest.raises(FspoBenchError, match=r"^max_new_tokens 1025 exceeds the context of "
                                             r"model .* \(1024 tokens\)$"):
        backend.check(GenerationParams(max_new_tokens=1025))


def test_specificity_needs_preference_accuracy():
    from fspo_bench.records import RunSpec
    from fspo_bench.spec_checks import OptionError, check_spec

    spec = RunSpec(method="fewshot", domains=["elix"], model="embedded", specificity=True)
    with pytest.raises(OptionError, match="--specificity"):
        check_spec(spec)
    check_spec(RunSpec(method="fewshot", domains=["elix"], model="embedded", specificity=True,
                       prefacc=4))
