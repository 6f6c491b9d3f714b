"""Training examples in the official FSPO prompt format, from a domain's train split.

Every builder starts from :meth:`fspo_bench.dataset.DomainData.train_preferences` (train users,
questions that are not held out) and cuts each user's rows into (shots, target) windows with
:func:`fspo_bench.sampling.training_windows` (the official windowing: ``2 (N + 1)`` seeded
passes, non-overlapping windows of ``N + 1`` rows of one user; see that module for how it differs
from the official code). Prompts and completions come from :mod:`fspo_bench.prompts`, byte for
byte the official format. Completions are text without the EOS: the EOS is appended as a token
id after tokenization, as the official code does (:func:`fspo_bench.trainers.tokens.encode`).

What each training method sees, per window ``(shots, target)`` of one user:

``sft`` (the official stage 1)
    the few-shot prompt, and as two supervised targets both completions of the target pair
    (the official loaders put ``[chosen, rejected]`` into ``sft_target``).
``preft`` (few-shot Pref-FT)
    the few-shot prompt and the preferred completion (supervised).
``fspo``
    the few-shot prompt, chosen completion vs rejected completion (a preference pair).
``fspo-rat``
    the RAT prompt; chosen = ``## User Description`` with the true user description, then the
    preferred response; rejected = the description of the persona the rejected response was
    written for (:func:`rejected_description`), then the rejected response.
``oracle``
    the oracle-description prompt (:func:`fspo_bench.prompts.oracle_prompt`, the true
    description and no shots, as the ``oracle`` method prompts), chosen vs rejected.

Nothing here imports torch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fspo_bench.dataset import DomainData
from fspo_bench.hashing import stable_hash
from fspo_bench.prompts import completion, few_shot_prompt, oracle_prompt
from fspo_bench.records import Preference, User
from fspo_bench.sampling import rng_for, sample_shots, training_windows

#: Training methods and the kind of examples each trains on.
METHOD_KINDS: dict[str, str] = {
    "sft": "supervised",
    "preft": "supervised",
    "fspo": "pair",
    "fspo-rat": "pair",
    "oracle": "pair",
}

#: The evaluation method (``fspo-bench run --method ...``) that serves a trained checkpoint.
SERVING_METHOD: dict[str, str] = {
    "sft": "fewshot",
    "preft": "preft",
    "fspo": "fspo",
    "fspo-rat": "fspo-rat",
    "oracle": "oracle",
}


@dataclass(frozen=True)
class Example:
    """One training example: a prompt and its completions (text, without the EOS).

    ``kind == "pair"``: ``completions == (chosen, rejected)``. ``kind == "supervised"``: every
    completion is a target of the supervised loss.
    """

    prompt: str
    completions: tuple[str, ...]
    kind: str
    user_id: str = ""
    question_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "completions": list(self.completions), "kind": self.kind,
                "user_id": self.user_id, "question_id": self.question_id}


@dataclass
class BuiltExamples:
    """Examples and what was counted while building them."""

    examples: list[Example]
    counts: dict[str, int] = field(default_factory=dict)

    def data_hash(self) -> str:
        """SHA-256 over every example's text, in order: names the training data exactly."""
        return stable_hash([e.to_dict() for e in self.examples])


def windows(preferences: Iterable[Preference], n_shots: int, *, seed: int = 0,
            passes: int | None = None) -> list[tuple[list[Preference], Preference]]:
    """Every user's (shots, target) windows, users in sorted order (official windowing)."""
    by_user: dict[str, list[Preference]] = defaultdict(list)
    for p in preferences:
        by_user[p.user_id].append(p)
    out: list[tuple[list[Preference], Preference]] = []
    for user_id in sorted(by_user):
        out.extend(training_windows(by_user[user_id], n_shots, passes=passes, seed=seed))
    return out


# --------------------------------------------------------------------------- RAT descriptions


def _style_words(value: Any) -> list[str]:
    return [w for w in str(value).lower().replace("+", " ").split() if w]


def _elix_rule(user: User, pref: Preference, users: Mapping[str, User]) -> User | None:
    level = str(pref.meta.get("rejected_attr") or "").strip().lower()
    for candidate in users.values():
        if str(candidate.attributes.get("level", "")).lower() == level:
            return candidate
    return None


def _reviews_rule(user: User, pref: Preference, users: Mapping[str, User]) -> User | None:
    rejected = set(_style_words(pref.meta.get("rejected_attr")))
    chosen = set(_style_words(pref.meta.get("chosen_attr")))
    traits = rejected - chosen
    # The user's own dimension first: a positive user's rejected review is described by the
    # negative user, a concise user's by the verbose user.
    dimensions = [d for d in ("sentiment", "length") if user.attributes.get(d)]
    dimensions += [d for d in ("sentiment", "length") if d not in dimensions]
    for dimension in dimensions:
        for candidate in sorted(users.values(), key=lambda u: u.id):
            own = [candidate.attributes.get(d) for d in ("sentiment", "length")]
            single = sum(bool(v) for v in own) == 1
            value = candidate.attributes.get(dimension)
            if single and value and value in traits and candidate.id != user.id:
                return candidate
    return None


def _roleplay_rule(user: User, pref: Preference, users: Mapping[str, User]) -> User | None:
    view_l, view_w = pref.meta.get("rejected_attr"), pref.meta.get("chosen_attr")
    if not view_l:
        return None
    ranked = []
    for candidate in users.values():
        likes = candidate.attributes.get("likes") or []
        dislikes = candidate.attributes.get("dislikes") or []
        if candidate.id == user.id or view_l not in likes:
            continue
        score_w = (view_w in likes) - (view_w in dislikes)
        # prefer personas who prefer the rejected view strictly, most strongly first
        rank = (-(1 - score_w), stable_hash([pref.question_id, user.id, candidate.id]))
        ranked.append((rank, candidate))
    ranked.sort(key=lambda item: item[0])
    return ranked[0][1] if ranked else None


def _generic_rule(user: User, pref: Preference, users: Mapping[str, User]) -> User | None:
    wanted = str(pref.meta.get("rejected_attr") or "").strip().lower()
    if not wanted:
        return None
    for candidate in sorted(users.values(), key=lambda u: u.id):
        values = candidate.attributes.values()
        if candidate.id != user.id and any(str(v).strip().lower() == wanted for v in values):
            return candidate
    return None


RAT_RULES: dict[str, Callable[[User, Preference, Mapping[str, User]], User | None]] = {
    "elix": _elix_rule,
    "reviews": _reviews_rule,
    "roleplay": _roleplay_rule,
}


def rejected_persona(domain: str, user: User, pref: Preference,
                     users: Mapping[str, User]) -> User | None:
    """The persona the rejected response of ``pref`` was written for (RAT's rejected side).

    ``users`` are the candidates (the trainer passes the domain's train users). Rules, from
    ``pref.meta["rejected_attr"]`` (and ``chosen_attr``):

    - ``elix``: the user whose level is the rejected response's level.
    - ``reviews``: a single-trait user whose trait the rejected review has and the chosen one
      lacks, on the true user's own dimension first (a ``positive`` user's rejected
      ``negative verbose`` review gets the ``negative`` user's description).
    - ``roleplay``: a persona (not the true user) who likes the rejected response's view; those
      who prefer it to the chosen view most strongly first (dislike the chosen view, then
      indifferent to it, then like it); ties broken by a stable hash of question and users.
    - any other domain: a user (not the true user) with an attribute equal to ``rejected_attr``.

    None when there is no such persona (for example Hub Roleplay rows, which do not say which
    view a response was written for): the trainer skips and counts that pair.
    """
    rule = RAT_RULES.get(domain, _generic_rule)
    return rule(user, pref, users)


def rejected_description(domain: str, user: User, pref: Preference,
                         users: Mapping[str, User]) -> str | None:
    persona = rejected_persona(domain, user, pref, users)
    return None if persona is None else persona.description


# --------------------------------------------------------------------------- builders


def _train_users(data: DomainData) -> dict[str, User]:
    return {u: data.users[u] for u in sorted(data.train_users) if u in data.users}


def build_examples(method: str, data: DomainData, *, n_shots: int | None = None, seed: int = 0,
                   passes: int | None = None) -> BuiltExamples:
    """The training examples of ``method`` (module docstring) from ``data``'s train split."""
    if method not in METHOD_KINDS:
        raise ValueError(f"unknown training method {method!r}; valid: {', '.join(METHOD_KINDS)}")
    n = data.default_shots if n_shots is None else n_shots
    if method == "oracle":
        # The oracle prompt has no shots: one example per train preference.
        prefs = sorted(data.train_preferences(),
                       key=lambda p: (p.user_id, p.question_id, p.chosen, p.rejected))
        items = [([], p) for p in prefs]
    else:
        items = windows(data.train_preferences(), n, seed=seed, passes=passes)
    counts = {"windows": len(items)}
    examples = _examples(method, items, data.domain, data.users, _train_users(data), counts)
    counts["examples"] = len(examples)
    return BuiltExamples(examples, counts)


def _examples(method: str, items: Sequence[tuple[Sequence[Preference], Preference]], domain: str,
              users: Mapping[str, User], candidates: Mapping[str, User],
              counts: dict[str, int]) -> list[Example]:
    out: list[Example] = []
    for shots, target in items:
        ids = {"user_id": target.user_id, "question_id": target.question_id}
        chosen, rejected = completion(target.chosen), completion(target.rejected)
        if method == "sft":
            out.append(Example(few_shot_prompt(shots, target.question), (chosen, rejected),
                               "supervised", **ids))
        elif method == "preft":
            out.append(Example(few_shot_prompt(shots, target.question), (chosen,), "supervised",
                               **ids))
        elif method == "fspo":
            out.append(Example(few_shot_prompt(shots, target.question), (chosen, rejected),
                               "pair", **ids))
        elif method == "oracle":
            user = users[target.user_id]
            out.append(Example(oracle_prompt(user.description, target.question),
                               (chosen, rejected), "pair", **ids))
        elif method == "fspo-rat":
            user = users[target.user_id]
            other = rejected_description(domain, user, target, candidates)
            if other is None:
                counts["skipped_no_rejected_description"] = (
                    counts.get("skipped_no_rejected_description", 0) + 1)
                continue
            out.append(Example(
                few_shot_prompt(shots, target.question, rat=True),
                (completion(target.chosen, description=user.description),
                 completion(target.rejected, description=other)),
                "pair", **ids))
    return out


def eval_examples(method: str, data: DomainData, *, n_shots: int | None = None, seed: int = 0,
                  limit: int | None = None) -> BuiltExamples:
    """Held-out preference pairs, prompted as ``method`` prompts at evaluation time.

    Held-out users' pairs on held-out questions (:meth:`DomainData.eval_preferences`), each with
    N shots of the same user drawn as evaluation draws them (:func:`sample_shots`, never a
    held-out question). ``limit`` keeps a seeded sample. Always pairs (chosen, rejected), so
    every method's checkpoint gets a preference accuracy; ``sft`` and ``preft`` are scored with
    the plain few-shot prompt, ``fspo-rat`` with RAT completions (true description vs the
    rejected persona's), ``oracle`` with the oracle prompt.
    """
    n = data.default_shots if n_shots is None else n_shots
    prefs = sorted(data.eval_preferences(),
                   key=lambda p: (p.user_id, p.question_id, p.chosen, p.rejected))
    if limit is not None and limit < len(prefs):
        order = list(range(len(prefs)))
        rng_for("trainer-eval", data.domain, seed).shuffle(order)
        prefs = [prefs[i] for i in sorted(order[:limit])]
    items = []
    counts = {"eval_pairs": len(prefs)}
    for p in prefs:
        if method == "oracle":
            items.append(([], p))
            continue
        pool = data.shot_pool(p.user_id)
        try:
            shots = sample_shots(pool, n, seed=seed, user_id=p.user_id, question_id=p.question_id,
                                 exclude_question_ids=data.eval_questions)
        except ValueError:
            counts["skipped_too_few_shots"] = counts.get("skipped_too_few_shots", 0) + 1
            continue
        items.append((shots, p))
    pair_method = method if method in ("fspo-rat", "oracle") else "fspo"
    examples = _examples(pair_method, items, data.domain, data.users, _train_users(data), counts)
    counts["examples"] = len(examples)
    return BuiltExamples(examples, counts)
