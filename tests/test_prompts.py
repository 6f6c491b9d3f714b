"""Golden tests of the official FSPO prompt format, and the generation parser."""

from __future__ import annotations

import pytest

from fspo_bench.prompts import (
    ParsedGeneration,
    chat_messages,
    completion,
    few_shot_prompt,
    oracle_prompt,
    parse_generation,
)
from fspo_bench.records import Preference

SHOTS = [
    Preference("u1", "What is rain?", "Water falling from clouds.", "Precipitation.", "q1"),
    # Stray whitespace: the official loaders strip every text, so must the builder.
    Preference("u1", " Why is the sky blue?\n", "Light scatters.", " Rayleigh scattering. ", "q2"),
]

TWO_SHOT = (
    "# Example 1\n"
    "## Question \n"
    "What is rain?\n"
    "## Preferred Response \n"
    "Water falling from clouds.\n"
    "## Dispreferred Response \n"
    "Precipitation.\n"
    "\n"
    "# Example 2\n"
    "## Question \n"
    "Why is the sky blue?\n"
    "## Preferred Response \n"
    "Light scatters.\n"
    "## Dispreferred Response \n"
    "Rayleigh scattering.\n"
    "\n"
)


def test_two_shot_prompt_is_the_official_bytes():
    expected = (
        TWO_SHOT + "# Task\n"
        "Given the examples above, generate a preferred response to the following question.\n"
        "## Question \n"
        "How do plants eat?\n"
    )
    assert few_shot_prompt(SHOTS, "How do plants eat?") == expected


def test_zero_shot_prompt():
    expected = (
        "# Task\nGenerate a response to the following question.\n## Question \nHow do plants eat?\n"
    )
    assert few_shot_prompt([], "How do plants eat?") == expected
    # The official code tests for zero shots first: RAT does not change a zero-shot prompt.
    assert few_shot_prompt([], "How do plants eat?", rat=True) == expected


def test_rat_prompt():
    expected = (
        TWO_SHOT + "# Task\n"
        "Generate a user description based on the examples above. Then, generate a preferred "
        "response to the following question.\n"
        "## Question \n"
        "How do plants eat?\n"
    )
    assert few_shot_prompt(SHOTS, "How do plants eat?", rat=True) == expected


def test_completion_with_eos():
    assert completion(" Photosynthesis.\n", eos="<|eot_id|>") == (
        "## Preferred Response \nPhotosynthesis.\n<|eot_id|>"
    )
    assert completion("Photosynthesis.") == "## Preferred Response \nPhotosynthesis.\n"


def test_rat_completion():
    got = completion("Sunlight.", description="The user is a child.", eos="</s>")
    assert got == (
        "## User Description\nThe user is a child.\n## Preferred Response \nSunlight.\n</s>"
    )


def test_oracle_prompt_without_shots():
    expected = (
        "# User Description\n"
        "The user is a child.\n"
        "\n"
        "# Task\n"
        "Given the user description above, generate a preferred response to the following "
        "question.\n"
        "## Question \n"
        "How do plants eat?\n"
    )
    assert oracle_prompt("The user is a child.", "How do plants eat?") == expected


def test_oracle_prompt_with_shots():
    expected = (
        TWO_SHOT + "# User Description\n"
        "The user is a child.\n"
        "\n"
        "# Task\n"
        "Given the user description and the examples above, generate a preferred response to "
        "the following question.\n"
        "## Question \n"
        "How do plants eat?\n"
    )
    assert oracle_prompt("The user is a child.", "How do plants eat?", SHOTS) == expected


def test_chat_messages_hold_the_same_text():
    text = few_shot_prompt(SHOTS, "How do plants eat?")
    assert chat_messages(SHOTS, "How do plants eat?") == [{"role": "user", "content": text}]
    assert chat_messages(SHOTS, "How do plants eat?", system="Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": text},
    ]


@pytest.mark.parametrize("description", [None, "The user is a child."])
def test_round_trip(description):
    answer = "Plants make food.\n\n## Details\nThey use # light and water."
    text = completion(answer, description=description, eos="<|eot_id|>")
    parsed = parse_generation(text, stop=["<|eot_id|>"])
    assert parsed == ParsedGeneration(response=answer, description=description)


def test_stop_cuts_at_the_earliest_marker():
    text = "## Preferred Response \nYes.\n<|eot_id|>junk</s>more"
    assert parse_generation(text, stop=["</s>", "<|eot_id|>"]).response == "Yes."


def test_missing_headers_pass_through_stripped():
    assert parse_generation("  Just an answer.\n") == ParsedGeneration("Just an answer.", None)
    # Header without its trailing space, and the non-preference "## Response" header.
    assert parse_generation("## Preferred Response\nA.").response == "A."
    assert parse_generation("## Response \nA.").response == "A."


def test_preamble_before_the_header_is_dropped():
    assert parse_generation("Sure, here it is:\n## Preferred Response \nA.").response == "A."


@pytest.mark.parametrize(
    "continuation",
    [
        "## Dispreferred Response \nBad.",
        "\n# Example 3\n## Question \nQ?",
        "## Question \nAnother?",
        "# Task\nGiven ...",
        "## Preferred Response \nSecond answer.",
        "## User Description\nThe user is ...",
    ],
)
def test_continuation_is_cut(continuation):
    text = "## Preferred Response \nGood answer.\n" + continuation
    assert parse_generation(text) == ParsedGeneration("Good answer.", None)


def test_continuation_without_any_header_is_cut():
    assert parse_generation("Good answer.\n\n# Example 5\nmore").response == "Good answer."


def test_ordinary_markdown_headers_are_kept():
    text = "## Preferred Response \n# Examples\nOne.\n## Questions to ask\nTwo."
    assert parse_generation(text).response == "# Examples\nOne.\n## Questions to ask\nTwo."


def test_truncated_generations():
    assert parse_generation("## Preferred Response \nPlants make fo").response == "Plants make fo"
    # Truncated inside the header of a new section: the partial header line goes.
    assert parse_generation("## Preferred Response \nGood.\n## Dispref").response == "Good."
    assert parse_generation("## Preferred Resp") == ParsedGeneration("", None)
    # RAT truncated inside the description: the description so far, no answer.
    assert parse_generation("## User Description\nThe user lik") == ParsedGeneration(
        "", "The user lik"
    )
    assert parse_generation("## User Description\nA child.\n## Preferred Response \nSun") == (
        ParsedGeneration("Sun", "A child.")
    )
