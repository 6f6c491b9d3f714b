"""A method's preference accuracy: each method scored on its own prompt, inside runs too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fspo_bench import plugins
from fspo_bench.backend import GenerationParams
from fspo_bench.backends.hf import HFBackend
from fspo_bench.cache import ResponseCache
from fspo_bench.method_prefacc import method_doc, method_preference_accuracy
from fspo_bench.prefacc import load_domain, ordered_preferences
from fspo_bench.records import RunSpec
from fspo_bench.runner import Runner

PARAMS = GenerationParams(max_new_tokens=8)
GENERATION = {"max_new_tokens": 8, "temperature": 0.0, "repetition_penalty": 1.0}


@pytest.fixture(scope="module")
def elix():
    return load_domain("elix", "builtin", 2)


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> HFBackend:
    return HFBackend(str(tiny_model), threads=1)


@pytest.mark.parametrize("name", ["base", "fewshot", "oracle"])
def test_each_method_is_scored_on_the_prompt_it_generates_from(name, elix, backend):
    method = plugins.get("method", name)()
    pref = ordered_preferences(elix, 0)[0]
    doc = method_doc(method, backend, elix, pref, 2, 0, PARAMS)
    shot_text = [s.chosen for s in doc_shots(elix, pref)]
    context = doc["context"]
    assert pref.question in context
    assert (elix.users[pref.user_id].description in context) == (name == "oracle")
    assert all((text in context) == (name == "fewshot") for text in shot_text)
    assert doc["choices"][doc["gold"]] == pref.chosen
    assert doc["choices"][1 - doc["gold"]] == pref.rejected
    if name == "base":  # the chat template, as base generates
        assert context.startswith("<|im_start|>user")


def doc_shots(data, pref):
    from fspo_bench.prefacc import shots_for

    return shots_for(data, pref, 2, 0)


def test_accuracy_is_the_share_of_pairs_whose_chosen_response_scores_higher(elix, backend):
    method = plugins.get("method", "fewshot")()
    result = method_preference_accuracy(method, backend, elix, shots=2, seed=0, limit=6,
                                        params=PARAMS)
    wins = []
    for pref in ordered_preferences(elix, 0)[:6]:
        context = method_doc(method, backend, elix, pref, 2, 0, PARAMS)["context"]
        stripped = context.rstrip()
        tail = context[len(stripped):]
        chosen, rejected = backend.loglikelihood(
            [(stripped, tail + pref.chosen), (stripped, tail + pref.rejected)])
        assert chosen != rejected
        wins.append(chosen > rejected)
    assert result["n_docs"] == 6 and len(result["samples"]) == 6
    assert result["acc"] == pytest.approx(sum(wins) / 6)
    assert result["acc_ci_low"] <= result["acc"] <= result["acc_ci_high"]


def test_a_run_reports_preference_accuracy_and_re_runs_from_the_cache(tiny_model, tmp_path):
    spec = RunSpec(method="fewshot", domains=["elix"], model=str(tiny_model), judge="proxy",
                   limit=2, shots=1, seed=0, generation=GENERATION, prefacc=5,
                   backend_options={"threads": 1})
    for attempt in range(2):
        logs: list[str] = []
        with ResponseCache(tmp_path / "cache.sqlite") as cache:
            result = Runner(spec, tmp_path / "run", cache, progress=lambda *a: None,
                            log=logs.append).run()
        assert logs[-1] == ("preference accuracy: log-likelihoods: cached 0 / new 10"
                            if attempt == 0 else
                            "preference accuracy: log-likelihoods: cached 10 / new 0")
    extra = result.results[0].extra
    report = json.loads((tmp_path / "run" / "preference_accuracy.json").read_text())
    assert extra["prefacc_n"] == 5 == report["elix"]["n_docs"]
    assert extra["prefacc"] == report["elix"]["acc"]
    assert extra["prefacc_norm"] == report["elix"]["acc_norm"]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["results"][0]["extra"]["prefacc"] == extra["prefacc"]


def test_no_preference_accuracy_unless_asked(tiny_model, tmp_path):
    spec = RunSpec(method="fewshot", domains=["elix"], model=str(tiny_model), judge="proxy",
                   limit=1, shots=1, seed=0, generation=GENERATION,
                   backend_options={"threads": 1})
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        result = Runner(spec, tmp_path / "run", cache, progress=lambda *a: None,
                        log=lambda _: None).run()
    assert "prefacc" not in result.results[0].extra
    assert not (tmp_path / "run" / "preference_accuracy.json").exists()
