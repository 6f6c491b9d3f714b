from __future__ import annotations

import json

import pytest

from fspo_bench.backend import GenerationParams, GenerationRequest
from fspo_bench.judge import Comparison
from fspo_bench.records import (
    DomainResult,
    Generation,
    Judgment,
    Preference,
    Query,
    RunResult,
    RunSpec,
    User,
)

USER = User("u1", "The user is a child.", {"level": "child", "tags": ["a", "b"]})
SHOT = Preference("u1", "Why is the sky blue?", "Light bounces.", "Rayleigh scattering.",
                  question_id="q1", meta={"chosen_level": "child"})
QUERY = Query(USER, [SHOT, SHOT], "Why do we dream?", question_id="q2")
SPEC = RunSpec(method="fewshot", domains=["elix"], model="smol", limit=3,
               generation={"max_new_tokens": 8})

RECORDS = [
    USER,
    SHOT,
    QUERY,
    Generation("fewshot", QUERY, "text", "## Preferred Response \ntext", {"tokens": 3}),
    Judgment("oracle", "u1", "Why?", "x", "y", "tie", "raw", True),
    Judgment("pairwise", "u1", "Why?", "x", "y", None, "garbage", False),
    SPEC,
    RunResult(SPEC, [DomainResult("elix", 0.5, 0.4, 0.6, 1, 1, 0, 0)], SPEC.config_hash(),
              "0.1.0", "2026-11-23T00:00:00Z"),
    GenerationRequest(GenerationParams(temperature=0.7, seed=3), messages=[{"role": "user",
                      "content": "hi"}], stop=["\n#"]),
    Comparison(USER, "Why?", "x", "y", {"a_level": "child"}),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_json_round_trip_is_lossless(record):
    text = record.to_json()
    again = type(record).from_json(text)
    assert again == record
    assert again.to_json() == text
    json.loads(text)  # plain JSON


def test_nested_records_come_back_as_records():
    again = Query.from_json(QUERY.to_json())
    assert isinstance(again.user, User)
    assert all(isinstance(s, Preference) for s in again.shots)


def test_unknown_field_is_an_error():
    data = USER.to_dict() | {"descripton": "typo"}
    with pytest.raises(ValueError, match="descripton"):
        User.from_dict(data)


def test_config_hash_changes_with_any_setting():
    assert SPEC.config_hash() == RunSpec.from_json(SPEC.to_json()).config_hash()
    assert SPEC.config_hash() != RunSpec(**{**SPEC.__dict__, "seed": 1}).config_hash()


def test_request_needs_exactly_one_of_prompt_and_messages():
    with pytest.raises(ValueError):
        GenerationRequest(GenerationParams())
    with pytest.raises(ValueError):
        GenerationRequest(GenerationParams(), prompt="p", messages=[])


def test_a_value_outside_its_literal_is_refused_naming_the_field():
    from fspo_bench.records import Judgment

    good = {"judge": "j", "user": "u", "question": "q", "a": "x", "b": "y", "winner": "a",
            "raw": "r", "valid": True, "meta": {}}
    assert Judgment.from_dict(good).winner == "a"
    with pytest.raises(ValueError, match=r"Judgment\.winner: 'maybe' is not one of"):
        Judgment.from_dict({**good, "winner": "maybe"})  # was scored as a loss before
