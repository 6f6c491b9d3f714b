"""Preparing a participant's pairs: blinded sides, generation through the response cache, and
failures shown to the participant with a way to retry."""

from __future__ import annotations

import re
import time

import pytest

from fspo_bench.cache import ResponseCache
from fspo_bench.errors import FspoBenchError
from fspo_bench.study.config import check_study, parse_study
from fspo_bench.study.prepare import Preparer, build_tasks, participant_user
from fspo_bench.study.store import ShotAnswer, StudyStore

from .study_fixtures import ITEMS, StudyApp, TestClient, study_dict

QUESTIONS = [(f"n{i}", f"question {i}?") for i in range(12)]


def test_pairs_show_each_method_on_a_seeded_side_and_in_a_seeded_order(tmp_path):
    config = parse_study(study_dict(comparisons=["fspo vs base", "fspo vs fewshot"]), tmp_path)
    texts = {(m, qid): f"{m} on {qid}" for m in config.methods for qid, _ in QUESTIONS}
    tasks = build_tasks(config, "key-1", texts, QUESTIONS)
    assert len(tasks) == 24 and [t.idx for t in tasks] == list(range(24))
    assert {(t.question_id, t.reference) for t in tasks} == {
        (qid, ref) for qid, _ in QUESTIONS for ref in ("base", "fewshot")}
    for t in tasks:
        method_text, reference_text = texts[(t.method, t.question_id)], texts[
            (t.reference, t.question_id)]
        assert (t.text_a, t.text_b) == ((method_text, reference_text) if t.method_first
                                        else (reference_text, method_text))
    assert 0 < sum(t.method_first for t in tasks) < 24  # both sides occur
    assert build_tasks(config, "key-1", texts, QUESTIONS) == tasks
    assert build_tasks(config, "key-2", texts, QUESTIONS) != tasks


def test_the_participant_becomes_a_user_described_by_their_choices():
    shots = [ShotAnswer(0, "q1", "Where to?", "The mountains.", "The beach.", "chosen")]
    user, preferences = participant_user("ab" * 32, shots)
    assert user.id == "ab" * 8
    assert "'The mountains.' over 'The beach.'" in user.description
    assert [(p.user_id, p.question_id, p.chosen, p.rejected) for p in preferences] == [
        (user.id, "q1", "The mountains.", "The beach.")]


def test_a_study_naming_an_unknown_method_or_a_checkpointless_method_fails_early(tmp_path):
    with pytest.raises(FspoBenchError, match="unknown method 'nope'"):
        check_study(parse_study(study_dict(comparisons=["nope vs base"]), tmp_path))
    with pytest.raises(FspoBenchError, match="needs a trained checkpoint"):
        check_study(parse_study(study_dict(comparisons=["preft vs base"]), tmp_path))
    check_study(parse_study(study_dict(comparisons=["preft vs base"],
                                       checkpoints={"preft": "ckpt"}), tmp_path))


def answer_shots(store: StudyStore, key: str) -> None:
    store.consent(key)
    for i, item in enumerate(ITEMS.shots):
        store.add_shot(key, ShotAnswer(i, item.question_id, item.question, *item.responses,
                                       "chosen"))


def test_generation_goes_through_the_cache_and_is_shared_by_identical_answers(
        tiny_model, tmp_path):
    config = parse_study(study_dict(model=str(tiny_model), comparisons=["fewshot vs base"],
                                    generation={"max_new_tokens": 6}), tmp_path)
    store = StudyStore(config.database)
    logs: list[str] = []
    with ResponseCache(config.cache) as cache:
        preparer = Preparer(config, store, ITEMS, cache, log=logs.append)
        keys = [store.participant(store.invite()).key for _ in range(2)]
        for key in keys:
            answer_shots(store, key)
            preparer.prepare(key)
        assert len(cache) == 2  # one question, two methods; the second participant hit both
    # Prompts hold the answers, never the participant: identical answers, identical requests.
    assert [m for m in logs if "new 0" in m] == [
        f"participant {keys[1][:16]}: study fewshot: cached 1 / new 0",
        f"participant {keys[1][:16]}: study base: cached 1 / new 0"]
    for key in keys:
        (task,) = store.tasks(key)
        assert (task.method, task.reference, task.question_id) == ("fewshot", "base", "n1")
    store.close()


def test_a_failed_preparation_is_shown_and_can_be_retried(tmp_path):
    config = parse_study(study_dict(comparisons=["fewshot vs base"],
                                    backend_options={"no_such_option": 1}), tmp_path)
    store = StudyStore(config.database)
    with ResponseCache(config.cache) as cache:
        preparer = Preparer(config, store, ITEMS, cache)
        token = store.invite()
        key = store.participant(token).key
        answer_shots(store, key)
        preparer.start(key)
        for _ in range(200):
            if not preparer.running(key):
                break
            time.sleep(0.05)
        assert "unknown option(s) for backend 'hf'" in store.participant(token).error
        with TestClient(StudyApp(config, store, ITEMS, preparer).app) as client:
            page = client.get(f"/s/{token}").text
            assert "could not prepare" in page and "no_such_option" not in page
            csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
            client.post(f"/s/{token}", data={"csrf": csrf, "step": "error"},
                        follow_redirects=False)
            assert store.participant(token).error is None
    store.close()
