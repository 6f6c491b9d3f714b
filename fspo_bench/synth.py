"""``fspo-bench synth``: synthetic preference data made the way the FSPO paper made its data.

The pipeline (:func:`synthesize`) runs in stages, every model call through the response cache
(:func:`fspo_bench.runner.cached_generate`, :func:`fspo_bench.runner.cached_judge`), so a killed
synth resumes where it stopped and a finished one re-run makes no model call:

1. **personas**: N persona descriptions, each written by the model from a seed, the description
   of one of the domain's own users (Roleplay: its personas; ELIX: its levels; Reviews: its
   traits), taken in a seeded order; an unusable answer keeps the seed (a counted fallback);
2. **questions**: M questions written by the model in the style of the domain's shipped ones
   (parsed from a numbered list; missing ones are filled from the shipped questions, counted),
   or the shipped questions themselves (``questions_from="builtin"``);
3. **views**: for each question the model lists K distinct views (a numbered list, parsed
   leniently; missing views are filled from :data:`GENERIC_VIEWS`, counted), then writes one
   response per view, conditioned on it; with several backends (an ensemble) the responses go
   round-robin over them;
4. **labels**: for each persona and each pair of a question's responses, the judge in BOTH
   orders, the persona as the user. Two valid verdicts for the same response give a row; a pair
   judged differently in the two orders (dropped as order-inconsistent), with a tie, or with an
   invalid verdict is *undetermined*;
5. **refinement** (``rounds`` times): each persona with undetermined pairs is shown one of them
   (seeded choice) and the model writes one sentence stating the preference that would decide
   it; the sentence is appended to the persona's description and the persona's undetermined
   pairs are judged again (pairs already decided keep their labels);
6. **metrics**: label entropy (nats, :func:`fspo_bench.data_metrics.label_entropy`) of the
   judge's two-order votes per pair, before and after refinement, and the mean pairwise
   embedding similarity of the responses to each question
   (:func:`fspo_bench.data_metrics.mean_pairwise_similarity`).

The rows are always in the **Roleplay** layout (``x, yw, yl, level, score_persona`` with
``persona_description``, plus ``view_w, view_l``), whatever the source domain, and load with
``--domain roleplay --data PATH``: the ELIX/Reviews layout names a user by a level or trait in
``scorer_level`` and those domains rebuild the user's description from it, which would lose the
synthetic persona and its refinement. See docs/synth.md.

This module imports no concrete plugin: domains are looked up by name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fspo_bench import plugins
from fspo_bench.backend import Backend, GenerationParams, GenerationRequest
from fspo_bench.cache import ResponseCache
from fspo_bench.data_metrics import label_entropy, mean_pairwise_similarity
from fspo_bench.datafiles import write_rows
from fspo_bench.dataset import question_id
from fspo_bench.errors import FspoBenchError
from fspo_bench.judge import Comparison, Judge
from fspo_bench.records import Judgment, Preference, Record, User
from fspo_bench.rundir import write_json
from fspo_bench.runner import Progress, StageCount, cached_generate, cached_judge
from fspo_bench.sampling import rng_for

#: The domain whose layout synth writes, and with which its output loads (``--data PATH``).
OUTPUT_DOMAIN = "roleplay"
QUESTION_SOURCES = ("generate", "builtin")
#: Views used when the model lists too few distinct ones for a question.
GENERIC_VIEWS = (
    "practical and budget-minded",
    "enthusiastic and adventurous",
    "cautious and safety-first",
    "brief and to the point",
    "detailed and thorough",
    "traditional and time-tested",
    "creative and unconventional",
    "technical and expert",
    "warm and social",
    "calm and health-conscious",
)
EXAMPLE_QUESTIONS = 3
MIN_WORDS = 3
MAX_PERSONA_CHARS = 1200
MAX_QUESTION_CHARS = 300
MAX_VIEW_CHARS = 160
MAX_SENTENCE_CHARS = 300

PERSONA_PROMPT = """\
Here is a short description of a person who asks an AI assistant for help:
{seed}

They ask questions such as:
{examples}

Write a new description of one specific person in the same spirit. Keep what the description \
above says, and add concrete details: who they are, what they like and dislike, and what kind \
of answers they want. Write two to four sentences in the third person, starting with \
"The user". Write only the description."""

QUESTIONS_PROMPT = """\
Here are questions that people ask an AI assistant:
{examples}

Write {n} new, different questions of the same kind. Each should be open enough that people \
with different tastes would want different answers. Write a numbered list (1., 2., ...), one \
question per line, and nothing else."""

VIEWS_PROMPT = """\
Question: {question}

List {k} clearly different views or perspectives from which someone could answer this \
question (for example what they value most, or who they are). Write a numbered list (1., 2., \
...), one short view per line, and nothing else."""

RESPONSE_PROMPT = """\
Answer the question below from this point of view: {view}
Let that view shape what you recommend and how you say it, but do not name the view or say \
that you were given one.

Question: {question}

Write only the answer."""

REFINE_PROMPT = """\
Here is a description of a person:
{description}

They asked: {question}

Answer (A):
<<<
{a}
>>>

Answer (B):
<<<
{b}
>>>

The description does not say which of the two answers this person would prefer. Write ONE \
sentence, in the third person, that states a preference this person has and that decides \
between the two answers (for example "They prefer ..."). It must not contradict the \
description. Write only that sentence."""

FALLBACK_SENTENCE = "They prefer answers written from this point of view: {view}."

_ITEM = re.compile(r"^\s*(?:\(?\d{1,3}[.):]|[-*\u2022])\s+(?P<text>\S.*)$")
_INLINE_SPLIT = re.compile(r"(?:^|\s)\(?\d{1,3}[.)]\s+")
_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
_LABEL = re.compile(r"^\s*(?:description|persona|sentence|answer|question|view)\s*:\s*", re.I)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SynthConfig(Record):
    """What a synth makes. ``temperature`` applies to every generation (personas, questions,
    views, responses, refinement sentences); the judge keeps its own decoding settings."""

    domain: str
    personas: int = 4
    questions: int = 4
    views: int = 4
    rounds: int = 1
    temperature: float = 1.0
    seed: int = 0
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0
    questions_from: str = "generate"
    seed_data: str = "builtin"
    diversity: bool = True

    def check(self) -> None:
        for name in ("personas", "questions"):
            if getattr(self, name) < 1:
                raise FspoBenchError(f"--{name} must be at least 1, not {getattr(self, name)}")
        if self.views < 2:
            raise FspoBenchError(f"--views must be at least 2 (pairs need two), not {self.views}")
        if self.rounds < 0:
            raise FspoBenchError(f"--rounds must be at least 0, not {self.rounds}")
        if self.temperature < 0:
            raise FspoBenchError(f"--temperature must be >= 0, not {self.temperature}")
        if self.max_new_tokens < 1:
            raise FspoBenchError(f"--max-new-tokens must be at least 1, not "
                                 f"{self.max_new_tokens}")
        if self.questions_from not in QUESTION_SOURCES:
            raise FspoBenchError(f"--questions-from must be one of {', '.join(QUESTION_SOURCES)}, "
                                 f"not {self.questions_from!r}")


@dataclass(frozen=True)
class Persona(Record):
    """A synthetic user. ``description`` is the final one (refinement sentences appended)."""

    id: str
    description: str
    seed_user: str
    seed_description: str
    attributes: dict[str, Any] = field(default_factory=dict)
    refinements: list[str] = field(default_factory=list)

    def user(self, description: str | None = None) -> User:
        return User(self.id, self.description if description is None else description,
                    dict(self.attributes))


@dataclass(frozen=True)
class Response(Record):
    view: str
    text: str
    model: str


@dataclass(frozen=True)
class Item(Record):
    """A question, its views and one response per view."""

    question: str
    views: list[str]
    responses: list[Response]


@dataclass
class PairState:
    """What the judge said about one (persona, question, response pair) so far."""

    persona: int
    item: int
    i: int
    j: int
    winner: int | None = None  # index of the preferred response, once decided
    round: int | None = None  # the round that decided it (0: the first labelling)
    status: str = "pending"  # decided, inconsistent, tie, invalid
    first_status: str = "pending"
    first_votes: list[int | str] = field(default_factory=list)
    votes: list[int | str] = field(default_factory=list)  # of the latest round with any valid


@dataclass
class SynthResult:
    config: SynthConfig
    personas: list[Persona]
    items: list[Item]
    pairs: list[PairState]
    rows: list[dict[str, Any]]
    stats: dict[str, Any]
    stages: list[StageCount]


# --------------------------------------------------------------------------- parsing


def _squash(text: str) -> str:
    return " ".join(str(text).split())


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _clean_item(text: str, limit: int) -> str:
    text = _LABEL.sub("", text.replace("**", "").replace("__", ""))
    text = _squash(text).strip(" \"'`")
    return text[:limit].rstrip()


def parse_list(text: str, limit: int = MAX_VIEW_CHARS) -> list[str]:
    """The items of a numbered (``1.``, ``2)``, ``(3)``) or bulleted list in a model's answer.

    Lines that are not list items (a preamble, a closing remark) are ignored; a list written on
    one line ("1. a 2. b") is split. Items are cleaned (Markdown emphasis, a leading
    ``View:``-style label, quotes, extra spaces), cut to ``limit`` characters and de-duplicated
    (case-insensitive), in order.
    """
    text = str(text or "")
    items = [m.group("text") for line in text.splitlines() if (m := _ITEM.match(line))]
    if len(items) < 2:
        parts = _INLINE_SPLIT.split(text)
        if len(parts) > 2:
            items = parts[1:]
    out: list[str] = []
    seen: set[str] = set()
    for item in items:
        cleaned = _clean_item(item, limit)
        key = cleaned.lower().rstrip(".")
        if cleaned and key not in seen:
            seen.add(key)
            out.append(cleaned)
    return out


def parse_description(text: str) -> str | None:
    """A persona description from a model's answer, or None if it is unusable."""
    cleaned = _clean_item(str(text or ""), MAX_PERSONA_CHARS)
    return cleaned if _words(cleaned) >= MIN_WORDS else None


def parse_sentence(text: str) -> str | None:
    """The first sentence of a model's answer (with at least three words), or None."""
    for line in str(text or "").splitlines():
        line = _clean_item(line, 10 * MAX_SENTENCE_CHARS)
        if _words(line) < MIN_WORDS:
            continue
        sentence = _SENTENCE_END.split(line, maxsplit=1)[0][:MAX_SENTENCE_CHARS].rstrip()
        if _words(sentence) < MIN_WORDS:
            continue
        return sentence if sentence[-1] in ".!?" else sentence + "."
    return None


# --------------------------------------------------------------------------- the pipeline


def _messages(content: str, params: GenerationParams) -> GenerationRequest:
    return GenerationRequest(params=params, messages=[{"role": "user", "content": content}])


def _bullets(lines: Sequence[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def _undetermined(status: str) -> bool:
    return status != "decided"


class _Pipeline:
    def __init__(self, config: SynthConfig, backends: Sequence[Backend], judge: Judge,
                 cache: ResponseCache, progress: Progress, log: Callable[[str], None]):
        self.config, self.backends, self.judge = config, list(backends), judge
        self.cache, self.progress, self.log = cache, progress, log
        self.stages: list[StageCount] = []
        self.fallbacks = {"personas": 0, "questions": 0, "views": 0, "refinements": 0}

    # ------------------------------------------------------------------ helpers

    def params(self, sample_index: int = 0) -> GenerationParams:
        c = self.config
        return GenerationParams(max_new_tokens=int(c.max_new_tokens),
                                temperature=float(c.temperature),
                                repetition_penalty=float(c.repetition_penalty),
                                seed=int(c.seed), sample_index=int(sample_index))

    def stage(self, name: str) -> StageCount:
        count = StageCount(f"synth {name}")
        self.stages.append(count)
        return count

    def done(self, count: StageCount) -> None:
        self.log(str(count))

    def generate(self, requests: Sequence[GenerationRequest], count: StageCount,
                 backend_of: Sequence[int] | None = None) -> list[str]:
        """Cached generation; ``backend_of[i]`` picks the backend of request i (default: 0)."""
        texts: list[str] = [""] * len(requests)
        chosen = list(backend_of) if backend_of is not None else [0] * len(requests)
        for b, backend in enumerate(self.backends):
            indices = [i for i, k in enumerate(chosen) if k == b]
            if not indices:
                continue
            out = cached_generate(backend, [requests[i] for i in indices], self.cache, count,
                                  self.progress)
            for i, text in zip(indices, out, strict=True):
                texts[i] = "" if text is None else str(text)
        return texts

    # ------------------------------------------------------------------ stages

    def seeds(self) -> tuple[list[User], list[str]]:
        """The domain's users (seeded order) and its questions (seeded order)."""
        c = self.config
        data = plugins.get("domain", c.domain)().load(c.seed_data)
        users = [data.users[u] for u in sorted(data.users)]
        rng_for("synth-seed-users", c.domain, c.seed).shuffle(users)
        questions = sorted({p.question.strip() for p in data.preferences if p.question.strip()},
                           key=lambda q: (question_id(q), q))
        rng_for("synth-seed-questions", c.domain, c.seed).shuffle(questions)
        if not users or not questions:
            raise FspoBenchError(f"domain {c.domain!r} ({c.seed_data}) has no users or questions "
                                 f"to seed synthetic data from")
        return users, questions

    def make_personas(self, seed_users: list[User], examples: list[str]) -> list[Persona]:
        n = self.config.personas
        picks = [(seed_users[i % len(seed_users)], i // len(seed_users)) for i in range(n)]
        requests = [_messages(PERSONA_PROMPT.format(seed=user.description,
                                                    examples=_bullets(examples)),
                              self.params(sample))
                    for user, sample in picks]
        count = self.stage("personas")
        texts = self.generate(requests, count)
        self.done(count)
        personas = []
        for i, ((user, _), text) in enumerate(zip(picks, texts, strict=True)):
            description = parse_description(text)
            if description is None:
                self.fallbacks["personas"] += 1
                description = user.description
            personas.append(Persona(f"synth-{i:03d}", description, user.id, user.description,
                                    dict(user.attributes)))
        return personas

    def make_questions(self, shipped: list[str]) -> list[str]:
        c = self.config
        count = self.stage("questions")
        if c.questions_from == "builtin":
            chosen = shipped[:c.questions]
            if len(chosen) < c.questions:
                self.log(f"synth questions: the domain ships only {len(chosen)} questions")
            self.done(count)
            return chosen
        examples = shipped[:EXAMPLE_QUESTIONS]
        request = _messages(QUESTIONS_PROMPT.format(examples=_bullets(examples), n=c.questions),
                            self.params())
        [text] = self.generate([request], count)
        self.done(count)
        generated = [q for q in parse_list(text, MAX_QUESTION_CHARS) if _words(q) >= MIN_WORDS]
        chosen = generated[:c.questions]
        taken = {q.lower() for q in chosen}
        for question in shipped:
            if len(chosen) >= c.questions:
                break
            if question.lower() not in taken:
                chosen.append(question)
                taken.add(question.lower())
                self.fallbacks["questions"] += 1
        return chosen

    def make_items(self, questions: list[str]) -> list[Item]:
        k = self.config.views
        count = self.stage("views")
        texts = self.generate([_messages(VIEWS_PROMPT.format(question=q, k=k), self.params())
                               for q in questions], count)
        self.done(count)
        all_views = []
        for text in texts:
            views = parse_list(text, MAX_VIEW_CHARS)[:k]
            taken = {v.lower() for v in views}
            spare = [v for v in GENERIC_VIEWS if v not in taken]
            spare += [f"view {n}" for n in range(1, k + 1) if f"view {n}" not in taken]
            missing = k - len(views)
            self.fallbacks["views"] += missing
            all_views.append(views + spare[:missing])
        requests, backend_of = [], []
        for qi, (question, views) in enumerate(zip(questions, all_views, strict=True)):
            for vi, view in enumerate(views):
                requests.append(_messages(RESPONSE_PROMPT.format(view=view, question=question),
                                          self.params()))
                backend_of.append((qi * k + vi) % len(self.backends))
        count = self.stage("responses")
        texts = self.generate(requests, count, backend_of)
        self.done(count)
        items, at = [], 0
        for question, views in zip(questions, all_views, strict=True):
            responses = []
            for view in views:
                model = str(self.backends[backend_of[at]].model)
                responses.append(Response(view, texts[at].strip(), model))
                at += 1
            items.append(Item(question, views, responses))
        return items

    def make_pairs(self, items: list[Item]) -> tuple[list[PairState], dict[str, int]]:
        skipped = {"empty": 0, "identical": 0}
        pairs = []
        for p in range(self.config.personas):
            for q, item in enumerate(items):
                texts = [r.text for r in item.responses]
                for i in range(len(texts)):
                    for j in range(i + 1, len(texts)):
                        if texts[i] and texts[j] and texts[i] != texts[j]:
                            pairs.append(PairState(p, q, i, j))
                        elif p == 0:  # count each skipped pair once, not once per persona
                            skipped["empty" if not (texts[i] and texts[j]) else "identical"] += 1
        return pairs, skipped

    def comparisons(self, pair: PairState, user: User, items: list[Item]) -> list[Comparison]:
        item = items[pair.item]
        first, second = item.responses[pair.i], item.responses[pair.j]
        meta = {"domain": self.config.domain}
        return [Comparison(user, item.question, first.text, second.text,
                           {**meta, "a_attr": first.view, "b_attr": second.view}),
                Comparison(user, item.question, second.text, first.text,
                           {**meta, "a_attr": second.view, "b_attr": first.view})]

    def label(self, pairs: list[PairState], users: dict[int, User], items: list[Item],
              count: StageCount, round_: int) -> None:
        comparisons = [c for pair in pairs
                       for c in self.comparisons(pair, users[pair.persona], items)]
        judgments = cached_judge(self.judge, comparisons, self.cache, count, self.progress)
        for n, pair in enumerate(pairs):
            _apply(pair, judgments[2 * n], judgments[2 * n + 1], round_)

    def refine(self, personas: list[Persona], pairs: list[PairState], items: list[Item],
               round_: int) -> tuple[list[Persona], int]:
        open_by_persona: dict[int, list[PairState]] = {}
        for pair in pairs:
            if _undetermined(pair.status):
                open_by_persona.setdefault(pair.persona, []).append(pair)
        if not open_by_persona:
            return personas, 0
        order = sorted(open_by_persona)
        picked, requests = {}, []
        for p in order:
            rng = rng_for("synth-refine", self.config.domain, self.config.seed,
                          personas[p].id, round_)
            pair = rng.choice(open_by_persona[p])
            swap = rng.random() < 0.5
            picked[p] = (pair, swap, rng.choice((pair.i, pair.j)))
            item = items[pair.item]
            a, b = item.responses[pair.i], item.responses[pair.j]
            if swap:
                a, b = b, a
            requests.append(_messages(REFINE_PROMPT.format(
                description=personas[p].description, question=item.question, a=a.text,
                b=b.text), self.params()))
        count = self.stage(f"refine round {round_}")
        texts = self.generate(requests, count)
        self.done(count)
        personas = list(personas)
        for p, text in zip(order, texts, strict=True):
            pair, _, fallback_index = picked[p]
            sentence = parse_sentence(text)
            if sentence is None:
                self.fallbacks["refinements"] += 1
                view = items[pair.item].responses[fallback_index].view
                sentence = FALLBACK_SENTENCE.format(view=view.rstrip("."))
            old = personas[p]
            personas[p] = Persona(old.id, f"{old.description} {sentence}", old.seed_user,
                                  old.seed_description, old.attributes,
                                  [*old.refinements, sentence])
        relabel = [pair for p in order for pair in open_by_persona[p]]
        users = {p: personas[p].user() for p in order}
        count = self.stage(f"relabel round {round_}")
        before = sum(pair.status == "decided" for pair in relabel)
        self.label(relabel, users, items, count, round_)
        self.done(count)
        return personas, sum(pair.status == "decided" for pair in relabel) - before

    # ------------------------------------------------------------------ all of it

    def run(self) -> SynthResult:
        c = self.config
        seed_users, shipped = self.seeds()
        personas = self.make_personas(seed_users, shipped[:EXAMPLE_QUESTIONS])
        questions = self.make_questions(shipped)
        items = self.make_items(questions)
        pairs, skipped = self.make_pairs(items)
        count = self.stage("labels")
        self.label(pairs, {p: persona.user() for p, persona in enumerate(personas)}, items,
                   count, 0)
        self.done(count)
        for pair in pairs:
            pair.first_status, pair.first_votes = pair.status, list(pair.votes)
        decided_by_round = []
        for round_ in range(1, c.rounds + 1):
            personas, decided = self.refine(personas, pairs, items, round_)
            decided_by_round.append(decided)
        rows = _rows(c.domain, personas, items, pairs)
        stats = self.stats(personas, items, pairs, rows, skipped, decided_by_round)
        return SynthResult(c, personas, items, pairs, rows, stats, self.stages)

    def stats(self, personas: list[Persona], items: list[Item], pairs: list[PairState],
              rows: list[dict[str, Any]], skipped: dict[str, int],
              decided_by_round: list[int]) -> dict[str, Any]:
        c = self.config

        def n_status(status: str, attr: str = "status") -> int:
            return sum(getattr(pair, attr) == status for pair in pairs)

        counts = {
            "personas": len(personas),
            "questions": len(items),
            "responses": sum(len(item.responses) for item in items),
            "empty_responses": sum(not r.text for item in items for r in item.responses),
            "pairs_per_persona": len(pairs) // max(len(personas), 1),
            "pairs_skipped_empty": skipped["empty"],
            "pairs_skipped_identical": skipped["identical"],
            "pairs_labelled": len(pairs),
            "comparisons_first_round": 2 * len(pairs),
            "decided_first_round": n_status("decided", "first_status"),
            "inconsistent_first_round": n_status("inconsistent", "first_status"),
            "ties_first_round": n_status("tie", "first_status"),
            "invalid_first_round": n_status("invalid", "first_status"),
            "decided_by_refinement": sum(decided_by_round),
            "decided_by_round": decided_by_round,
            "rows": len(rows),
            "dropped_inconsistent": n_status("inconsistent"),
            "dropped_tie": n_status("tie"),
            "dropped_invalid": n_status("invalid"),
            "fallback_personas": self.fallbacks["personas"],
            "fallback_questions": self.fallbacks["questions"],
            "fallback_views": self.fallbacks["views"],
            "fallback_refinements": self.fallbacks["refinements"],
        }
        metrics = {
            "label_entropy_before_nats": _entropy(pairs, personas, items, first=True),
            "label_entropy_after_nats": _entropy(pairs, personas, items, first=False),
            "mean_pairwise_similarity": None,
        }
        warnings = []
        if c.diversity:
            metrics["mean_pairwise_similarity"] = _diversity(items)
        rows_per_persona = {p.id: 0 for p in personas}
        for row in rows:
            rows_per_persona[row["level"]] += 1
        shots = plugins.get("domain", OUTPUT_DOMAIN).default_shots
        short = sorted(u for u, n in rows_per_persona.items() if n < shots + 1)
        if not rows:
            warnings.append("no labelled rows: no pair got the same verdict in both orders "
                            "(see dropped_* and invalid_first_round); the file is empty")
        elif short:
            warnings.append(f"{len(short)} of {len(personas)} personas have fewer than "
                            f"{shots + 1} rows: loading with --domain {OUTPUT_DOMAIN} (default "
                            f"{shots} shots) drops them unless --shots is at most "
                            f"{max(min(rows_per_persona.values()) - 1, 0)}")
        return {
            "domain": c.domain,
            "config": c.to_dict(),
            "backends": [backend.identity() for backend in self.backends],
            "judge": self.judge.identity(),
            "counts": counts,
            "metrics": metrics,
            "rows_per_persona": rows_per_persona,
            "stages": [{"stage": s.stage, "cached": s.cached, "new": s.new}
                       for s in self.stages],
            "layout": OUTPUT_DOMAIN,
            "load_with": f"--domain {OUTPUT_DOMAIN} --data PATH",
            "warnings": warnings,
        }


def _apply(pair: PairState, first: Judgment, second: Judgment, round_: int) -> None:
    """Record the two-order verdicts of a pair (``first``: response i shown as (a))."""
    picks: list[int | str | None] = []  # per order: the index preferred, "tie" or None
    for judgment, shown in ((first, {"a": pair.i, "b": pair.j}),
                            (second, {"a": pair.j, "b": pair.i})):
        winner = judgment.winner if judgment.valid else None
        picks.append("tie" if winner == "tie" else shown.get(winner or ""))
    votes = [p for p in picks if p is not None]
    if votes:
        pair.votes = votes
    if None in picks:
        pair.status = "invalid"
    elif "tie" in picks:
        pair.status = "tie"
    elif picks[0] != picks[1]:
        pair.status = "inconsistent"
    else:
        pair.status, pair.winner, pair.round = "decided", picks[0], round_


def _entropy(pairs: list[PairState], personas: list[Persona], items: list[Item],
             first: bool) -> float:
    """Label entropy of the judge's two-order votes per pair, in nats (0: both orders agree;
    ln 2: they disagree). A decisive vote counts twice and a tie once for each response (half
    a vote each way); pairs without any valid vote are left out."""
    votes: list[Preference] = []
    for pair in pairs:
        item = items[pair.item]
        text = {k: item.responses[k].text for k in (pair.i, pair.j)}
        qid = question_id(item.question)
        user = personas[pair.persona].id
        for vote in (pair.first_votes if first else pair.votes):
            if vote == "tie":
                order = [(pair.i, pair.j), (pair.j, pair.i)]
            else:
                order = [(vote, pair.j if vote == pair.i else pair.i)] * 2
            votes += [Preference(user, item.question, text[a], text[b], qid) for a, b in order]
    return round(label_entropy(votes), 4)


def _diversity(items: list[Item]) -> float | None:
    """Mean pairwise cosine similarity of the responses to each question (all of them, not
    only the labelled ones)."""
    chains = []
    for item in items:
        texts = sorted({r.text for r in item.responses if r.text})
        qid = question_id(item.question)
        chains += [Preference("", item.question, a, b, qid)
                   for a, b in zip(texts, texts[1:], strict=False)]
    value = mean_pairwise_similarity(chains)
    return None if math.isnan(value) else round(value, 4)


def _rows(domain: str, personas: list[Persona], items: list[Item],
          pairs: list[PairState]) -> list[dict[str, Any]]:
    rows = []
    for pair in pairs:
        if pair.status != "decided":
            continue
        persona, item = personas[pair.persona], items[pair.item]
        loser = pair.j if pair.winner == pair.i else pair.i
        won, lost = item.responses[pair.winner], item.responses[loser]
        rows.append({
            "x": item.question, "yw": won.text, "yl": lost.text, "level": persona.id,
            "score_persona": {"persona_description": persona.description,
                              "seed_user": persona.seed_user,
                              "seed_description": persona.seed_description,
                              "source_domain": domain},
            "view_w": won.view, "view_l": lost.view, "model_w": won.model,
            "model_l": lost.model,
            "round": pair.round,
        })
    return rows


def _quiet(stage: str, done: int, total: int, status: str = "") -> None:
    return None


def synthesize(config: SynthConfig, backend: Backend | Sequence[Backend], judge: Judge,
               cache: ResponseCache, progress: Progress = _quiet,
               log: Callable[[str], None] | None = None) -> SynthResult:
    """Make synthetic preference data (see the module docstring); writes nothing but the cache.

    ``backend`` is one backend or several (an ensemble): the first writes personas, questions,
    view lists and refinement sentences; responses go round-robin over all of them.
    ``progress`` receives ``(stage, done, total, status)``; ``log`` one line per finished stage,
    ``synth <stage>: cached N / new M``.
    """
    config.check()
    backends = [backend] if isinstance(backend, Backend) else list(backend)
    if not backends:
        raise FspoBenchError("synth needs at least one backend")
    plugins.get("domain", config.domain)  # one clear error for an unknown domain
    return _Pipeline(config, backends, judge, cache, progress, log or (lambda line: None)).run()


def stats_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".stats.json")


def write_synth(result: SynthResult, path: str | Path) -> tuple[Path, Path]:
    """Write the rows (atomically, in the Roleplay layout) and the ``PATH.stats.json`` sidecar."""
    rows_path = write_rows(result.rows, path)
    sidecar = stats_path(rows_path)
    write_json(sidecar, {**result.stats, "out": str(rows_path)})
    return rows_path, sidecar
