"""ELIX ("explain like I'm X"): explanations at five education levels; a user is a level."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from fspo_bench import User, hookimpl
from fspo_bench.tabular import PairColumnsDomain

LEVELS = ("child", "preteen", "teenager", "young adult", "expert")
ARTICLES = {"expert": "an"}


class ElixDomain(PairColumnsDomain):
    name = "elix"
    description = (
        "ELIX: explanations of 64 questions at five education levels (child .. expert); "
        "a user is a level and prefers the explanation closest to it."
    )
    default_shots = 4
    hub_id = "Asap7772/elix_generations_gpt4omini_pref"

    def user(self, scorer_level: str) -> User:
        level = scorer_level.lower()
        phrase = f"{ARTICLES.get(level, 'a')} {level}" if level in LEVELS else scorer_level
        return User(scorer_level, f"The user is {phrase}.", {"level": level})

    def oracle(self, user: User, a: Any, b: Any) -> str | None:
        """Closer level wins; equal distance (or an unknown level) is undecided."""
        levels = [user.attributes.get("level"), str(a).lower(), str(b).lower()]
        if any(level not in LEVELS for level in levels):
            return None
        own, da, db = (LEVELS.index(level) for level in levels)
        gap_a, gap_b = abs(da - own), abs(db - own)
        return None if gap_a == gap_b else ("a" if gap_a < gap_b else "b")

    def pair_meta(self, user: User, chosen_attr: Any, rejected_attr: Any) -> dict[str, Any]:
        own = user.attributes.get("level")
        easy = own in (str(chosen_attr).lower(), str(rejected_attr).lower())
        return {**super().pair_meta(user, chosen_attr, rejected_attr),
                "difficulty": "easy" if easy else "hard"}

    def builtin_rows(self) -> list[dict[str, Any]]:
        text = resources.files(__package__).joinpath("data/questions.json").read_text("utf-8")
        items = [(q["question"], [(level, q["responses"][level]) for level in LEVELS])
                 for q in json.loads(text)]
        return self.pair_rows(items, [self.user(level) for level in LEVELS])


@hookimpl
def register_domains(register):
    register(ElixDomain)
