"""Training data builders: official prompt format and windowing, RAT descriptions, eval pairs."""

from __future__ import annotations

import pytest

from fspo_bench import plugins
from fspo_bench.prompts import completion, few_shot_prompt, oracle_prompt
from fspo_bench.records import Preference, User
from fspo_bench.sampling import training_windows
from fspo_bench.trainers.data import (
    METHOD_KINDS,
    SERVING_METHOD,
    build_examples,
    eval_examples,
    rejected_persona,
    windows,
)
from fspo_bench.trainers.synthetic import secret_word_data


@pytest.fixture(scope="module")
def domains():
    return {name: plugins.get("domain", name)().load() for name in ("elix", "reviews", "roleplay")}


def test_every_method_has_a_kind_and_a_serving_method():
    assert set(METHOD_KINDS) == set(SERVING_METHOD) == {"sft", "preft", "fspo", "fspo-rat",
                                                        "oracle"}
    assert SERVING_METHOD["preft"] == "preft" and SERVING_METHOD["fspo-rat"] == "fspo-rat"


def test_windows_are_the_official_windowing_per_user():
    data = secret_word_data(n_train_users=3, n_eval_users=1, n_questions=10)
    prefs = data.train_preferences()
    got = windows(prefs, 3, seed=5)
    expected = []
    for user in sorted({p.user_id for p in prefs}):
        expected += training_windows([p for p in prefs if p.user_id == user], 3, seed=5)
    assert got == expected
    assert all(len(shots) == 3 and all(s.user_id == t.user_id for s in shots)
               for shots, t in got)


def test_fspo_pairs_use_the_official_prompt_and_completions():
    data = secret_word_data(n_train_users=2, n_eval_users=1, n_questions=8)
    built = build_examples("fspo", data, n_shots=2, seed=1)
    items = windows(data.train_preferences(), 2, seed=1)
    assert built.counts["examples"] == len(items) == len(built.examples) > 0
    for example, (shots, target) in zip(built.examples, items, strict=True):
        assert example.kind == "pair"
        assert example.prompt == few_shot_prompt(shots, target.question)
        assert example.completions == (completion(target.chosen), completion(target.rejected))
        assert example.user_id == target.user_id
        assert target.question_id not in data.eval_questions
        assert all(s.question_id not in data.eval_questions for s in shots)


def test_sft_has_both_completions_and_preft_only_the_chosen():
    data = secret_word_data(n_train_users=2, n_eval_users=1, n_questions=8)
    sft = build_examples("sft", data, n_shots=2).examples
    preft = build_examples("preft", data, n_shots=2).examples
    pairs = build_examples("fspo", data, n_shots=2).examples
    assert [e.kind for e in sft + preft] == ["supervised"] * (len(sft) + len(preft))
    assert [e.completions for e in sft] == [p.completions for p in pairs]
    assert [e.completions for e in preft] == [p.completions[:1] for p in pairs]
    assert [e.prompt for e in sft] == [e.prompt for e in preft] == [p.prompt for p in pairs]


def test_oracle_pairs_put_the_true_description_in_the_prompt():
    data = secret_word_data(n_train_users=2, n_eval_users=1, n_questions=8)
    built = build_examples("oracle", data)
    assert len(built.examples) == len(data.train_preferences())
    for example in built.examples:
        user = data.users[example.user_id]
        assert example.prompt.startswith(oracle_prompt(user.description, "x").split("# Task")[0])
        assert "# Example" not in example.prompt


def test_rat_pairs_describe_the_true_user_and_the_rejected_persona():
    data = secret_word_data(n_train_users=4, n_eval_users=1, n_questions=8)
    built = build_examples("fspo-rat", data, n_shots=2)
    items = windows(data.train_preferences(), 2)
    assert len(built.examples) == len(items)
    for example, (shots, target) in zip(built.examples, items, strict=True):
        assert example.prompt == few_shot_prompt(shots, target.question, rat=True)
        chosen, rejected = example.completions
        user = data.users[target.user_id]
        assert chosen == completion(target.chosen, description=user.description)
        other = target.meta["rejected_attr"]
        assert rejected == completion(
            target.rejected, description=f"The user prefers answers ending with {other}.")
        assert chosen.startswith("## User Description\n")


def test_elix_rat_rule_is_the_rejected_level(domains):
    data = domains["elix"]
    for pref in data.train_preferences()[:200]:
        persona = rejected_persona("elix", data.users[pref.user_id], pref, data.users)
        assert persona.attributes["level"] == pref.meta["rejected_attr"]


def test_reviews_rat_rule_is_a_single_trait_user_on_the_users_dimension(domains):
    data = domains["reviews"]
    train = {u: data.users[u] for u in data.train_users}
    for pref in data.train_preferences():
        user = data.users[pref.user_id]
        persona = rejected_persona("reviews", user, pref, train)
        assert persona is not None and persona.id != user.id
        trait = persona.attributes["sentiment"] or persona.attributes["length"]
        assert trait in pref.meta["rejected_attr"] and trait not in pref.meta["chosen_attr"]
    users = data.users
    pref = Preference("positive", "q", "a", "b", "", {"chosen_attr": "positive concise",
                                                       "rejected_attr": "negative verbose"})
    assert rejected_persona("reviews", users["positive"], pref, train).id == "negative"
    assert rejected_persona("reviews", users["concise"], pref, train).id == "verbose"


def test_roleplay_rat_rule_is_a_persona_who_likes_the_rejected_view(domains):
    data = domains["roleplay"]
    train = {u: data.users[u] for u in data.train_users}
    for pref in data.train_preferences()[:300]:
        user = data.users[pref.user_id]
        persona = rejected_persona("roleplay", user, pref, train)
        assert persona is not None and persona.id != user.id and persona.id in train
        assert pref.meta["rejected_attr"] in persona.attributes["likes"]
        assert pref.meta["chosen_attr"] not in persona.attributes["likes"]


def test_rat_pairs_without_a_rejected_attribute_are_counted_and_skipped():
    data = secret_word_data(n_train_users=2, n_eval_users=1, n_questions=8)
    data.preferences = [Preference(p.user_id, p.question, p.chosen, p.rejected, p.question_id,
                                   {} if i % 2 else p.meta)
                        for i, p in enumerate(data.preferences)]
    built = build_examples("fspo-rat", data, n_shots=2)
    skipped = built.counts["skipped_no_rejected_description"]
    assert skipped > 0 and len(built.examples) + skipped == built.counts["windows"]


def test_generic_rat_rule_matches_an_attribute_value():
    users = {"a": User("a", "likes red", {"color": "red"}),
             "b": User("b", "likes blue", {"color": "blue"})}
    pref = Preference("a", "q", "x", "y", "", {"chosen_attr": "red", "rejected_attr": "Blue"})
    assert rejected_persona("other-domain", users["a"], pref, users).id == "b"
    assert rejected_persona("other-domain", users["a"], Preference("a", "q", "x", "y"),
                            users) is None


def test_eval_pairs_are_held_out_users_and_questions_with_their_own_shots():
    data = secret_word_data(n_train_users=4, n_eval_users=2, n_questions=12)
    built = eval_examples("fspo", data, n_shots=3, seed=0)
    assert built.examples and len(built.examples) == len(data.eval_preferences())
    for example in built.examples:
        assert example.user_id in data.eval_users
        assert example.question_id in data.eval_questions
        assert example.prompt.count("# Example") == 3
    assert len(eval_examples("fspo", data, n_shots=3, limit=5).examples) == 5
    rat = eval_examples("fspo-rat", data, n_shots=3).examples
    assert all(e.completions[0].startswith("## User Description\n") for e in rat)


def test_data_hash_names_the_examples():
    data = secret_word_data(n_train_users=2, n_eval_users=1, n_questions=8)
    a = build_examples("fspo", data, n_shots=2, seed=0)
    assert a.data_hash() == build_examples("fspo", data, n_shots=2, seed=0).data_hash()
    assert a.data_hash() != build_examples("fspo", data, n_shots=2, seed=1).data_hash()
