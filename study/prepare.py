"""Generate a participant's comparisons from their stated preferences, in the background.

The participant becomes a ``User`` whose shots are their answers; every method of the study
answers the new questions through the project's own generation path (``fspo_bench.runner``:
method plugin, backend plugin, response cache), and each (method, reference) comparison of each
question becomes one blinded pair, its side and its place in the sequence seeded per participant.
One background thread per participant; generation itself is serialized, because backends are
not thread-safe, and the backend is loaded once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from fspo_bench.backend import Backend
from fspo_bench.cache import ResponseCache
from fspo_bench.records import Preference, Query, User
from fspo_bench.runner import StageCount, generate, make_backend, make_method, params_of
from fspo_bench.sampling import rng_for

from .config import StudyConfig
from .items import StudyItems
from .store import ShotAnswer, StudyStore, Task, participant_id

ROLE = "study"


def participant_user(key: str, shots: list[ShotAnswer]) -> tuple[User, list[Preference]]:
    """The participant as a ``User`` (described by their own choices, for LLM judges and the
    oracle-description method) and their answers as ``Preference`` shots."""
    user_id = participant_id(key)
    preferences = [Preference(user_id, s.question, s.chosen, s.rejected, s.question_id)
                   for s in shots]
    lines = [f"- Asked {s.question!r}, they preferred {s.chosen!r} over {s.rejected!r}."
             for s in shots]
    description = "A study participant described only by their stated preferences:\n" + "\n".join(
        lines)
    return User(user_id, description), preferences


def build_tasks(config: StudyConfig, key: str, texts: dict[tuple[str, str], str],
                questions: list[tuple[str, str]]) -> list[Task]:
    """One blinded pair per question and comparison: sides and order seeded per participant.
    ``texts`` maps (method, question_id) to the method's response."""
    pairs = []
    for qid, question in questions:
        for method, reference in config.comparisons:
            method_first = rng_for("study-side", key, qid, method, reference).random() < 0.5
            first, second = texts[(method, qid)], texts[(reference, qid)]
            a, b = (first, second) if method_first else (second, first)
            pairs.append((qid, question, method, reference, method_first, a, b))
    rng_for("study-order", key).shuffle(pairs)
    return [Task(i, *pair) for i, pair in enumerate(pairs)]


class Preparer:
    """Prepares participants' comparisons: ``start(key)`` in a thread, ``prepare(key)`` inline."""

    def __init__(self, config: StudyConfig, store: StudyStore, items: StudyItems,
                 cache: ResponseCache, log: Callable[[str], None] = lambda message: None):
        self.config, self.store, self.items, self.cache, self.log = (
            config, store, items, cache, log)
        self._generation_lock = threading.Lock()
        self._running: set[str] = set()
        self._running_lock = threading.Lock()
        self._backend: Backend | None = None

    def running(self, key: str) -> bool:
        with self._running_lock:
            return key in self._running

    def start(self, key: str) -> None:
        """Prepare in a background thread, unless that is already under way."""
        with self._running_lock:
            if key in self._running:
                return
            self._running.add(key)
        threading.Thread(target=self._run, args=(key,), daemon=True,
                         name=f"study-prepare-{participant_id(key)}").start()

    def _run(self, key: str) -> None:
        try:
            self.prepare(key)
        except Exception as exc:  # shown to the participant as "contact the researcher"
            self.store.set_error(key, f"{type(exc).__name__}: {exc}")
            self.log(f"preparing participant {participant_id(key)} failed: {exc}")
        finally:
            with self._running_lock:
                self._running.discard(key)

    def _backend_once(self) -> Backend:
        if self._backend is None:
            backend = make_backend(self.config.run_spec(self.config.methods[0]))
            backend.check()
            self._backend = backend
        return self._backend

    def prepare(self, key: str) -> None:
        """Generate every method's responses and store the participant's pairs."""
        user, shots = participant_user(key, self.store.shots(key))
        queries = [Query(user, shots, question, qid) for qid, question in self.items.questions]
        texts: dict[tuple[str, str], str] = {}
        with self._generation_lock:
            backend = self._backend_once()
            for name in self.config.methods:
                spec = self.config.run_spec(name)
                method = make_method(spec, name, self.config.domain)
                count = StageCount(f"study {name}")
                for g in generate(method, ROLE, self.config.domain, queries, backend,
                                  params_of(spec), self.cache, count, lambda *a, **k: None):
                    texts[(name, g.query.question_id)] = g.text
                self.log(f"participant {user.id}: {count}")
        self.store.set_error(key, None)
        self.store.add_tasks(key, build_tasks(self.config, key, texts, self.items.questions))
