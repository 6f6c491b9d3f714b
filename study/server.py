"""Assemble the study app from a study file: store, items, response cache, preparer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fspo_bench.cache import ResponseCache, default_cache_path

from .app import StudyApp
from .config import check_study, load_study
from .items import study_items
from .prepare import Preparer
from .store import StudyStore


def build_app(study: Path, database: Path | None = None,
              log: Callable[[str], None] = lambda message: None
              ) -> tuple[StudyApp, Callable[[], None]]:
    """The study app and a function that closes its database and cache."""
    config = load_study(study, database)
    check_study(config)
    items = study_items(config)
    store = StudyStore(config.database)
    cache = ResponseCache(config.cache or default_cache_path())
    preparer = Preparer(config, store, items, cache, log=log)

    def close() -> None:
        store.close()
        cache.close()

    return StudyApp(config, store, items, preparer), close
