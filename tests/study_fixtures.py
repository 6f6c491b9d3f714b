"""Helpers for the study tests: study files, and an app whose pairs are planted, not generated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

EXTRA = "needs the study extra: pip install -e '.[study]'"
yaml = pytest.importorskip("yaml", reason=EXTRA)
pytest.importorskip("starlette", reason=EXTRA)
pytest.importorskip("python_multipart", reason=EXTRA)

from starlette.testclient import TestClient  # noqa: E402

from fspo_bench.study.app import StudyApp  # noqa: E402
from fspo_bench.study.config import parse_study  # noqa: E402
from fspo_bench.study.items import PairItem, StudyItems  # noqa: E402
from fspo_bench.study.store import StudyStore, Task  # noqa: E402

__all__ = ["TestClient", "StudyApp"]

SCRIPT = "<script>document.title='pwned'</script>"
ITEMS = StudyItems(
    shots=[PairItem("q1", "Where should I travel?", ("Go camping " + SCRIPT, "Stay at a spa.")),
           PairItem("q2", "What should I eat?", ("Salad.", "Steak."))],
    questions=[("n1", "Which phone should I buy?")],
)


def study_dict(**overrides: Any) -> dict[str, Any]:
    base = {"title": "Test study", "domain": "roleplay", "model": "unused",
            "comparisons": ["fspo vs base"], "shots": 2, "questions": 1,
            "database": "study.sqlite", "cache": "cache.sqlite"}
    return {**base, **overrides}


def write_study(folder: Path, **overrides: Any) -> Path:
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study_dict(**overrides)))
    return path


def planted_task(idx: int = 0, method_first: bool = True, **fields: Any) -> Task:
    values = dict(idx=idx, question_id="n1", question="Which phone should I buy?",
                  method="fspo", reference="base", method_first=method_first,
                  text_a="A phone " + SCRIPT, text_b="Another phone.")
    return Task(**{**values, **fields})


class PlantedPreparer:
    """Stands in for the Preparer: stores fixed pairs instead of generating them (no model)."""

    def __init__(self, store: StudyStore, tasks: list[Task]):
        self.store, self.planted, self.started = store, tasks, []

    def start(self, key: str) -> None:
        self.started.append(key)
        self.store.add_tasks(key, self.planted)


def planted_app(folder: Path, tasks: list[Task], **overrides: Any
                ) -> tuple[StudyApp, StudyStore, PlantedPreparer]:
    config = parse_study(study_dict(**overrides), folder)
    store = StudyStore(config.database)
    preparer = PlantedPreparer(store, tasks)
    return StudyApp(config, store, ITEMS, preparer), store, preparer  # type: ignore[arg-type]
