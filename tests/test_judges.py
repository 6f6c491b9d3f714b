"""The built-in judges: pairwise (with a scripted backend), oracle and proxy."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from importlib import resources

import pytest

from fspo_bench import Backend, Comparison, GenerationRequest, User, plugins
from fspo_bench.audit import audit
from fspo_bench.canaries import build_canaries, canary_report
from fspo_bench.errors import FspoBenchError
from fspo_bench.judges import degenerate, proxy
from fspo_bench.judges.oracle import OracleJudge
from fspo_bench.judges.pairwise import (
    ATTEMPT_SEPARATOR,
    PairwiseJudge,
    default_backend,
    parse_verdict,
)
from fspo_bench.judges.proxy import ProxyJudge

from .plugin_factory import make_plugin

USER = User("u1", "The user is a child.", {"level": "child"})


def comparison(question: str = "Why is the sky blue?", a: str = "Light scatters in the air.",
               b: str = "Rayleigh scattering of sunlight by air molecules.", **meta) -> Comparison:
    return Comparison(USER, question, a, b, meta)


# --------------------------------------------------------------------------- verdict parsing

@pytest.mark.parametrize(("text", "verdict"), [
    ("Verdict: A", "a"),
    ("verdict: b", "b"),
    ("Verdict: tie", "tie"),
    ("VERDICT: TIE.", "tie"),
    ("Reasoning first.\nVerdict: B", "b"),
    ("**Verdict:** B", "b"),
    ("**Verdict: A**", "a"),
    ("Verdict: (a)", "a"),
    ("Verdict: [[B]]", "b"),
    ("Final verdict: A.", "a"),
    ("Verdict: Response (b), because it is simpler.", "b"),
    ("Verdict: B because it is simpler", "b"),
    ("Verdict:A", "a"),
    ("Verdict: A\nOn reflection...\nVerdict: B", "b"),  # the last verdict wins
    ("Verdict: B\nVerdict: tie", "tie"),
    ("Verdict: a tie", None),  # never read "a" out of "a tie"
    ("Verdict: A clear win for B", None),
    ("Verdict: Both", None),
    ("Verdict: X", None),  # the template's placeholder echoed back
    ("Verdict: (c)", None),
    ("I prefer A.", None),
    ("Response (a) is better.", None),
    ("", None),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


# --------------------------------------------------------------------------- pairwise judge

class ScriptedBackend(Backend):
    """A real Backend whose completions are scripted per question, in call order."""

    name = "scripted"
    description = "test backend: scripted completions"

    def __init__(self, model: str = "scripted-model", script: dict[str, list[str]] | None = None,
                 **options):
        super().__init__(model, **options)
        self.script = {q: list(v) for q, v in (script or {}).items()}
        self.calls: list[list[GenerationRequest]] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        self.calls.append(list(requests))
        out = []
        for request in requests:
            content = request.messages[0]["content"]
            question = next(q for q in self.script if q in content)
            out.append(self.script[question].pop(0))
        return out


def test_pairwise_guard_decides_degenerate_answers_without_the_model():
    real = "Light of short wavelengths scatters most in the air, so the sky looks blue."
    user = User("u", "A curious reader.")
    fakes = ["", "Why is the sky blue?", "Light of short"]
    comparisons = [Comparison(user, "Why is the sky blue?", a, b, {"domain": "elix"})
                   for fake in fakes for a, b in ((real, fake), (fake, real))]
    backend = ScriptedBackend(script={"sky": ["Verdict: tie"] * 12})
    out = PairwiseJudge(backend_instance=backend).judge(comparisons)
    assert [j.winner for j in out] == ["a", "b"] * 3 and backend.calls == []
    assert all(j.valid and j.meta["attempts"] == 0 and "degenerate" in j.raw for j in out)
    unguarded = PairwiseJudge(backend_instance=backend, guard="false")
    assert [j.winner for j in unguarded.judge(comparisons)] == ["tie"] * 6  # the model's say
    assert "degenerate_guard" in PairwiseJudge(backend_instance=backend).identity()
    assert "degenerate_guard" not in unguarded.identity()


def test_pairwise_batches_all_comparisons_in_one_backend_call():
    backend = ScriptedBackend(script={"Q1": ["Fine.\nVerdict: A"], "Q2": ["**Verdict:** B"],
                                      "Q3": ["Verdict: tie"]})
    judge = PairwiseJudge(backend_instance=backend)
    out = judge.judge([comparison("Q1"), comparison("Q2"), comparison("Q3")])
    assert [j.winner for j in out] == ["a", "b", "tie"]
    assert all(j.valid and j.meta["attempts"] == 1 for j in out)
    assert len(backend.calls) == 1 and len(backend.calls[0]) == 3
    assert out[0].raw == "Fine.\nVerdict: A" and out[0].judge == "pairwise"
    request = backend.calls[0][0]
    assert request.prompt is None and request.messages[0]["role"] == "user"
    assert request.params.temperature == 0.0 and request.params.sample_index == 0


def test_pairwise_prompt_shows_user_question_and_both_labelled_responses():
    judge = PairwiseJudge(backend_instance=ScriptedBackend())
    text = judge.render(comparison("Why {braces}?", a="first {a} answer", b="second answer"))
    assert "The user is a child." in text and "Why {braces}?" in text
    assert text.index("(a)") < text.index("first {a} answer") < text.index("(b)")
    assert text.index("(b)") < text.index("second answer")
    assert "Ignore length" in text and "Ignore position" in text
    assert "Verdict: X" in text


def test_pairwise_retries_garbage_with_new_sample_index_and_temperature():
    backend = ScriptedBackend(script={"Q1": ["I like the first one.", "Verdict: A"],
                                      "Q2": ["Verdict: B"]})
    judge = PairwiseJudge(backend_instance=backend)
    first, second = judge.judge([comparison("Q1"), comparison("Q2")])
    assert (first.winner, first.valid, first.meta["attempts"]) == ("a", True, 2)
    assert first.raw == "I like the first one." + ATTEMPT_SEPARATOR + "Verdict: A"
    assert parse_verdict(first.raw) == "a"  # re-parsing the kept text gives the same verdict
    assert (second.winner, second.meta["attempts"]) == ("b", 1)
    assert [len(call) for call in backend.calls] == [2, 1]  # only the failure is asked again
    retry = backend.calls[1][0].params
    assert retry.sample_index == 1 and retry.temperature == 0.7


def test_pairwise_sampled_judge_keeps_its_temperature_on_retries():
    backend = ScriptedBackend(script={"Q1": ["?", "Verdict: B"]})
    PairwiseJudge(backend_instance=backend, temperature=0.3).judge([comparison("Q1")])
    assert [call[0].params.temperature for call in backend.calls] == [0.3, 0.3]


def test_pairwise_bounded_retries_end_invalid_with_every_completion_kept():
    garbage = ["no idea", "Verdict: a tie", "I prefer A", "never asked"]
    backend = ScriptedBackend(script={"Q1": list(garbage)})
    judge = PairwiseJudge(backend_instance=backend, max_retries=2)
    (out,) = judge.judge([comparison("Q1")])
    assert out.winner is None and out.valid is False
    assert out.meta["attempts"] == 3 and out.meta["completions"] == garbage[:3]
    assert out.raw == ATTEMPT_SEPARATOR.join(garbage[:3])
    assert len(backend.calls) == 3 and backend.script["Q1"] == ["never asked"]
    assert [c[0].params.sample_index for c in backend.calls] == [0, 1, 2]


@pytest.mark.parametrize("text", ["A is better.", "The answer is (b).", "Verdict: both",
                                  "Verdict: none", "tie"])
def test_pairwise_never_invents_a_verdict(text):
    backend = ScriptedBackend(script={"Q1": [text]})
    (out,) = PairwiseJudge(backend_instance=backend, max_retries=0).judge([comparison("Q1")])
    assert out.winner is None and not out.valid and out.raw == text


def test_pairwise_identity_has_template_hash_and_no_secrets(tmp_path):
    shipped = resources.files("fspo_bench.judges").joinpath("templates/pairwise.txt")
    judge = PairwiseJudge("openai/gpt-4o-2024-08-06", api_base="http://user:pw@host/v1")
    identity = judge.identity()
    assert identity["judge"] == "pairwise"
    assert identity["model"] == "openai/gpt-4o-2024-08-06"
    assert identity["backend"] == {"backend": "litellm", "model": "openai/gpt-4o-2024-08-06",
                                   "api_base": "http://host/v1"}
    assert identity["max_retries"] == 2
    assert identity["template_sha256"] == hashlib.sha256(
        shipped.read_text("utf-8").encode("utf-8")).hexdigest()
    assert "SECRET" not in json.dumps(identity) and "pw@" not in json.dumps(identity)
    custom = tmp_path / "mine.txt"
    custom.write_text("{description}|{question}|{a}|{b}|Verdict: X", encoding="utf-8")
    other = PairwiseJudge("openai/gpt-4o-2024-08-06", template=str(custom)).identity()
    assert other["template_sha256"] != identity["template_sha256"]


def test_pairwise_rejects_templates_without_the_four_fields(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("{description} {question} {a} {response_b}", encoding="utf-8")
    with pytest.raises(FspoBenchError, match=r"missing \{b\}.*unknown \{response_b\}"):
        PairwiseJudge("m", template=str(bad))


def test_pairwise_needs_a_model():
    with pytest.raises(FspoBenchError, match="judge model"):
        PairwiseJudge()


def test_default_backend_choice(tmp_path):
    assert default_backend("embedded") == ("hf", "embedded")
    assert default_backend("hf:Qwen/Qwen2.5-0.5B-Instruct") == ("hf", "Qwen/Qwen2.5-0.5B-Instruct")
    assert default_backend(str(tmp_path)) == ("hf", str(tmp_path))
    assert default_backend("openai/gpt-4o-2024-08-06") == ("litellm", "openai/gpt-4o-2024-08-06")
    assert default_backend("hosted_vllm/meta-llama/Llama-3.1-8B") == (
        "litellm", "hosted_vllm/meta-llama/Llama-3.1-8B")
    judge = PairwiseJudge("hf:some/model")
    assert (judge.backend, judge.model) == ("hf", "some/model")


SCRIPTED_PLUGIN = """
from fspo_bench import Backend, hookimpl

class AlwaysB(Backend):
    name = "tp-always-b"
    description = "test backend"
    seen = []

    def generate(self, requests):
        AlwaysB.seen.append((self.model, dict(self.options), len(requests)))
        return ["Reasons.\\nVerdict: B" for _ in requests]

@hookimpl
def register_backends(register):
    register(AlwaysB)
"""


def test_pairwise_finds_its_backend_through_the_plugin_registry(plugin_site):
    make_plugin(plugin_site, "tp-backend", "tp_always_b", SCRIPTED_PLUGIN)
    judge = plugins.get("judge", "pairwise")(model="judge-model", backend="tp-always-b",
                                             api_base="http://localhost:8000/v1")
    out = judge.judge([comparison("Q1"), comparison("Q2")])
    assert [j.winner for j in out] == ["b", "b"]
    import tp_always_b

    assert tp_always_b.AlwaysB.seen == [("judge-model", {"api_base": "http://localhost:8000/v1"},
                                         2)]


def test_builtin_judges_are_registered_with_descriptions():
    for name in ("pairwise", "oracle", "proxy"):
        cls = plugins.get("judge", name)
        assert cls.name == name and len(cls.description) > 40
    assert "labelled pairs" in plugins.get("judge", "oracle").description


# --------------------------------------------------------------------------- oracle judge

@pytest.mark.parametrize("domain", ["reviews", "elix", "roleplay"])
def test_oracle_agrees_with_every_label_in_both_orders(domain):
    data = plugins.get("domain", domain)().load()
    pairs = data.eval_preferences()[:80]
    comparisons = []
    for p in pairs:
        user, chosen, rejected = data.users[p.user_id], p.meta["chosen_attr"], \
            p.meta["rejected_attr"]
        comparisons += [
            Comparison(user, p.question, p.chosen, p.rejected,
                       {"domain": domain, "a_attr": chosen, "b_attr": rejected}),
            Comparison(user, p.question, p.rejected, p.chosen,
                       {"domain": domain, "a_attr": rejected, "b_attr": chosen}),
        ]
    out = OracleJudge().judge(comparisons)
    assert [j.winner for j in out] == ["a", "b"] * len(pairs)
    assert all(j.valid and "Verdict:" in j.raw for j in out)


def test_oracle_indifferent_rule_is_a_tie():
    user = User("positive concise", "This user prefers positive and concise reviews.",
                {"sentiment": "positive", "length": "concise", "group": "interpolated"})
    (out,) = OracleJudge().judge([Comparison(user, "Review Alien.", "x", "y", {
        "domain": "reviews", "a_attr": "positive verbose", "b_attr": "negative concise"})])
    assert out.valid and out.winner == "tie"


@pytest.mark.parametrize("meta", [{}, {"domain": "elix"}, {"domain": "elix", "a_attr": "child"},
                                  {"domain": "elix", "a_attr": None, "b_attr": "expert"}])
def test_oracle_refuses_generated_text(meta):
    (out,) = OracleJudge().judge([comparison(**meta)])
    assert out.winner is None and not out.valid
    assert "only judges labelled pairs" in out.raw


def test_oracle_unknown_domain_is_invalid():
    (out,) = OracleJudge().judge([comparison(domain="nope", a_attr="x", b_attr="y")])
    assert not out.valid and "unknown domain 'nope'" in out.raw


# --------------------------------------------------------------------------- proxy signals

@pytest.mark.parametrize(("text", "sign"), [
    ("A brilliant, moving film.", 1),
    ("Tedious and bloated; a waste of time.", -1),
    ("Not bad at all.", 1),
    ("This isn't good.", -1),
    ("Never boring, but the ending is weak.", 0),  # +1 (negated boring), -1 (weak)
    ("The film is two hours long.", 0),
])
def test_sentiment_score_sign(text, sign):
    score = proxy.sentiment_score(text)
    assert (score > 0) - (score < 0) == sign


@pytest.mark.parametrize(("word", "count"), [
    ("cat", 1), ("water", 2), ("banana", 3), ("make", 1), ("table", 2), ("photosynthesis", 5),
    ("hurried", 2), ("the", 1),
])
def test_syllable_heuristic(word, count):
    assert proxy.syllables(word) == count


def test_flesch_kincaid_orders_simple_below_technical_text():
    simple = "The sun is hot. It gives us light. Plants use the light to grow."
    technical = ("Photosynthetic organisms convert electromagnetic radiation into chemical "
                 "potential energy through sophisticated photochemical reaction centres.")
    assert proxy.flesch_kincaid_grade(simple) < 3 < 16 < proxy.flesch_kincaid_grade(technical)
    assert proxy.flesch_kincaid_grade("") == 0.0


def test_proxy_reviews_scores_traits_like_the_domain_rule():
    user = User("negative concise", "d", {"sentiment": "negative", "length": "concise"})
    short_bad = "Dull, predictable and lazy."
    long_good = ("A wonderful, moving and beautifully acted film with a brilliant script, "
                 "a superb cast and an unforgettable ending that I recommend to everyone.")
    out = ProxyJudge().judge([
        Comparison(user, "Review it.", short_bad, long_good, {"domain": "reviews"}),
        Comparison(user, "Review it.", long_good, short_bad, {"domain": "reviews"}),
    ])
    assert [j.winner for j in out] == ["a", "b"]
    assert out[0].meta["signals"]["points"] == {"a": 2, "b": 0}


def test_proxy_elix_prefers_the_grade_closest_to_the_level():
    simple = "The sun is hot. It gives us light. Plants use the light to grow."
    technical = ("Photosynthetic organisms convert electromagnetic radiation into chemical "
                 "potential energy through sophisticated photochemical reaction centres.")
    child = User("child", "The user is a child.", {"level": "child"})
    expert = User("expert", "The user is an expert.", {"level": "expert"})
    out = ProxyJudge().judge([Comparison(u, "Q", simple, technical, {"domain": "elix"})
                              for u in (child, expert)])
    assert [j.winner for j in out] == ["a", "b"]


@pytest.mark.parametrize(("meta", "user", "message"), [
    ({}, USER, "meta['domain'] is None"),
    ({"domain": "chess"}, USER, "'chess'"),
    ({"domain": "elix"}, User("x", "d", {}), "no known level"),
    ({"domain": "reviews"}, User("x", "d", {"level": "child"}), "neither a sentiment"),
])
def test_proxy_invalid_when_it_has_no_signal(meta, user, message):
    (out,) = ProxyJudge().judge([Comparison(user, "Q", "a", "b", meta)])
    assert out.winner is None and not out.valid and message in out.raw


# ------------------------------------------------------------------- proxy: degenerate answers

DOMAINS_ROLEPLAY_SLOW = ["reviews", "elix", pytest.param("roleplay", marks=pytest.mark.slow)]


@pytest.mark.parametrize(("text", "reason"), [
    ("", "no words"),
    ("  ... -- !  ", "no words"),
    ("Light scatters, mostly.", "3 word(s), fewer than 4"),
    ("Dull, predictable and lazy.", None),
    ("M*A*S*H found laughter", "3 word(s)"),
    ("Why is the sky blue? The sky is blue.", "of its words are the question's"),
    ("ok " * 30, "distinct-word ratio 0.03"),
    ("I like it a lot. " * 10, "distinct-word ratio 0.10"),
    ("Sunlight scatters off air molecules, and blue light scatters the most.", None),
    ("Blue: the sky scatters sunlight's short, blue wavelengths.", None),
])
def test_degeneracy_rule(text, reason):
    got = degenerate.degeneracy(text, "Why is the sky blue?")
    assert got == reason if reason is None else reason in got


@pytest.mark.parametrize("domain", ["reviews", "elix", "roleplay"])
def test_no_shipped_response_is_degenerate(domain):
    data = plugins.get("domain", domain)().load()
    flagged = [(p.question, text) for p in data.preferences for text in (p.chosen, p.rejected)
               if degenerate.degeneracy(text, p.question)]
    assert flagged == []


@pytest.mark.parametrize("domain", DOMAINS_ROLEPLAY_SLOW)
def test_proxy_prefers_a_real_answer_over_empty_echoed_and_truncated_ones(domain):
    data = plugins.get("domain", domain)().load()
    pairs = data.eval_preferences()
    pairs = pairs[::max(1, len(pairs) // 12)]
    comparisons = []
    for p in pairs:
        user, meta = data.users[p.user_id], {"domain": domain}
        for fake in ("", p.question, " ".join(p.chosen.split()[:3])):
            comparisons += [Comparison(user, p.question, p.chosen, fake, meta),
                            Comparison(user, p.question, fake, p.chosen, meta)]
    out = ProxyJudge().judge(comparisons)
    assert [j.winner for j in out] == ["a", "b"] * (len(comparisons) // 2)
    assert all("degenerate" in j.raw and j.meta["signals"]["degenerate"] for j in out)


@pytest.mark.parametrize("domain", DOMAINS_ROLEPLAY_SLOW)
def test_proxy_passes_every_gated_canary(domain):
    data = plugins.get("domain", domain)().load()
    canaries = build_canaries(data, n=200)
    report = canary_report(canaries, ProxyJudge().judge([c.comparison for c in canaries]))
    assert report["n"] > 500 and report["pass_rate"] == 100.0
    assert report["by_kind"]["repeated"]["pass_rate"] == 100.0


def test_proxy_two_degenerate_answers_tie_and_the_domain_signal_is_overruled():
    child = User("child", "The user is a child.", {"level": "child"})
    real = ("Photosynthetic organisms convert electromagnetic radiation into chemical "
            "potential energy through sophisticated photochemical reaction centres.")
    out = ProxyJudge().judge([Comparison(child, "Q", "", "Sun. Hot.", {"domain": "elix"}),
                              Comparison(child, "Q", real, "", {"domain": "elix"})])
    assert [j.winner for j in out] == ["tie", "a"]  # by grade alone "" (grade 0) would win
    assert out[1].meta["signals"]["degenerate"] == {"a": None, "b": "no words"}
    assert "b is degenerate (no words)" in out[1].raw and out[1].raw.endswith("Verdict: a")


def test_proxy_identity_names_its_degeneracy_rule():
    identity = ProxyJudge().identity()
    assert identity["version"] == 2
    assert (identity["min_words"], identity["echo_share"], identity["min_distinct_ratio"]) == (
        degenerate.MIN_WORDS, degenerate.ECHO_SHARE, degenerate.MIN_DISTINCT_RATIO)


# Floors for the proxies' agreement with the exact labels on all shipped held-out pairs.
# Chance is 0.5. Measured (judges/README.md): reviews 0.939, elix 0.944, roleplay 0.600. The
# floors sit a few points below the measurement so that the test fails on a real regression of
# a signal, not on noise (the data and the signals are deterministic, so there is none).
# Roleplay's embedding cosine is a weak signal by nature (it cannot tell a liked view from a
# disliked one mentioned in the description); its floor only requires it to beat chance.
PROXY_FLOORS = {"reviews": 0.9, "elix": 0.9, "roleplay": 0.55}


@pytest.mark.parametrize("domain", ["reviews", "elix",
                                    pytest.param("roleplay", marks=pytest.mark.slow)])
def test_proxy_agreement_with_oracle_is_above_its_floor_and_order_free(domain):
    data = plugins.get("domain", domain)().load()
    report = audit(ProxyJudge(), data, limit=None, seed=0, injection_limit=5)
    assert report["n_invalid"] == 0
    assert report["agreement"] > PROXY_FLOORS[domain]
    assert report["position_consistency"] == 1.0
    assert report["p_prefers_first"] == 0.5
