"""Roleplay: 32 personas and 60 open-ended questions answered from ten stated views."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from fspo_bench import User, hookimpl
from fspo_bench.dataset import held_out_quarter, question_id
from fspo_bench.records import Preference
from fspo_bench.tabular import RowError, TabularDomain, labelled_pairs

VIEWS = ("budget", "luxury", "adventure", "safety", "eco", "social", "solitude", "tradition",
         "tech", "health")


def _data(name: str) -> Any:
    return json.loads(resources.files(__package__).joinpath(f"data/{name}").read_text("utf-8"))


class RoleplayDomain(TabularDomain):
    name = "roleplay"
    description = (
        "Roleplay: 32 personas with liked and disliked views, 60 recommendation questions each "
        "answered from six of ten views; a quarter of the personas are held out."
    )
    default_shots = 8
    hub_id = "sher222/persona-iterative-responses"
    columns = ("x", "yw", "yl", "level", "score_persona")
    text_columns = ("x", "yw", "yl")
    user_column = "level"

    def convert(self, row: dict[str, Any]) -> tuple[User, Preference]:
        persona = row["score_persona"]
        if isinstance(persona, str):
            try:
                persona = json.loads(persona)
            except json.JSONDecodeError:
                raise RowError("score_persona", "not a JSON object") from None
        if not isinstance(persona, dict) or not str(persona.get("persona_description", "")).strip():
            raise RowError("score_persona", "needs a non-empty persona_description")
        attributes = {k: list(persona[k]) for k in ("likes", "dislikes") if k in persona}
        user = User(str(row["level"]), persona["persona_description"].strip(), attributes)
        question = row["x"].strip()
        meta = {"chosen_attr": row.get("view_w"), "rejected_attr": row.get("view_l")}
        return user, Preference(user.id, question, row["yw"], row["yl"], question_id(question),
                                meta)

    def oracle(self, user: User, a: Any, b: Any) -> str | None:
        """+1 for a liked view, -1 for a disliked one, 0 otherwise; the higher score wins."""
        likes, dislikes = user.attributes.get("likes"), user.attributes.get("dislikes")
        if likes is None or dislikes is None or a not in VIEWS or b not in VIEWS:
            return None
        score_a, score_b = ((v in likes) - (v in dislikes) for v in (a, b))
        return None if score_a == score_b else ("a" if score_a > score_b else "b")

    def split_users(self, users: dict[str, User]) -> tuple[frozenset[str], frozenset[str]]:
        """A quarter of the personas (by hash of their id) are held out from training."""
        held = held_out_quarter(self.name, "user", users)
        return frozenset(users) - held, held

    def builtin_rows(self) -> list[dict[str, Any]]:
        personas = {p["id"]: p for p in _data("personas.json")}
        users = [User(p["id"], p["description"], {"likes": p["likes"], "dislikes": p["dislikes"]})
                 for p in personas.values()]
        items = [(q["question"], [(r["view"], r["text"]) for r in q["responses"]])
                 for q in _data("questions.json")]
        rows = []
        for question, user, x, y, label in labelled_pairs(items, users, self.oracle):
            (view_w, yw), (view_l, yl) = (x, y) if label == 0 else (y, x)
            persona = personas[user.id]
            rows.append({"x": question, "yw": yw, "yl": yl, "level": user.id,
                         "score_persona": {"persona_description": persona["description"],
                                           "likes": persona["likes"],
                                           "dislikes": persona["dislikes"]},
                         "view_w": view_w, "view_l": view_l})
        return rows


@hookimpl
def register_domains(register):
    register(RoleplayDomain)
