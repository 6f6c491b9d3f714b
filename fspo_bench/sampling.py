"""Seeded shot sampling for inference, and the few-shot training windows of one user.

Every random choice here comes from :func:`rng_for`, a ``random.Random`` seeded from a SHA-256
of its arguments, so results are the same in every process, on every machine and under every
Python version (``hash()`` is salted per process and never used). Rows are put in a canonical
order before any random choice, so the order a loader returns them in does not matter either.

Training windows follow ``directpreferenceoptimization/preference_datasets.py`` of the official
code (``Asap7772/fewshot-preference-optimization``, commit 448f26cb; ``get_elix``,
``get_review``, ``get_roleplay``), which for ``2 * (num_shots + 1)`` passes shuffles each user's
rows and walks them in steps of ``num_shots + 2``::

    end = index_df + (num_shots + 2) # get N few-shot examples and 1 prompt
    if end > len(level_df):
        break
    rows = level_df.iloc[start:end]
    ... shots: rows 0 .. num_shots - 1; target: row num_shots ...
    index_df = end

Each window is therefore ``N + 2`` rows of which only ``N + 1`` are used: the last row of every
window is silently dropped (the comment says ``N + 1``; the step is ``N + 2``), and a user yields
``floor(len / (N + 2))`` windows a pass. Differences in :func:`training_windows`, by design:

- windows are ``N + 1`` rows, all used: ``floor(len / (N + 1))`` windows a pass;
- the shuffle is seeded per (seed, user, pass) by :func:`rng_for`; the official code draws from
  NumPy's global state (``DataFrame.sample(frac=1)``), so its windows cannot be reproduced here;
- a window whose target question also appears among its shots is skipped (the official code
  does not check);
- the official code runs one pass on the Roleplay test split; ``passes`` covers that.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from fspo_bench.hashing import stable_hash
from fspo_bench.records import Preference


def rng_for(*parts: object) -> random.Random:
    """A random generator seeded by the SHA-256 of the JSON of ``parts`` (JSON-able values)."""
    return random.Random(int(stable_hash(list(parts)), 16))


def _canonical(rows: Sequence[Preference]) -> list[Preference]:
    return sorted(rows, key=lambda r: (r.question_id, r.question, r.chosen, r.rejected))


def _single_user(rows: Sequence[Preference], user_id: str | None = None) -> str | None:
    users = sorted({r.user_id for r in rows} | ({user_id} if user_id is not None else set()))
    if len(users) > 1:
        raise ValueError(f"preferences of one user expected, got users {', '.join(users)}")
    return users[0] if users else None


def sample_shots(
    candidates: Sequence[Preference],
    n: int,
    *,
    seed: int,
    user_id: str,
    question_id: str,
    exclude_question_ids: Collection[str] = (),
) -> list[Preference]:
    """Draw ``n`` shots at random from one user's ``candidates`` for the target question.

    The draw depends only on ``seed``, ``user_id``, ``question_id`` and the set of eligible
    candidates. A candidate is never drawn when its ``question_id`` is the target's or is in
    ``exclude_question_ids`` (an empty question id matches nothing). Raises ValueError when a
    candidate belongs to another user, when ``n`` is negative, or when fewer than ``n``
    candidates remain.
    """
    if n < 0:
        raise ValueError(f"number of shots must be >= 0, got {n}")
    _single_user(candidates, user_id)
    banned = {question_id, *exclude_question_ids} - {""}
    eligible = [c for c in _canonical(candidates) if c.question_id not in banned]
    if len(eligible) < n:
        raise ValueError(
            f"user {user_id!r}, question {question_id!r}: {n} shots needed but only "
            f"{len(eligible)} of the user's {len(candidates)} preferences remain after "
            f"excluding the target question and {len(banned - {question_id})} other question(s)"
        )
    return rng_for("sample_shots", seed, user_id, question_id).sample(eligible, n)


def training_windows(
    rows: Sequence[Preference], n_shots: int, *, passes: int | None = None, seed: int = 0
) -> list[tuple[list[Preference], Preference]]:
    """The (shots, target) training examples of one user, official windowing with full windows.

    For each of ``passes`` passes (default ``2 * (n_shots + 1)``, as in the official code) the
    rows are shuffled (seeded by ``seed``, the user and the pass index) and cut into
    non-overlapping windows of ``n_shots + 1`` rows: the first ``n_shots`` are the shots, the
    last the target. A window whose target ``question_id`` (if not empty) appears among its
    shots is skipped. A user with fewer than ``n_shots + 1`` rows yields nothing. See the module
    docstring for how this differs from the official code.
    """
    if n_shots < 0:
        raise ValueError(f"number of shots must be >= 0, got {n_shots}")
    if passes is None:
        passes = 2 * (n_shots + 1)
    if passes < 0:
        raise ValueError(f"number of passes must be >= 0, got {passes}")
    user_id = _single_user(rows)
    size = n_shots + 1
    windows: list[tuple[list[Preference], Preference]] = []
    for index in range(passes):
        order = _canonical(rows)
        rng_for("training_windows", seed, user_id, index).shuffle(order)
        for start in range(0, len(order) - size + 1, size):
            *shots, target = order[start : start + size]
            if target.question_id and target.question_id in {s.question_id for s in shots}:
                continue
            windows.append((shots, target))
    return windows
