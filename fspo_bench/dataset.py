"""A loaded domain: users, their preferences, the split, and evaluation queries.

The split is by user and by question. Held-out users are never trained on; held-out questions
never appear in a shot or a training example, for any user. Evaluation asks held-out users
held-out questions, with shots drawn from the same user's other questions.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from fspo_bench.hashing import stable_hash
from fspo_bench.records import Preference, Query, User
from fspo_bench.sampling import rng_for, sample_shots


@dataclass(frozen=True)
class Problem:
    """One bad row: where it is and what is wrong with it."""

    source: str
    row: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"column {self.column!r}: " if self.column else ""
        return f"{self.source}: row {self.row}: {where}{self.message}"


def question_id(question: str) -> str:
    """Questions are identified by their text, so every data source splits the same way."""
    return stable_hash(question.strip())[:16]


def held_out_quarter(domain: str, kind: str, ids: Iterable[str]) -> frozenset[str]:
    """The documented split rule: the quarter (rounded up) of ids whose hash is smallest.

    Deterministic, independent of row order, and stable when unrelated rows are added.
    """
    ranked = sorted(set(ids), key=lambda i: stable_hash([domain, kind, i]))
    return frozenset(ranked[: -(-len(ranked) // 4)])


def user_conflicts(source: str, named: Iterable[tuple[int, User, Any]]) -> dict[str, Problem]:
    """Users that the rows name inconsistently: user id -> the first problem found.

    ``named`` holds, per row, its number, the user it converts to and the raw value the user id
    was made from (None when unknown). A user described differently by two rows, or whose id
    came from values of different types (``1`` and ``"1"``), is ambiguous: which rows are whose
    cannot be told.
    """
    first: dict[str, tuple[int, User, Any]] = {}
    found: dict[str, Problem] = {}
    for number, user, raw in named:
        row, seen, seen_raw = first.setdefault(user.id, (number, user, raw))
        if user.id in found:
            continue
        if user.description != seen.description:
            found[user.id] = Problem(source, number, None,
                                     f"user {user.id!r} is described differently than in row {row}")
        elif type(raw) is not type(seen_raw):
            found[user.id] = Problem(
                source, number, None,
                f"user id {raw!r} ({type(raw).__name__}) and {seen_raw!r} of row {row} "
                f"({type(seen_raw).__name__}) merge into one user {user.id!r}")
    return found


def short_shot_pools(preferences: Iterable[Preference], eval_users: Collection[str],
                     eval_questions: Collection[str], shots: int) -> dict[str, int]:
    """Held-out users with a held-out question to answer but fewer than ``shots`` preferences
    on the other questions to draw shots from: user id -> how many they have."""
    pool: Counter[str] = Counter()
    asked = set()
    for p in preferences:
        if p.user_id in eval_users:
            if p.question_id in eval_questions:
                asked.add(p.user_id)
            else:
                pool[p.user_id] += 1
    return {user: pool[user] for user in sorted(asked) if pool[user] < shots}


@dataclass
class DomainData:
    """Users and preferences of one domain, split into train and held-out parts."""

    domain: str
    source: str
    users: dict[str, User]
    preferences: list[Preference]
    train_users: frozenset[str]
    eval_users: frozenset[str]
    eval_questions: frozenset[str]
    default_shots: int
    problems: list[Problem] = field(default_factory=list)
    rows_read: int = 0

    def shot_pool(self, user_id: str) -> list[Preference]:
        """The user's preferences on questions that are not held out: where shots come from."""
        return [p for p in self._by_user()[user_id] if p.question_id not in self.eval_questions]

    def train_preferences(self) -> list[Preference]:
        """What trainers may see: train users, questions that are not held out."""
        return [p for p in self.preferences
                if p.user_id in self.train_users and p.question_id not in self.eval_questions]

    def eval_preferences(self) -> list[Preference]:
        """Labelled pairs of held-out users on held-out questions (preference accuracy)."""
        return [p for p in self.preferences
                if p.user_id in self.eval_users and p.question_id in self.eval_questions]

    def eval_questions_of(self, user_id: str) -> dict[str, str]:
        """Held-out question id -> question text, for the questions this user has rows on."""
        return {p.question_id: p.question for p in self._by_user()[user_id]
                if p.question_id in self.eval_questions}

    def queries(self, *, shots: int | None = None, seed: int = 0,
                limit: int | None = None) -> list[Query]:
        """Held-out users x held-out questions, each with N seeded shots of that user.

        ``limit`` keeps a seeded random sample of that many queries, spread over users.
        """
        n = self.default_shots if shots is None else shots
        queries = []
        for user_id in sorted(self.eval_users):
            pool = self.shot_pool(user_id)
            for qid, question in sorted(self.eval_questions_of(user_id).items()):
                picked = sample_shots(pool, n, seed=seed, user_id=user_id, question_id=qid,
                                      exclude_question_ids=self.eval_questions)
                queries.append(Query(self.users[user_id], picked, question, question_id=qid))
        if limit is not None and limit < len(queries):
            order = list(range(len(queries)))
            rng_for("queries", self.domain, seed).shuffle(order)
            queries = [queries[i] for i in sorted(order[:limit])]
        return queries

    @cached_property
    def _by_user_index(self) -> dict[str, list[Preference]]:
        index: dict[str, list[Preference]] = defaultdict(list)
        for p in self.preferences:
            index[p.user_id].append(p)
        return dict(index)

    def _by_user(self) -> dict[str, list[Preference]]:
        return self._by_user_index
