"""A scripted participant completes a study in a real headless Chromium, on the tiny model.

Needs Debian's Chromium (``apt-get install -y chromium``, at /usr/bin/chromium) and the
``playwright`` Python package, which drives that Chromium (``playwright install`` is never run).
Skipped, with the reason, when either is missing. Set ``FSPO_BENCH_SCREENSHOT_DIR=DIR`` to keep a
full-page screenshot of every page for a look.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fspo_bench.study.store import StudyStore

from .browser import BROWSER_TEST, CHROMIUM, FLAGS
from .run_fixtures import run_cli
from .study_fixtures import SCRIPT, planted_app, planted_task, write_study

pytestmark = BROWSER_TEST


@contextmanager
def serving(asgi_app) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(asgi_app, host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def browser() -> Iterator[tuple[object, list[str]]]:
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="needs the playwright package to drive Chromium (pip install playwright)")
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            page = instance.new_page(viewport={"width": 1200, "height": 860})
            page.set_default_timeout(30_000)
            page.on("request", lambda request: requests.append(request.url))
            yield page, requests
        finally:
            instance.close()


def snap(page, name: str) -> None:
    folder = os.environ.get("FSPO_BENCH_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_a_participant_completes_a_study_and_the_export_scores_it(tiny_model, tmp_path, capsys):
    from fspo_bench.study.server import build_app

    study = write_study(tmp_path, model=str(tiny_model), comparisons=["fewshot vs base"],
                        questions=2, generation={"max_new_tokens": 8}, judges=["proxy"],
                        consent="Consent for the browser test.")
    app, close = build_app(study)
    try:
        with serving(app.app) as base, browser() as (page, requests):
            assert run_cli("study", "invite", "--study", str(study), "-n", "2",
                           "--base-url", base) == 0
            links = capsys.readouterr().out.split()
            assert len(links) == 2 and all(link.startswith(f"{base}/s/") for link in links)

            page.goto(links[0])
            assert "Consent for the browser test." in page.inner_text("#consent")
            snap(page, "1-consent")
            page.click("#agree")
            for number, side in ((1, "a"), (2, "b")):
                assert f"Preference {number} of 2" in page.inner_text("header")
                snap(page, f"2-preference-{number}")
                page.click(f"#choose-{side}")
            assert "Preparing your comparisons" in page.inner_text("main")
            snap(page, "3-preparing")
            page.wait_for_selector("text=Comparison 1 of 2", timeout=180_000)
            snap(page, "4-rate")
            page.click("#choose-a")
            page.wait_for_selector("text=Comparison 2 of 2")
            page.goto(links[0])  # leave and come back: resumes at the same pair
            assert "Comparison 2 of 2" in page.inner_text("header")
            page.click("#choose-tie")
            assert "Thank you!" in page.inner_text("main")
            snap(page, "5-done")
            assert all(url.startswith(base) for url in requests)
    finally:
        close()

    store = StudyStore(tmp_path / "study.sqlite")
    (key, *_) = [k for k in store.participant_keys() if store.tasks(k)]
    shots, tasks = store.shots(key), store.tasks(key)
    store.close()
    assert [s.question_id for s in shots] == [s.question_id for s in app.items.shots]
    assert [t.winner for t in tasks] == ["a", "tie"]
    assert {t.question_id for t in tasks} == {qid for qid, _ in app.items.questions}
    assert all(t.text_a and t.text_b for t in tasks)
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:  # generated through the cache
        assert db.execute("SELECT count(*) FROM responses WHERE kind = 'generate'").fetchone()[0] \
            == 4

    out = tmp_path / "export"
    assert run_cli("study", "export", "--study", str(study), "--out", str(out)) == 0
    assert "fewshot vs base: human winrate" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    expected = 100 * ((1.0 if tasks[0].method_first else 0.0) + 0.5) / 2
    human = summary["comparisons"][0]["human"]
    assert human["winrate"] == pytest.approx(expected)
    assert human["n_participants"] == 1 and human["n_ties"] == 1
    assert summary["comparisons"][0]["judges"]["proxy"]["n_pairs"] \
        + summary["comparisons"][0]["judges"]["proxy"]["n_invalid"] == 2


def test_a_planted_script_in_model_text_stays_inert(tmp_path):
    app, store, _ = planted_app(tmp_path, [planted_task(0)])
    token = store.invite()
    try:
        with serving(app.app) as base, browser() as (page, _):
            page.goto(f"{base}/s/{token}")
            page.click("#agree")
            page.click("#choose-a")
            page.click("#choose-b")
            page.goto(f"{base}/s/{token}")
            assert SCRIPT in page.inner_text("#response-a")
            assert page.title() == "Test study"
            assert page.evaluate("document.scripts.length") == 0
            snap(page, "6-planted-script")
    finally:
        store.close()
