"""The study database: tokens are validated and never stored, answers persist and resume."""

from __future__ import annotations

import pytest

from fspo_bench.study.store import ShotAnswer, StudyStore, token_key

from .study_fixtures import planted_task


@pytest.fixture
def store(tmp_path):
    store = StudyStore(tmp_path / "study.sqlite")
    yield store
    store.close()


def shot(idx: int, chosen: str = "yes") -> ShotAnswer:
    return ShotAnswer(idx, f"q{idx}", f"question {idx}?", chosen, "no", "chosen")


def test_an_invited_token_finds_its_participant_and_nothing_else_does(store):
    token = store.invite()
    participant = store.participant(token)
    assert participant is not None and participant.key == token_key(token)
    assert participant.consented is None and len(participant.csrf) >= 20
    assert store.participant(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    for bad in ("", "short", "x" * 200, "../../etc/passwd", token + "'; DROP TABLE x;--"):
        assert store.participant(bad) is None
    assert store.participant_keys() == [participant.key]


def test_the_database_keeps_token_hashes_never_tokens(tmp_path):
    store = StudyStore(tmp_path / "study.sqlite")
    tokens = [store.invite() for _ in range(3)]
    store.close()
    content = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert all(t.encode() not in content for t in tokens)
    assert all(token_key(t).encode() in content for t in tokens)
    assert len(set(tokens)) == 3


def test_answers_survive_a_restart_and_the_first_answer_is_kept(tmp_path):
    path = tmp_path / "study.sqlite"
    store = StudyStore(path)
    token = store.invite()
    key = store.participant(token).key
    store.consent(key)
    assert store.add_shot(key, shot(0, "first"))
    assert not store.add_shot(key, shot(0, "second"))
    store.close()

    store = StudyStore(path)  # resume: a fresh process opens the same file
    participant = store.participant(token)
    assert participant.consented is not None
    assert [s.chosen for s in store.shots(key)] == ["first"]
    store.add_tasks(key, [planted_task(0), planted_task(1)])
    store.add_tasks(key, [planted_task(0, text_a="other")])  # already stored: ignored
    assert [t.text_a for t in store.tasks(key)] == [planted_task().text_a] * 2
    assert store.rate(key, 1, "tie") and not store.rate(key, 1, "a")
    assert [t.winner for t in store.tasks(key)] == [None, "tie"]
    with pytest.raises(ValueError):
        store.rate(key, 0, "method")
    store.close()


def test_participants_are_kept_apart(store):
    one, two = (store.participant(store.invite()).key for _ in range(2))
    store.add_shot(one, shot(0))
    store.add_tasks(one, [planted_task(0)])
    assert store.shots(two) == [] and store.tasks(two) == []
    assert set(store.participant_keys()) == {one, two}
