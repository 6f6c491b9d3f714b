"""Seeded shot sampling and the training windows of one user."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

import fspo_bench
from fspo_bench.records import Preference
from fspo_bench.sampling import rng_for, sample_shots, training_windows


def prefs(n: int, user: str = "u1") -> list[Preference]:
    return [Preference(user, f"question {i}", f"yes {i}", f"no {i}", f"q{i}") for i in range(n)]


def ids(rows: list[Preference]) -> list[str]:
    return [r.question_id for r in rows]


def test_rng_for_is_stable_across_processes():
    code = "from fspo_bench.sampling import rng_for; print(rng_for('a', 1, None).random())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PYTHONPATH": str(Path(fspo_bench.__file__).parents[1])},
    )
    assert float(out.stdout) == rng_for("a", 1, None).random()
    assert rng_for("a", 1).random() != rng_for("a", 2).random()
    assert isinstance(rng_for(), random.Random)


def test_sample_shots_is_deterministic_and_order_independent():
    rows = prefs(20)
    first = sample_shots(rows, 4, seed=0, user_id="u1", question_id="q3")
    assert sample_shots(rows, 4, seed=0, user_id="u1", question_id="q3") == first
    assert sample_shots(rows[::-1], 4, seed=0, user_id="u1", question_id="q3") == first
    assert len(first) == 4 and len(set(ids(first))) == 4


def test_sample_shots_varies_with_seed_and_question():
    rows = prefs(30)
    draws = {
        tuple(ids(sample_shots(rows, 4, seed=s, user_id="u1", question_id="q0"))) for s in range(5)
    }
    assert len(draws) == 5
    a = sample_shots(rows, 4, seed=0, user_id="u1", question_id="q0")
    b = sample_shots(rows, 4, seed=0, user_id="u1", question_id="q1")
    assert ids(a) != ids(b)


def test_sample_shots_excludes_target_and_excluded_questions():
    rows = prefs(6)
    for seed in range(20):
        shots = sample_shots(
            rows, 3, seed=seed, user_id="u1", question_id="q0", exclude_question_ids={"q1", "q2"}
        )
        assert sorted(ids(shots)) == ["q3", "q4", "q5"]


def test_sample_shots_errors():
    rows = prefs(4)
    with pytest.raises(ValueError, match="3 shots needed but only 2"):
        sample_shots(rows, 3, seed=0, user_id="u1", question_id="q0", exclude_question_ids=["q1"])
    with pytest.raises(ValueError, match="one user"):
        sample_shots(rows + prefs(1, "u2"), 1, seed=0, user_id="u1", question_id="q0")
    with pytest.raises(ValueError, match="one user"):
        sample_shots(rows, 1, seed=0, user_id="u2", question_id="q0")
    assert sample_shots(rows, 0, seed=0, user_id="u1", question_id="q0") == []


@pytest.mark.parametrize("n_rows,n_shots", [(10, 4), (23, 4), (17, 8), (9, 8)])
def test_windows_cover_each_pass_without_overlap(n_rows, n_shots):
    rows = prefs(n_rows)
    per_pass = n_rows // (n_shots + 1)
    windows = training_windows(rows, n_shots)
    assert len(windows) == per_pass * 2 * (n_shots + 1)
    for p in range(2 * (n_shots + 1)):
        chunk = windows[p * per_pass : (p + 1) * per_pass]
        used = [r.question_id for shots, target in chunk for r in [*shots, target]]
        assert len(used) == len(set(used)) == per_pass * (n_shots + 1)
    for shots, _ in windows:
        assert len(shots) == n_shots


def test_windows_passes_and_seed():
    rows = prefs(12)
    assert len(training_windows(rows, 3, passes=1)) == 3
    assert len(training_windows(rows, 3, passes=5)) == 15
    assert training_windows(rows, 3, passes=0) == []
    first = training_windows(rows, 3, seed=0)
    assert training_windows(rows[::-1], 3, seed=0) == first
    assert training_windows(rows, 3, seed=1) != first
    # Passes are shuffled independently.
    assert first[:3] != first[3:6]


def test_too_few_rows_give_no_windows():
    assert training_windows(prefs(4), 4) == []
    assert len(training_windows(prefs(5), 4, passes=1)) == 1


def test_target_question_never_among_its_shots():
    # Every question appears twice: many shuffled windows would pair a target with its twin.
    twins = [Preference("u1", r.question, r.rejected, r.chosen, r.question_id) for r in prefs(6)]
    rows = prefs(6) + twins
    windows = training_windows(rows, 2, passes=50)
    assert windows
    assert len(windows) < 50 * 4
    for shots, target in windows:
        assert target.question_id not in ids(shots)


def test_window_errors():
    with pytest.raises(ValueError, match="one user"):
        training_windows(prefs(3) + prefs(3, "u2"), 1)
    with pytest.raises(ValueError):
        training_windows(prefs(3), -1)
