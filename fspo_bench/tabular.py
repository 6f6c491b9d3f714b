"""Domains whose data are rows in fixed columns: the layout of the official Hub datasets.

A subclass says which columns it needs and how one row becomes a user and a preference; this
class reads the rows (shipped, Hub or local file), validates them, drops what is bad with one
line per problem (or fails with ``strict``), and splits the result.
"""

from __future__ import annotations

import reprlib
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable
from typing import Any, ClassVar

from fspo_bench.datafiles import MAX_TEXT_CHARS, DataError, read_hub_rows, read_rows
from fspo_bench.dataset import (
    DomainData,
    Problem,
    held_out_quarter,
    question_id,
    short_shot_pools,
    user_conflicts,
)
from fspo_bench.domain import Domain
from fspo_bench.hashing import stable_hash
from fspo_bench.records import Preference, User, Verdict

MAX_PROBLEMS_SHOWN = 20
#: Deepest nesting of lists and objects a row's value may have (rows are flat: 2 levels suffice).
MAX_DEPTH = 16


class RowError(ValueError):
    """A row whose content is wrong; ``column`` names where."""

    def __init__(self, column: str | None, message: str):
        super().__init__(message)
        self.column = column


def parse_label(value: Any, column: str = "label") -> int:
    """The official label: 0 means the first response (``response_x``) is preferred."""
    if isinstance(value, bool) or str(value).strip() not in ("0", "1", "0.0", "1.0"):
        raise RowError(column, f"label must be 0 or 1, got {reprlib.repr(value)}")
    return int(float(value))


class TabularDomain(Domain):
    """A domain read from rows in ``columns``; subclasses implement the conversion."""

    columns: ClassVar[tuple[str, ...]] = ()
    text_columns: ClassVar[tuple[str, ...]] = ()
    hub_split: ClassVar[str] = "train"
    #: The column a user id is read from. When set, ids read from values of different types
    #: that become one user (``1`` and ``"1"``) are a problem; None: not checked.
    user_column: ClassVar[str | None] = None

    @abstractmethod
    def builtin_rows(self) -> Iterable[dict[str, Any]]:
        """The shipped data, as rows in :attr:`columns`."""

    @abstractmethod
    def convert(self, row: dict[str, Any]) -> tuple[User, Preference]:
        """One valid row as its user and preference; raise :class:`RowError` for bad content."""

    def split_users(self, users: dict[str, User]) -> tuple[frozenset[str], frozenset[str]]:
        """(train users, evaluation users). Default: every user in both; the held-out
        questions are what keeps evaluation apart from training."""
        return frozenset(users), frozenset(users)

    def oracle(self, user: User, a: Any, b: Any) -> Verdict | None:
        """Which response ``user`` prefers, from what each was written for (None: undecided)."""
        raise NotImplementedError(f"domain {self.name!r} has no exact oracle")

    def load(self, data: str = "builtin", *, strict: bool = False,
             shots: int | None = None) -> DomainData:
        """Read, validate and split the rows. Bad rows are skipped, and so are the users that
        cannot be used as a whole (named inconsistently, too few rows for the shots, no shot pool
        for a held-out question); each is one :class:`Problem`, all fatal with ``strict``."""
        source, rows = self._rows(data)
        n_shots = self.default_shots if shots is None else shots
        problems: list[Problem] = []
        users: dict[str, User] = {}
        preferences: list[Preference] = []
        first_row: dict[str, int] = {}
        named: list[tuple[int, User, Any]] = []
        seen: set[tuple[str, str, str, str]] = set()
        rows_read = 0
        for number, row in rows:
            rows_read = number
            try:
                user, preference = self._check_and_convert(row)
            except RowError as exc:
                problems.append(Problem(source, number, exc.column, str(exc)))
                continue
            key = (preference.user_id, preference.question, preference.chosen, preference.rejected)
            if key in seen:
                problems.append(Problem(source, number, None, "duplicate pair for this user"))
                continue
            seen.add(key)
            users.setdefault(user.id, user)
            first_row.setdefault(user.id, number)
            named.append((number, user, row.get(self.user_column) if self.user_column else None))
            preferences.append(preference)
        conflicts = user_conflicts(source, named)
        problems += conflicts.values()
        counts = Counter(p.user_id for p in preferences if p.user_id not in conflicts)
        too_few = {u for u, n in counts.items() if n < n_shots + 1}
        for user_id in sorted(too_few):
            problems.append(Problem(source, first_row[user_id], None,
                                    f"user {user_id!r} has {counts[user_id]} rows; {n_shots} shots "
                                    f"need at least {n_shots + 1} (the shots and a target)"))
        dropped = set(conflicts) | too_few
        preferences = [p for p in preferences if p.user_id not in dropped]
        users = {u: users[u] for u in sorted(users) if u not in dropped}
        train_users, eval_users = self.split_users(users)
        eval_questions = held_out_quarter(self.name, "question",
                                          (p.question_id for p in preferences))
        short = short_shot_pools(preferences, eval_users, eval_questions, n_shots)
        for user_id, have in short.items():
            problems.append(Problem(source, first_row[user_id], None,
                                    f"user {user_id!r} has {have} rows outside the held-out "
                                    f"questions; {n_shots} shots need {n_shots}"))
        if strict and problems:
            raise DataError(_summary(problems))
        preferences = [p for p in preferences if p.user_id not in short]
        if not preferences:
            raise DataError(f"{source}: no usable rows" + (f"\n{_summary(problems)}" if problems
                                                           else ""))
        return DomainData(
            domain=self.name,
            source=source,
            users={u: user for u, user in users.items() if u not in short},
            preferences=preferences,
            train_users=train_users - short.keys(),
            eval_users=eval_users - short.keys(),
            eval_questions=eval_questions,
            default_shots=n_shots,
            problems=problems,
            rows_read=rows_read,
        )

    def _rows(self, data: str) -> tuple[str, Iterable[tuple[int, dict[str, Any]]]]:
        if data == "builtin":
            return f"builtin:{self.name}", enumerate(self.builtin_rows(), start=1)
        if data == "hub":
            if not self.hub_id:
                raise DataError(f"domain {self.name!r} has no Hub dataset")
            return f"hub:{self.hub_id}", read_hub_rows(self.hub_id, self.hub_split)
        return data, read_rows(data)

    def _check_and_convert(self, row: dict[str, Any]) -> tuple[User, Preference]:
        missing = [c for c in self.columns if c not in row]
        if missing:
            raise RowError(missing[0], f"missing column(s) {', '.join(missing)}; "
                                       f"expected {', '.join(self.columns)}")
        for column, value in row.items():
            _check_value(column, value)
        for column in self.text_columns:
            value = row[column]
            if not isinstance(value, str):
                raise RowError(column, f"expected text, got {type(value).__name__}")
            if not value.strip():
                raise RowError(column, "empty text")
            if len(value) > MAX_TEXT_CHARS:
                raise RowError(column, f"text of {len(value):,} characters; at most "
                                       f"{MAX_TEXT_CHARS:,} are allowed")
        return self.convert(row)


def _check_value(column: str, value: Any) -> None:
    """RowError for a value nested deeper than :data:`MAX_DEPTH` or text that is not valid
    Unicode (a lone surrogate, which a JSON escape can make and no file can store)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise RowError(column, f"text with a lone surrogate U+{ord(item[exc.start]):04X} "
                                       f"at character {exc.start:,}") from None
        elif isinstance(item, (dict, list, tuple)):
            if depth == MAX_DEPTH:
                raise RowError(column, f"a value nested deeper than {MAX_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _summary(problems: list[Problem]) -> str:
    lines = [str(p) for p in problems[:MAX_PROBLEMS_SHOWN]]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more problems")
    return "\n".join(lines)


PAIR_COLUMNS = ("prompt", "response_x", "response_y", "label", "level_x", "level_y",
                "scorer_level")


class PairColumnsDomain(TabularDomain):
    """The layout of the official Reviews and ELIX datasets.

    Columns ``prompt, response_x, response_y, label, level_x, level_y, scorer_level``: the user
    is ``scorer_level``, ``level_x``/``level_y`` say what each response was written for, and
    ``label == 0`` means ``response_x`` is preferred.
    """

    columns = PAIR_COLUMNS
    text_columns = ("prompt", "response_x", "response_y", "scorer_level")
    user_column = "scorer_level"

    @abstractmethod
    def user(self, scorer_level: str) -> User:
        """The user a ``scorer_level`` value stands for."""

    def pair_meta(self, user: User, chosen_attr: Any, rejected_attr: Any) -> dict[str, Any]:
        return {"chosen_attr": chosen_attr, "rejected_attr": rejected_attr}

    def convert(self, row: dict[str, Any]) -> tuple[User, Preference]:
        label = parse_label(row["label"])
        user = self.user(row["scorer_level"].strip())
        x, y = (row["response_x"], row["level_x"]), (row["response_y"], row["level_y"])
        (chosen, chosen_attr), (rejected, rejected_attr) = (x, y) if label == 0 else (y, x)
        question = row["prompt"].strip()
        return user, Preference(user.id, question, chosen, rejected, question_id(question),
                                self.pair_meta(user, chosen_attr, rejected_attr))

    def pair_rows(self, items: Iterable[tuple[str, list[tuple[Any, str]]]],
                  users: Iterable[User]) -> list[dict[str, Any]]:
        """Rows in the official columns from (question, [(attribute, response), ...]) items.

        Every pair of responses to a question becomes one row per user whose preference the
        :meth:`oracle` rule decides; undecided pairs are left out. Which response is ``x`` is
        decided by a hash, so labels 0 and 1 are balanced and stable.
        """
        return [
            {"prompt": question, "response_x": x, "response_y": y, "label": label,
             "level_x": ax, "level_y": ay, "scorer_level": user.id}
            for question, user, (ax, x), (ay, y), label in labelled_pairs(items, users, self.oracle)
        ]


def labelled_pairs(items: Iterable[tuple[str, list[tuple[Any, str]]]], users: Iterable[User],
                   oracle: Any) -> list[tuple[str, User, tuple[Any, str], tuple[Any, str], int]]:
    """(question, user, x, y, label) for every response pair the oracle decides for a user."""
    users = list(users)
    out = []
    for question, responses in items:
        for i, first in enumerate(responses):
            for second in responses[i + 1:]:
                for user in users:
                    verdict = oracle(user, first[0], second[0])
                    if verdict not in ("a", "b"):
                        continue
                    swap = int(stable_hash([question, first[0], second[0], user.id]), 16) % 2
                    x, y = (second, first) if swap else (first, second)
                    preferred = first if verdict == "a" else second
                    out.append((question, user, x, y, 0 if preferred is x else 1))
    return out
