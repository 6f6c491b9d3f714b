"""Judge canaries: comparisons whose right answer needs no judge, built from a domain's data.

For a seeded sample of held-out labelled pairs (:meth:`DomainData.eval_preferences`), the
pair's chosen response (the *real answer*) is set against a degenerate one:

``empty``
    the empty string;
``echo``
    the question itself, echoed back as the answer;
``first_words``
    the real answer cut to its first ``TRUNCATE_WORDS`` (3) words;
``repeated``
    the real answer's first word, repeated as many times as the answer has words;
``other_user``
    another held-out user's chosen response to the same question (same ``question_id``) that
    the domain's rule, ``Domain.oracle(user, that_attr, this_chosen_attr)``, says is worse for
    this user than their own chosen response (only where the pairs record the attributes and
    the domain has a rule; ``meta`` then carries ``a_attr`` and ``b_attr``).

The real answer must win every one. Each canary is shown in both orders, so a judge that always
picks a position passes half. ``meta`` is ``{"domain": ...}`` (and the two attributes for
``other_user``), so an attribute-only judge such as the oracle cannot judge the degenerate kinds:
its verdicts there are invalid, and counted as such.

The gate: a judge must pass 100% of the ``GATED_KINDS`` (empty, echo, first_words); invalid
verdicts and ties count as not passed. ``repeated`` and ``other_user`` are reported, not gated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fspo_bench.dataset import DomainData
from fspo_bench.errors import UnknownNameError
from fspo_bench.judge import Comparison
from fspo_bench.records import Judgment, Preference, Record, User
from fspo_bench.sampling import rng_for

KINDS = ("empty", "echo", "first_words", "repeated", "other_user")
GATED_KINDS = ("empty", "echo", "first_words")
DEFAULT_PAIRS = 8
TRUNCATE_WORDS = 3

_WORD = re.compile(r"\S+")
#: A domain's labelling rule: which of two attributes ``user`` prefers (None: undecided).
Rule = Callable[[User, Any, Any], str | None]


@dataclass(frozen=True)
class Canary(Record):
    """A comparison with a known right answer: ``expected`` ("a" or "b") must win."""

    kind: str
    comparison: Comparison
    expected: str


def build_canaries(data: DomainData, *, n: int = DEFAULT_PAIRS, seed: int = 0) -> list[Canary]:
    """Canaries from ``n`` seeded held-out pairs with distinct (user, question, chosen
    response), all of them if fewer, each canary in both orders: real answer first (expected
    "a"), then second (expected "b"). Deterministic."""
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    pairs = data.eval_preferences()
    # one pair per (user, question, chosen answer): the degenerate kinds depend on nothing else
    first: dict[tuple[str, str, str], Preference] = {}
    for p in pairs:
        first.setdefault((p.user_id, p.question_id, p.chosen), p)
    answers = list(first.values())
    picked = sorted(rng_for("canaries", data.domain, seed).sample(range(len(answers)),
                                                                  min(n, len(answers))))
    oracle = _oracle(data.domain)
    by_question: dict[str, list[Preference]] = {}
    for p in pairs:
        by_question.setdefault(p.question_id, []).append(p)
    canaries: list[Canary] = []
    for index in picked:
        pair = answers[index]
        words = _WORD.findall(pair.chosen)
        fakes = [("empty", ""), ("echo", pair.question),
                 ("first_words", " ".join(words[:TRUNCATE_WORDS])),
                 ("repeated", " ".join(words[:1] * len(words)))]
        for kind, fake in fakes:
            canaries += _both_orders(data, pair, kind, fake)
        other = _other_user_answer(data, pair, by_question[pair.question_id], oracle, seed)
        if other is not None:
            text, attr = other
            canaries += _both_orders(data, pair, "other_user", text,
                                     (pair.meta["chosen_attr"], attr))
    return canaries


def canary_report(canaries: Sequence[Canary], judgments: Sequence[Judgment]) -> dict[str, Any]:
    """Pass rates (percent) of one judge's verdicts on ``canaries`` (same order).

    ``pass_rate`` over the ``GATED_KINDS`` (None if there are none), ``n`` gated canaries,
    ``by_kind`` for each kind present: ``n``, ``passed``, ``invalid``, ``pass_rate``. A canary
    passes when its verdict is valid and is the ``expected`` side; a tie or an invalid verdict
    does not pass.
    """
    if len(canaries) != len(judgments):
        raise ValueError(f"{len(judgments)} judgments for {len(canaries)} canaries")
    counts: dict[str, dict[str, int]] = {}
    for canary, judgment in zip(canaries, judgments, strict=True):
        count = counts.setdefault(canary.kind, {"n": 0, "passed": 0, "invalid": 0})
        count["n"] += 1
        if not judgment.valid or judgment.winner is None:
            count["invalid"] += 1
        elif judgment.winner == canary.expected:
            count["passed"] += 1
    by_kind = {kind: {**counts[kind], "pass_rate": _percent(counts[kind]["passed"],
                                                            counts[kind]["n"])}
               for kind in KINDS if kind in counts}
    gated_n = sum(counts[k]["n"] for k in GATED_KINDS if k in counts)
    gated_passed = sum(counts[k]["passed"] for k in GATED_KINDS if k in counts)
    return {"pass_rate": _percent(gated_passed, gated_n) if gated_n else None, "n": gated_n,
            "by_kind": by_kind}


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole


def _both_orders(data: DomainData, pair: Preference, kind: str, fake: str,
                 attrs: tuple[Any, Any] | None = None) -> list[Canary]:
    """The canary with the real answer as a (expected "a") and as b (expected "b"); none when
    the fake text is the real answer itself (a one-word answer "repeated", say). ``attrs``:
    (real answer's attribute, fake's), put in ``meta`` as ``a_attr`` and ``b_attr``."""
    if fake == pair.chosen:
        return []
    user = data.users[pair.user_id]
    real_first: dict[str, Any] = {"domain": data.domain}
    real_second: dict[str, Any] = {"domain": data.domain}
    if attrs is not None:
        real_first.update(a_attr=attrs[0], b_attr=attrs[1])
        real_second.update(a_attr=attrs[1], b_attr=attrs[0])
    return [Canary(kind, Comparison(user, pair.question, pair.chosen, fake, real_first), "a"),
            Canary(kind, Comparison(user, pair.question, fake, pair.chosen, real_second), "b")]


def _other_user_answer(data: DomainData, pair: Preference, same_question: Sequence[Preference],
                       oracle: Rule | None, seed: int) -> tuple[str, Any] | None:
    """(text, attribute) of a seeded pick among other held-out users' chosen responses to this
    question (``same_question``: the held-out pairs on it) that the domain's rule ranks below
    this user's own chosen response."""
    own_attr = pair.meta.get("chosen_attr")
    if oracle is None or own_attr is None:
        return None
    user = data.users[pair.user_id]
    candidates = {p.chosen: p.meta["chosen_attr"] for p in same_question
                  if p.user_id != pair.user_id
                  and p.chosen != pair.chosen and p.meta.get("chosen_attr") is not None
                  and oracle(user, p.meta["chosen_attr"], own_attr) == "b"}
    if not candidates:
        return None
    rng = rng_for("canaries/other_user", data.domain, seed, pair.user_id, pair.question_id)
    return rng.choice(sorted(candidates.items(), key=lambda item: item[0]))


def _oracle(domain: str) -> Rule | None:
    """The domain's labelling rule ``oracle(user, a_attr, b_attr)``; None if the domain is not
    registered or has no rule (its ``oracle`` missing or raising NotImplementedError)."""
    from fspo_bench import plugins

    try:
        rule = getattr(plugins.get("domain", domain)(), "oracle", None)
    except UnknownNameError:
        return None
    if rule is None:
        return None

    def checked(user: User, a: Any, b: Any) -> str | None:
        try:
            return rule(user, a, b)
        except NotImplementedError:
            return None

    return checked
