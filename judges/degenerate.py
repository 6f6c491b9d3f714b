"""Degenerate answers: text that no judge should prefer over a real answer.

A response is *degenerate* if it has fewer than ``MIN_WORDS`` words (none at all included), if at
least ``ECHO_SHARE`` of its words are words of the question (it mostly repeats the question), or
if its distinct-word ratio (distinct words / words) is below ``MIN_DISTINCT_RATIO`` (one word or
phrase repeated). Words are whitespace-separated tokens with a letter or digit, lower-cased,
without their end punctuation. No shipped response is degenerate (``tests/test_judges.py``).

The ``proxy`` judge applies the rule before its signals, and the ``pairwise`` judge before asking
its model (``guard``, on by default): a degenerate response loses to a non-degenerate one and two
degenerate responses tie, with the reason in the verdict. The degenerate-answer canaries
(:mod:`fspo_bench.canaries`) test exactly this.
"""

from __future__ import annotations

import re
from typing import Any

#: Degenerate responses: fewer words than this ...
MIN_WORDS = 4
#: ... or at least this share of its words are words of the question ...
ECHO_SHARE = 0.8
#: ... or fewer distinct words per word than this.
MIN_DISTINCT_RATIO = 0.25
RULE: dict[str, Any] = {"min_words": MIN_WORDS, "echo_share": ECHO_SHARE,
                        "min_distinct_ratio": MIN_DISTINCT_RATIO}

_ALNUM = re.compile(r"[^\W_]")
_EDGE_PUNCTUATION = re.compile(r"^[\W_]+|[\W_]+$")


def normalize(text: str) -> str:
    """Lower-cased, with typographic single quotes as ASCII apostrophes."""
    return text.lower().replace("\u2019", "'").replace("\u2018", "'")


def plain_words(text: str) -> list[str]:
    """Whitespace-separated tokens with a letter or digit, lower-cased, without the punctuation
    at their ends ("M*A*S*H" is one word here)."""
    return [_EDGE_PUNCTUATION.sub("", token) for token in normalize(text).split()
            if _ALNUM.search(token)]


def degeneracy(text: str, question: str) -> str | None:
    """Why ``text`` is a degenerate answer to ``question``, or None if it is not."""
    words = plain_words(text)
    if not words:
        return "no words"
    if len(words) < MIN_WORDS:
        return f"{len(words)} word(s), fewer than {MIN_WORDS}"
    asked = set(plain_words(question))
    echoed = sum(w in asked for w in words) / len(words)
    if echoed >= ECHO_SHARE:
        return f"{echoed:.0%} of its words are the question's (at least {ECHO_SHARE:.0%})"
    distinct = len(set(words)) / len(words)
    if distinct < MIN_DISTINCT_RATIO:
        return f"distinct-word ratio {distinct:.2f}, below {MIN_DISTINCT_RATIO}"
    return None


def degenerate_verdict(a: str, b: str, question: str) -> tuple[str, str] | None:
    """``(winner, why)`` when ``a`` or ``b`` is degenerate, else None: the other one wins, two
    degenerate responses tie."""
    why = {"a": degeneracy(a, question), "b": degeneracy(b, question)}
    if not any(why.values()):
        return None
    winner = "tie" if all(why.values()) else "b" if why["a"] else "a"
    return winner, "; ".join(f"{side} is degenerate ({reason})" for side, reason in why.items()
                             if reason)
