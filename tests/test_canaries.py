"""Judge canaries: how they are built from a domain's data, and how their verdicts are counted."""

from __future__ import annotations

import dataclasses

import pytest

from fspo_bench import Comparison, Judgment, User, plugins
from fspo_bench.canaries import GATED_KINDS, KINDS, Canary, build_canaries, canary_report
from fspo_bench.dataset import DomainData
from fspo_bench.judges.oracle import OracleJudge
from fspo_bench.records import Preference

DOMAINS = ("reviews", "elix", "roleplay")


@pytest.fixture(scope="module")
def loaded():
    return {d: plugins.get("domain", d)().load() for d in DOMAINS}


def verdict(canary: Canary, winner: str | None) -> Judgment:
    c = canary.comparison
    return Judgment("test", c.user.id, c.question, c.a, c.b, winner, raw=str(winner),
                    valid=winner is not None)


@pytest.mark.parametrize("domain", DOMAINS)
def test_build_canaries_is_deterministic_and_seeded(loaded, domain):
    data = loaded[domain]
    canaries = build_canaries(data, n=6, seed=1)
    assert canaries == build_canaries(data, n=6, seed=1)
    assert canaries != build_canaries(data, n=6, seed=2)
    assert {c.kind for c in canaries} == set(KINDS)
    assert len({(c.comparison.user.id, c.comparison.question) for c in canaries}) <= 6
    assert [Canary.from_json(c.to_json()) for c in canaries] == canaries


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_canary_comes_in_both_orders(loaded, domain):
    data = loaded[domain]
    canaries = build_canaries(data, n=8, seed=0)
    assert len(canaries) % 2 == 0
    for first, second in zip(canaries[::2], canaries[1::2], strict=True):
        assert first.kind == second.kind
        assert (first.expected, second.expected) == ("a", "b")
        one, two = first.comparison, second.comparison
        assert (one.a, one.b) == (two.b, two.a) and one.a != one.b
        assert one.user == two.user and one.question == two.question
        if first.kind == "other_user":
            assert one.meta["domain"] == domain
            assert (one.meta["a_attr"], one.meta["b_attr"]) == (two.meta["b_attr"],
                                                                two.meta["a_attr"])
        else:
            assert one.meta == two.meta == {"domain": domain}


@pytest.mark.parametrize("domain", DOMAINS)
def test_canary_texts(loaded, domain):
    data = loaded[domain]
    held_out = data.eval_preferences()
    chosen = {(p.user_id, p.question, p.chosen) for p in held_out}
    for canary in build_canaries(data, n=8, seed=0)[::2]:  # the real answer is a
        c = canary.comparison
        assert (c.user.id, c.question, c.a) in chosen
        words = c.a.split()
        expected = {"empty": "", "echo": c.question, "first_words": " ".join(words[:3]),
                    "repeated": " ".join([words[0]] * len(words))}
        if canary.kind in expected:
            assert c.b == expected[canary.kind]
        else:  # other_user: another held-out user's answer the domain's rule ranks lower
            qid = next(p.question_id for p in held_out if p.question == c.question)
            assert any(p.chosen == c.b and p.user_id != c.user.id and p.question_id == qid
                       for p in held_out)
            rule = plugins.get("domain", domain)().oracle
            assert rule(c.user, c.meta["b_attr"], c.meta["a_attr"]) == "b"
            assert rule(c.user, c.meta["a_attr"], c.meta["b_attr"]) == "a"


def test_build_canaries_sizes(loaded):
    data = loaded["elix"]
    assert build_canaries(data, n=0) == []
    one = build_canaries(data, n=1)
    assert [c.kind for c in one] == [k for k in KINDS for _ in range(2)]
    assert len(build_canaries(data, n=10**6)) > 1000
    with pytest.raises(ValueError, match="n must be >= 0"):
        build_canaries(data, n=-1)


def test_no_other_user_canaries_without_a_domain_rule():
    user = User("u", "d", {})
    pair = Preference("u", "Why is the sky blue?", "Sunlight scatters off the air.",
                      "It just is.", "q1", {"chosen_attr": "x", "rejected_attr": "y"})
    data = DomainData(domain="not-a-registered-domain", source="test", users={"u": user},
                      preferences=[pair], train_users=frozenset(), eval_users=frozenset({"u"}),
                      eval_questions=frozenset({"q1"}), default_shots=1)
    kinds = [c.kind for c in build_canaries(data)]
    assert kinds == [k for k in KINDS if k != "other_user" for _ in range(2)]


def test_canary_report_arithmetic(loaded):
    canaries = build_canaries(loaded["reviews"], n=2, seed=0)
    assert [c.kind for c in canaries].count("empty") == 4
    # per kind, four canaries (two pairs x two orders); verdicts chosen by position:
    # empty: all right; echo: one tie, one wrong; first_words: one invalid, three right;
    # repeated: all invalid; other_user: all wrong.
    plan = {"empty": ["ok", "ok", "ok", "ok"], "echo": ["ok", "tie", "ok", "wrong"],
            "first_words": ["ok", None, "ok", "ok"], "repeated": [None] * 4,
            "other_user": ["wrong"] * 4}
    seen = {k: 0 for k in KINDS}
    judgments = []
    for canary in canaries:
        step = plan[canary.kind][seen[canary.kind]]
        seen[canary.kind] += 1
        other = "b" if canary.expected == "a" else "a"
        judgments.append(verdict(canary, {"ok": canary.expected, "wrong": other,
                                          "tie": "tie", None: None}[step]))
    report = canary_report(canaries, judgments)
    assert report["n"] == 12
    assert report["pass_rate"] == pytest.approx(100 * 9 / 12)
    by = report["by_kind"]
    assert list(by) == list(KINDS)
    assert by["empty"] == {"n": 4, "passed": 4, "invalid": 0, "pass_rate": 100.0}
    assert by["echo"] == {"n": 4, "passed": 2, "invalid": 0, "pass_rate": 50.0}
    assert by["first_words"] == {"n": 4, "passed": 3, "invalid": 1, "pass_rate": 75.0}
    assert by["repeated"] == {"n": 4, "passed": 0, "invalid": 4, "pass_rate": 0.0}
    assert by["other_user"] == {"n": 4, "passed": 0, "invalid": 0, "pass_rate": 0.0}


def test_canary_report_counts_valid_false_as_invalid_and_gates_only_its_kinds():
    user = User("u", "d", {})
    canaries = [Canary(kind, Comparison(user, "Q", "real answer", "", {"domain": "x"}), "a")
                for kind in ("empty", "repeated")]
    flagged = dataclasses.replace(verdict(canaries[0], "a"), valid=False)
    report = canary_report(canaries, [flagged, verdict(canaries[1], "a")])
    assert report["n"] == 1 and report["pass_rate"] == 0.0
    assert report["by_kind"]["empty"]["invalid"] == 1
    assert report["by_kind"]["repeated"]["pass_rate"] == 100.0
    assert canary_report([], []) == {"pass_rate": None, "n": 0, "by_kind": {}}
    with pytest.raises(ValueError, match="1 judgments for 2 canaries"):
        canary_report(canaries, [flagged])


@pytest.mark.parametrize("domain", DOMAINS)
def test_the_oracle_cannot_judge_degenerate_canaries(loaded, domain):
    canaries = build_canaries(loaded[domain], n=4, seed=0)
    report = canary_report(canaries, OracleJudge().judge([c.comparison for c in canaries]))
    assert report["pass_rate"] == 0.0 and report["n"] == 24
    for kind in GATED_KINDS + ("repeated",):
        assert report["by_kind"][kind]["invalid"] == report["by_kind"][kind]["n"] == 8
    assert report["by_kind"]["other_user"]["pass_rate"] == 100.0
