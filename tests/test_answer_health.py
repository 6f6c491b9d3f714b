"""Answer health: failed answers are never judged, lose both orders and are counted; RAT
methods are forced to answer, each of their calls cached."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from fspo_bench import plugins
from fspo_bench.answer_health import answer_status
from fspo_bench.backend import Backend, GenerationParams, GenerationRequest
from fspo_bench.cache import ResponseCache
from fspo_bench.prompts import ParsedGeneration
from fspo_bench.records import Preference, Query, RunSpec, User
from fspo_bench.runner import Runner, StageCount, generate

from .plugin_factory import make_plugin

SILENT = """
from fspo_bench import GenerationRequest, Method, ParsedGeneration, hookimpl

class Silent(Method):
    name = "silent"
    description = "always answers the empty string"

    def build_request(self, query, params):
        return GenerationRequest(params=params, prompt=query.question)

    def parse(self, raw):
        return ParsedGeneration("")

@hookimpl
def register_methods(register):
    register(Silent)
"""


def test_status_rules():
    assert answer_status(ParsedGeneration("an answer"), truncated=False) == "ok"
    assert answer_status(ParsedGeneration("an answer"), truncated=True) == "truncated"
    assert answer_status(ParsedGeneration("  \n"), truncated=False) == "empty"
    assert answer_status(ParsedGeneration("", "likes cats"), truncated=True) == "format_error"


@pytest.mark.slow
@pytest.mark.parametrize("judge", ["proxy", "oracle", "pairwise"])
def test_a_method_that_answers_nothing_loses_everything_and_shows_as_failed(
        judge, plugin_site, tiny_model, tmp_path):
    make_plugin(plugin_site, "tp-silent", "tp_silent", SILENT)
    plugins.reset()
    spec = RunSpec(method="silent", domains=["elix", "reviews", "roleplay"],
                   model=str(tiny_model), judge=str(tiny_model) if judge == "pairwise" else judge,
                   limit=2, shots=1, generation={"max_new_tokens": 4},
                   backend_options={"threads": 1})
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        result = Runner(spec, tmp_path / "run", cache, progress=lambda *a: None,
                        log=lambda _: None).run()
    for r in result.results:
        assert r.winrate == 0.0 and r.n_losses == 4 and r.n_invalid == 0
        assert r.extra["n_failed"] == 2 and r.extra["failed_share"] == 100.0
    lines = (tmp_path / "run" / "judgments.jsonl").read_text().splitlines()
    assert len(lines) == 12 and all('"not_judged": true' in line for line in lines)


class Scripted(Backend):
    """Answers from a script: a RAT description without an answer, then the forced answer."""

    name = "scripted"

    def __init__(self, texts: dict[str, str]):
        super().__init__("scripted")
        self.texts, self.calls = texts, []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        self.calls += [r.prompt for r in requests]
        return [self.texts["forced" if r.prompt.endswith("Response \n") else "first"]
                for r in requests]

    def token_count(self, text: str) -> int:
        return len(text.split())


def rat_query() -> Query:
    shot = Preference("u1", "Why is the sky blue?", "Light scatters.", "Because.")
    return Query(User("u1", "a physicist", {"level": "expert"}), [shot], "What is rain?", "q1")


def test_a_rat_description_without_an_answer_gets_a_forced_answer_call(tmp_path):
    rat = plugins.get("method", "fspo-rat")(checkpoint=None)
    rat.needs_checkpoint = False
    backend = Scripted({"first": "likes physics\n## Dispreferred Response \nx",
                        "forced": "Water falls from clouds."})
    params = GenerationParams(max_new_tokens=50)
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        for attempt in range(2):
            count = StageCount("generate")
            [g] = generate(rat, "method", "elix", [rat_query()], backend, params, cache, count,
                           lambda *a: None)
            assert (count.cached, count.new) == ((0, 2) if attempt == 0 else (2, 0))
    assert len(backend.calls) == 2
    assert backend.calls[1].endswith("## User Description\nlikes physics\n"
                                     "## Preferred Response \n")
    assert g.text == "Water falls from clouds." and g.status == "ok"
    assert g.meta["description"] == "likes physics"


def test_a_rat_answer_is_not_forced_when_the_model_answered(tmp_path):
    rat = plugins.get("method", "fspo-rat")(checkpoint=None)
    rat.needs_checkpoint = False
    backend = Scripted({"first": "likes physics\n## Preferred Response \nRain is water.",
                        "forced": "never"})
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        [g] = generate(rat, "method", "elix", [rat_query()], backend,
                       GenerationParams(max_new_tokens=3), cache, StageCount("generate"),
                       lambda *a: None)
    assert len(backend.calls) == 1 and g.text == "Rain is water."
    assert g.status == "truncated"  # 6 words >= max_new_tokens 3: cut by the limit


def test_a_killed_run_between_two_calls_resumes_without_repeating_the_first(tmp_path):
    rat = plugins.get("method", "fspo-rat")(checkpoint=None)
    rat.needs_checkpoint = False

    class DiesOnForced(Scripted):
        def generate(self, requests):
            if any(r.prompt.endswith("Response \n") for r in requests):
                raise KeyboardInterrupt
            return super().generate(requests)

    texts = {"first": "likes physics", "forced": "Rain."}
    params = GenerationParams(max_new_tokens=50)
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        with pytest.raises(KeyboardInterrupt):
            generate(rat, "method", "elix", [rat_query()], DiesOnForced(texts), params, cache,
                     StageCount("generate"), lambda *a: None)
        backend = Scripted(texts)
        count = StageCount("generate")
        [g] = generate(rat, "method", "elix", [rat_query()], backend, params, cache, count,
                       lambda *a: None)
    assert (count.cached, count.new) == (1, 1) and len(backend.calls) == 1
    assert g.text == "Rain."


def test_methods_see_no_user_profile_unless_they_declare_it(tmp_path):
    seen = []

    class Spy(type(plugins.get("method", "fewshot")())):
        name = "spy"

        def build_request(self, query, params):
            seen.append(query)
            return super().build_request(query, params)

    query = rat_query()
    query = Query(query.user, [Preference("u1", "Q?", "A.", "B.", "q0", {"chosen_attr": "x"})],
                  query.question, query.question_id)
    for method, sees in ((Spy(), False), (plugins.get("method", "oracle")(), True)):
        backend = Scripted({"first": "ok", "forced": "ok"})
        with ResponseCache(tmp_path / f"{method.name}.sqlite") as cache:
            [g] = generate(method, "method", "elix", [query], backend,
                           GenerationParams(), cache, StageCount("generate"), lambda *a: None)
        assert g.query == query  # the judges still see the whole user
        assert ("a physicist" in backend.calls[0]) == sees
    [asked] = seen
    assert asked.user.id == "u1" and asked.user.description == "" and not asked.user.attributes
    assert asked.shots[0].meta == {} and asked.shots[0].chosen == "A."


def test_old_generation_records_get_their_status_from_the_text():
    from fspo_bench.records import Generation

    old = {"method": "m", "query": rat_query().to_dict(), "text": "t", "raw": "t", "meta": {}}
    assert Generation.from_dict(old).status == "ok"
    assert Generation.from_dict({**old, "text": " "}).status == "empty"
    rat = {**old, "text": "", "meta": {"description": "likes cats"}}
    assert Generation.from_dict(rat).status == "format_error"


def test_a_dry_run_counts_a_forced_rat_answer_and_no_judge_call_for_failed_answers(
        plugin_site, tiny_model, tmp_path):
    from fspo_bench.runner import plan

    make_plugin(plugin_site, "tp-silent", "tp_silent", SILENT)
    plugins.reset()
    spec = RunSpec(method="silent", domains=["elix"], model=str(tiny_model), judge="proxy",
                   limit=2, shots=1, generation={"max_new_tokens": 4},
                   backend_options={"threads": 1})
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        Runner(spec, tmp_path / "run", cache, progress=lambda *a: None,
               log=lambda _: None).run()
        again = plan(spec, cache)
    assert again.generations.new == 0 and again.judgments.new == 0
    assert again.judgments.cached > 0  # the canaries only: no comparison of failed answers

    rat = plugins.get("method", "fspo-rat")(checkpoint=None)
    rat.needs_checkpoint = False
    asked = []

    def lookup(requests):
        asked.extend(requests)
        return ["" for _ in requests]  # nothing cached: an empty description and no answer

    from fspo_bench.calls import drive

    drive([rat.calls(rat_query(), GenerationParams())], lookup)
    assert len(asked) == 2  # the first call and the forced answer, both counted
