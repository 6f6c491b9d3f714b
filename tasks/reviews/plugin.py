"""Reviews: reviews of 48 movies, books and TV shows in four styles; a user prefers a style."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from fspo_bench import User, hookimpl
from fspo_bench.tabular import PairColumnsDomain

SENTIMENTS = ("positive", "negative")
LENGTHS = ("concise", "verbose")
STYLES = tuple(f"{s} {n}" for s in SENTIMENTS for n in LENGTHS)
TRAINED_USERS = SENTIMENTS + LENGTHS
INTERPOLATED_USERS = STYLES


def _words(value: Any) -> list[str]:
    return re.findall(r"[a-z]+", str(value).lower())


class ReviewsDomain(PairColumnsDomain):
    name = "reviews"
    description = (
        "Reviews: 48 works reviewed positive/negative x concise/verbose; 4 trained users (one "
        "trait) and 4 interpolated held-out users (two traits)."
    )
    default_shots = 8
    hub_id = "Asap7772/steered_reviews_full_autolabel_gpt4o_pref"

    def user(self, scorer_level: str) -> User:
        words = _words(scorer_level)
        attributes = {"sentiment": next((w for w in words if w in SENTIMENTS), None),
                      "length": next((w for w in words if w in LENGTHS), None)}
        traits = [v for v in attributes.values() if v]
        attributes["group"] = "interpolated" if len(traits) == 2 else "trained"
        description = f"This user prefers {' and '.join(traits) or scorer_level} reviews."
        return User(scorer_level, description, attributes)

    def oracle(self, user: User, a: Any, b: Any) -> str | None:
        """The response matching more of the user's traits wins; a tie is undecided."""
        traits = {user.attributes.get("sentiment"), user.attributes.get("length")} - {None}
        score_a, score_b = (len(traits & set(_words(level))) for level in (a, b))
        return None if score_a == score_b else ("a" if score_a > score_b else "b")

    def split_users(self, users: dict[str, User]) -> tuple[frozenset[str], frozenset[str]]:
        """As in the paper: train on the one-trait users; evaluate every user (the two-trait,
        interpolated users were never trained on), on held-out works."""
        trained = frozenset(u for u, user in users.items()
                            if not all(user.attributes.get(k) for k in ("sentiment", "length")))
        return trained, frozenset(users)

    def builtin_rows(self) -> list[dict[str, Any]]:
        text = resources.files(__package__).joinpath("data/items.json").read_text("utf-8")
        items = [(item["prompt"], [(style, item["responses"][style]) for style in STYLES])
                 for item in json.loads(text)]
        users = [self.user(u) for u in TRAINED_USERS + INTERPOLATED_USERS]
        return self.pair_rows(items, users)


@hookimpl
def register_domains(register):
    register(ReviewsDomain)
