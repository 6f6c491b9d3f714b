"""The records that cross module boundaries, with a lossless JSON round-trip.

Every record is a dataclass. ``to_dict()`` gives plain JSON-able data; ``from_dict()`` rebuilds
the record, nested records included. Unknown keys are rejected so that a typo in a hand-written
file is an error rather than silently dropped data.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, Union

R = TypeVar("R", bound="Record")

Verdict = Literal["a", "b", "tie"]


class Record:
    """Mixin giving dataclasses a strict, nested JSON round-trip."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field]]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        kwargs = {}
        for name, value in data.items():
            try:
                kwargs[name] = _load(hints[name], value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{cls.__name__}.{name}: {exc}") from None
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls: type[R], text: str) -> R:
        return cls.from_dict(json.loads(text))


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _load(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _load(inner[0], value) if len(inner) == 1 else value
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict(value)
    if origin in (list, tuple) and args:
        return [_load(args[0], v) for v in value]
    if origin is dict and len(args) == 2:
        return {k: _load(args[1], v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class User(Record):
    """A person (real or synthetic) whose preferences we personalize to."""

    id: str
    description: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Preference(Record):
    """One labelled preference of one user: ``chosen`` is preferred over ``rejected``.

    ``meta`` carries what a domain knows about the two responses (for example the level or view
    each was written for), which the exact oracle judge and the RAT trainer use.
    """

    user_id: str
    question: str
    chosen: str
    rejected: str
    question_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Query(Record):
    """What a method personalizes from: a user, that user's N shots, and a new question.

    A method sees the user's description and attributes only when it declares that it needs
    them (``Method.sees_user_profile``, the ``oracle`` baseline); the others get the query
    :meth:`without_profile`. Judges always see the whole user.
    """

    user: User
    shots: list[Preference]
    question: str
    question_id: str = ""

    def without_profile(self) -> Query:
        """The same query with the user's description and attributes removed (the id stays),
        and the shots without the attributes their responses were written for."""
        return dataclasses.replace(self, user=User(self.user.id, ""),
                                   shots=[dataclasses.replace(s, meta={}) for s in self.shots])


#: The health of one answer (docs/runs.md, "Answer health"). ``empty`` and ``format_error`` are
#: failed answers: never shown to a judge, they lose their comparison in both orders.
AnswerStatus = Literal["ok", "empty", "format_error", "truncated"]
FAILED_STATUSES: frozenset[str] = frozenset({"empty", "format_error"})


@dataclass(frozen=True)
class Generation(Record):
    """A method's answer to a query. ``raw`` is the model's text before header stripping;
    ``status`` says whether the answer can be judged (:data:`AnswerStatus`)."""

    method: str
    query: Query
    text: str
    raw: str
    meta: dict[str, Any] = field(default_factory=dict)
    status: AnswerStatus = "ok"

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Generation:
        """Also reads records written before answer health: their status follows from the text
        (an empty answer is ``empty``, or ``format_error`` after a RAT description)."""
        if isinstance(data, dict) and "status" not in data:
            text, meta = data.get("text"), data.get("meta") or {}
            status = ("ok" if not isinstance(text, str) or text.strip()
                      else "format_error" if "description" in meta else "empty")
            data = {**data, "status": status}
        return super().from_dict(data)


@dataclass(frozen=True)
class Judgment(Record):
    """One pairwise verdict: did the judge prefer response ``a`` or ``b`` for ``user``?

    ``winner`` is None exactly when the verdict could not be parsed (``valid`` is False); an
    invalid judgment is reported, never scored.
    """

    judge: str
    user: str
    question: str
    a: str
    b: str
    winner: Verdict | None
    raw: str
    valid: bool
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec(Record):
    """Everything that determines a run's output; its hash names the run's configuration."""

    method: str
    domains: list[str]
    model: str
    backend: str = "hf"
    judge: str = "oracle"
    reference: str = "base"
    data: str = "builtin"
    shots: int | None = None
    limit: int | None = None
    seed: int = 0
    checkpoint: str | None = None
    generation: dict[str, Any] = field(default_factory=dict)
    backend_options: dict[str, Any] = field(default_factory=dict)
    judge_options: dict[str, Any] = field(default_factory=dict)
    #: Held-out pairs per domain scored for the method's preference accuracy (0: none).
    prefacc: int = 0
    #: Also score each pair with another user's shots (personalization specificity).
    specificity: bool = False

    def config_hash(self) -> str:
        from fspo_bench.hashing import stable_hash

        return stable_hash(self.to_dict())[:12]


@dataclass(frozen=True)
class DomainResult(Record):
    """Aggregate statistics of one method on one domain."""

    domain: str
    winrate: float | None
    ci_low: float | None
    ci_high: float | None
    n_wins: int
    n_losses: int
    n_ties: int
    n_invalid: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult(Record):
    """What a finished run reports: its spec, per-domain results and provenance."""

    spec: RunSpec
    results: list[DomainResult]
    config_hash: str
    package_version: str
    created: str
    extra: dict[str, Any] = field(default_factory=dict)
