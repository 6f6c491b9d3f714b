"""A method's preference accuracy: each method scored on its own prompt, calibrated against the
reference method, with specificity; inside runs too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fspo_bench import plugins
from fspo_bench.backend import GenerationParams
from fspo_bench.backends.hf import HFBackend
from fspo_bench.cache import ResponseCache
from fspo_bench.method_prefacc import (
    Scorer,
    calibrated,
    choices,
    method_preference_accuracy,
    opponent,
    query_of,
)
from fspo_bench.prefacc import choice_order, load_domain, ordered_preferences, request_pairs
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


def scorer(backend: HFBackend, cache=None) -> Scorer:
    return Scorer(backend, backend.generate, PARAMS, cache=cache)


def method(name: str):
    return plugins.get("method", name)()


@pytest.mark.parametrize("name", ["base", "fewshot", "oracle"])
def test_each_method_is_scored_on_the_prompt_it_generates_from(name, elix, backend):
    pref = ordered_preferences(elix, 0)[0]
    query = query_of(elix, pref, 2, 0)
    [request] = scorer(backend).contexts(method(name), [query])
    context = backend.render_prompt(request)
    assert pref.question in context
    assert (elix.users[pref.user_id].description in context) == (name == "oracle")
    assert all((s.chosen in context) == (name == "fewshot") for s in query.shots)
    if name == "base":  # the chat template, as base generates
        assert context.startswith("<|im_start|>user")


def test_only_methods_that_declare_it_see_the_user_profile(elix, backend):
    seen = []

    class Spy(type(method("fewshot"))):
        name = "spy"

        def build_request(self, query, params):
            seen.append(query.user)
            return super().build_request(query, params)

    pref = ordered_preferences(elix, 0)[0]
    scorer(backend).contexts(Spy(), [query_of(elix, pref, 2, 0)])
    assert seen[0].id == pref.user_id
    assert seen[0].description == "" and seen[0].attributes == {}


def test_calibrated_rule_by_hand():
    # chosen at index 1: rewards (-10 - -12) = 2 vs (-20 - -21) = 1, so the chosen wins
    assert calibrated([-20.0, -10.0], [-21.0, -12.0], gold=1) == 1.0
    assert calibrated([-20.0, -10.0], [-21.0, -12.0], gold=0) == 0.0
    assert calibrated([-5.0, -7.0], [-5.0, -7.0], gold=0) == 0.5  # the reference itself


def test_base_scores_exactly_fifty_and_fewshot_is_its_implicit_reward(elix, backend):
    base = method("base")
    result = method_preference_accuracy(base, base, elix, scorer=scorer(backend), shots=2,
                                        seed=0, limit=6)
    assert result["acc"] == 50.0 and result["n_docs"] == 6
    assert {s["acc"] for s in result["samples"]} == {0.5}
    assert result["acc_summed"] is not None  # the length test is still reported, as secondary

    fewshot = method("fewshot")
    result = method_preference_accuracy(fewshot, base, elix, scorer=scorer(backend), shots=2,
                                        seed=0, limit=6)
    right = []
    for pref in ordered_preferences(elix, 0)[:6]:
        query = query_of(elix, pref, 2, 0)
        scores = []
        for m in (fewshot, base):
            [request] = scorer(backend).contexts(m, [query])
            doc = {"context": backend.render_prompt(request), "choices": choices(pref, "elix")}
            scores.append(backend.loglikelihood(request_pairs(doc)))
        gold = choice_order("elix", pref)
        reward = [scores[0][i] - scores[1][i] for i in range(2)]
        right.append(reward[gold] > reward[1 - gold])
    assert result["acc"] == pytest.approx(100 * sum(right) / 6)
    assert result["acc_ci_low"] <= result["acc"] <= result["acc_ci_high"]


def test_pairs_are_stratified_over_users(elix):
    prefs = ordered_preferences(elix, 0)
    users = {p.user_id for p in elix.eval_preferences()}
    assert {p.user_id for p in prefs[:len(users)]} == users
    assert sorted(map(id, prefs)) == sorted(map(id, elix.eval_preferences()))
    assert ordered_preferences(elix, 0) == prefs and ordered_preferences(elix, 1) != prefs


def test_specificity_scores_the_pair_with_an_opposed_users_shots(elix, backend):
    pref = ordered_preferences(elix, 0)[0]
    other = opponent(elix, pref)
    assert other.user_id != pref.user_id
    assert (other.chosen, other.rejected) == (pref.rejected, pref.chosen)
    base, fewshot = method("base"), method("fewshot")
    same = method_preference_accuracy(base, base, elix, scorer=scorer(backend), shots=2, seed=0,
                                      limit=4, specificity=True)
    assert same["specificity"] == 0.0  # the user-blind reference is personal to no one
    result = method_preference_accuracy(fewshot, base, elix, scorer=scorer(backend), shots=2,
                                        seed=0, limit=4, specificity=True)
    for s in result["samples"]:
        assert s["specificity"] == s["acc"] - s["acc_mismatched"]
    assert result["specificity_n"] == 4


def test_a_rat_method_is_scored_after_its_own_description(elix, backend):
    rat = plugins.get("method", "fspo-rat")
    pref = ordered_preferences(elix, 0)[0]
    made = []

    def complete(requests):
        made.extend(requests)
        return ["likes short answers\n## Preferred Response \nok" for _ in requests]

    method_ = rat(checkpoint=None)
    method_.needs_checkpoint = False
    [request] = Scorer(backend, complete, PARAMS).contexts(method_, [query_of(elix, pref, 2, 0)])
    assert len(made) == 1  # the description call
    assert request.prompt.endswith("## User Description\nlikes short answers\n"
                                   "## Preferred Response \n")


def test_a_run_reports_preference_accuracy_and_re_runs_from_the_cache(tiny_model, tmp_path):
    spec = RunSpec(method="fewshot", domains=["elix"], model=str(tiny_model), judge="proxy",
                   limit=2, shots=1, seed=0, generation=GENERATION, prefacc=5,
                   backend_options={"threads": 1})
    for attempt in range(2):
        logs: list[str] = []
        with ResponseCache(tmp_path / "cache.sqlite") as cache:
            result = Runner(spec, tmp_path / "run", cache, progress=lambda *a: None,
                            log=logs.append).run()
        line = next(x for x in logs if x.startswith("preference accuracy"))
        assert line == ("preference accuracy: log-likelihoods: cached 0 / new 20"
                        if attempt == 0 else
                        "preference accuracy: log-likelihoods: cached 20 / new 0")
    extra = result.results[0].extra
    report = json.loads((tmp_path / "run" / "preference_accuracy.json").read_text())
    assert extra["prefacc_n"] == 5 == report["elix"]["n_docs"]
    assert extra["prefacc"] == report["elix"]["acc"]
    assert extra["prefacc_summed"] == report["elix"]["acc_summed"]
    assert 0 <= extra["prefacc"] <= 100 and isinstance(extra["prefacc_n"], int)
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


def test_reviews_reports_trained_and_interpolated_users_apart():
    from fspo_bench.method_prefacc import summarize

    samples = [{"user_id": u, "group": g, "acc": a, "acc_summed": 0.0, "acc_norm": 0.0}
               for u, g, a in (("t1", "trained", 1.0), ("t2", "trained", 0.5),
                               ("i1", "interpolated", 0.0), ("i2", "interpolated", 0.0))]
    report = summarize(samples)
    assert report["acc"] == 37.5
    assert report["by_group"]["trained"]["acc"] == 75.0
    assert report["by_group"]["interpolated"]["acc"] == 0.0
    assert report["by_group"]["trained"]["n_docs"] == 2


def test_results_json_is_a_table_in_the_documented_one_liner(tiny_model, tmp_path):
    import pandas as pd

    spec = RunSpec(method="fewshot", domains=["elix"], model=str(tiny_model), judge="proxy",
                   limit=1, shots=1, seed=0, generation=GENERATION, prefacc=2,
                   backend_options={"threads": 1})
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        Runner(spec, tmp_path / "run", cache, progress=lambda *a: None,
               log=lambda _: None).run()
    documented = (Path(__file__).parents[1] / "docs" / "runs.md").read_text()
    assert 'pd.json_normalize(json.load(open("RUN_DIR/results.json"))["results"])' in documented
    table = pd.json_normalize(json.load(open(tmp_path / "run" / "results.json"))["results"])
    assert table.loc[0, "domain"] == "elix" and table.loc[0, "extra.prefacc_n"] == 2
