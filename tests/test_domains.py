"""The three built-in domains: shipped data, the label rule, splits and their isolation."""

from __future__ import annotations

from collections import Counter

import pytest

from fspo_bench import plugins
from fspo_bench.dataset import DomainData

DOMAINS = ("elix", "reviews", "roleplay")


@pytest.fixture(scope="module")
def loaded() -> dict[str, DomainData]:
    return {name: plugins.get("domain", name)().load() for name in DOMAINS}


def test_shipped_data_is_large_enough(loaded):
    questions = {n: {p.question_id for p in d.preferences} for n, d in loaded.items()}
    assert len(questions["reviews"]) >= 40 and len(questions["elix"]) >= 60
    assert len(questions["roleplay"]) >= 60 and len(loaded["roleplay"].users) >= 30
    assert len(loaded["reviews"].users) == 8 and len(loaded["elix"].users) == 5
    for data in loaded.values():
        assert data.problems == [] and data.rows_read == len(data.preferences)


def test_every_label_follows_the_documented_rule(loaded):
    for name, data in loaded.items():
        domain = plugins.get("domain", name)()
        for p in data.preferences:
            verdict = domain.oracle(data.users[p.user_id], p.meta["chosen_attr"],
                                    p.meta["rejected_attr"])
            assert verdict == "a", (name, p.user_id, p.meta)


def test_default_shots_follow_the_paper(loaded):
    assert {n: d.default_shots for n, d in loaded.items()} == {
        "elix": 4, "reviews": 8, "roleplay": 8}


def test_labels_are_balanced_between_positions():
    rows = plugins.get("domain", "elix")().builtin_rows()
    share = Counter(r["label"] for r in rows)[0] / len(rows)
    assert 0.45 < share < 0.55


def test_no_held_out_question_in_any_shot_or_training_example(loaded):
    for data in loaded.values():
        assert data.eval_questions
        assert not {p.question_id for p in data.train_preferences()} & data.eval_questions
        for query in data.queries(seed=0):
            assert query.question_id in data.eval_questions
            assert len(query.shots) == data.default_shots
            assert all(s.user_id == query.user.id for s in query.shots)
            assert not {s.question_id for s in query.shots} & data.eval_questions


def test_user_splits_follow_the_paper(loaded):
    reviews = loaded["reviews"]
    assert reviews.train_users == {"positive", "negative", "concise", "verbose"}
    assert reviews.eval_users == set(reviews.users)
    assert {reviews.users[u].attributes["group"] for u in reviews.eval_users - reviews.train_users
            } == {"interpolated"}
    roleplay = loaded["roleplay"]
    assert not roleplay.train_users & roleplay.eval_users
    assert len(roleplay.eval_users) == 8
    assert not {p.user_id for p in roleplay.train_preferences()} & roleplay.eval_users


def test_splits_and_queries_are_deterministic(loaded):
    again = plugins.get("domain", "roleplay")().load()
    assert again.eval_users == loaded["roleplay"].eval_users
    assert again.eval_questions == loaded["roleplay"].eval_questions
    assert again.queries(seed=3, limit=10) == loaded["roleplay"].queries(seed=3, limit=10)
    assert again.queries(seed=3, limit=10) != again.queries(seed=4, limit=10)


def test_elix_pairs_are_easy_or_hard(loaded):
    elix = loaded["elix"]
    for p in elix.preferences:
        own = elix.users[p.user_id].attributes["level"]
        easy = own in (p.meta["chosen_attr"], p.meta["rejected_attr"])
        assert p.meta["difficulty"] == ("easy" if easy else "hard")
    assert Counter(p.meta["difficulty"] for p in elix.preferences).keys() == {"easy", "hard"}


def test_descriptions_follow_the_official_templates(loaded):
    assert loaded["elix"].users["expert"].description == "The user is an expert."
    assert loaded["reviews"].users["positive concise"].description == (
        "This user prefers positive and concise reviews.")
    assert loaded["reviews"].users["verbose"].description == "This user prefers verbose reviews."


def test_limit_keeps_a_seeded_subset(loaded):
    data = loaded["reviews"]
    everything = data.queries(seed=0)
    subset = data.queries(seed=0, limit=5)
    assert len(subset) == 5 and all(q in everything for q in subset)
