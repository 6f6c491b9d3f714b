"""What every participant of a study sees: the preference questions and the new questions.

Both come from the study's domain (``fspo_bench.plugins``), seeded by the study's seed, and are
the same for every participant. Preference questions are drawn from questions that are not held
out, each with one of its labelled response pairs; new questions are drawn from the domain's
held-out questions, so no response a participant judged was written for a question they rate.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from fspo_bench import plugins
from fspo_bench.errors import FspoBenchError
from fspo_bench.sampling import rng_for

from .config import StudyConfig


@dataclass(frozen=True)
class PairItem:
    """A preference question: two responses, the participant picks one."""

    question_id: str
    question: str
    responses: tuple[str, str]


@dataclass(frozen=True)
class StudyItems:
    shots: list[PairItem]
    questions: list[tuple[str, str]]  # (question_id, question)


def study_items(config: StudyConfig) -> StudyItems:
    """The study's preference questions and new questions (seeded, the same for everyone)."""
    data = plugins.get("domain", config.domain)().load(config.data)
    pairs: dict[str, list[PairItem]] = defaultdict(list)
    texts: dict[str, str] = {}
    for p in data.preferences:
        texts[p.question_id] = p.question
        if p.question_id not in data.eval_questions and p.chosen != p.rejected:
            pairs[p.question_id].append(
                PairItem(p.question_id, p.question, tuple(sorted((p.chosen, p.rejected)))))
    shot_ids = sorted(pairs)
    eval_ids = sorted(data.eval_questions & set(texts))
    if len(shot_ids) < config.shots or len(eval_ids) < config.questions:
        raise FspoBenchError(
            f"domain {config.domain!r} has {len(shot_ids)} preference questions and "
            f"{len(eval_ids)} held-out questions; the study asks for {config.shots} and "
            f"{config.questions}")
    rng = rng_for("study-items", config.domain, config.seed)
    shots = []
    for qid in rng.sample(shot_ids, config.shots):
        options = sorted(set(pairs[qid]), key=lambda item: item.responses)
        shots.append(rng.choice(options))
    questions = [(qid, texts[qid]) for qid in rng.sample(eval_ids, config.questions)]
    return StudyItems(shots, questions)
