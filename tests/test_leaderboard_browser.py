"""The leaderboard page in a real headless Chromium: it renders, loads nothing and runs nothing.

Needs Debian's Chromium (``apt-get install -y chromium``, at /usr/bin/chromium) and the
``playwright`` Python package, which drives that Chromium (``playwright install`` is never run:
its browser downloads are not used). Skipped, with the reason, when either is missing.
Set ``FSPO_BENCH_SCREENSHOT=PATH`` to keep the full-page screenshot for a look.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.browser import BROWSER_TEST, CHROMIUM, FLAGS
from tests.run_fixtures import SCRIPT_PAYLOAD, USER_PAYLOAD, run_cli, write_runs
from tests.test_leaderboard_prefacc import PREFACC

pytestmark = BROWSER_TEST


@pytest.fixture(scope="module")
def page_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    runs = write_runs(root / "runs")
    # fewshot on elix: calibrated preference accuracy, and more than 10% failed answers
    path = runs[0] / "results.json"
    results = json.loads(path.read_text())
    results["results"][0]["extra"].update(PREFACC, n_failed=1, failed_share=100 / 6,
                                          n_failed_reference=0, judge_canary_pass=92.5)
    path.write_text(json.dumps(results))
    out = root / "board"
    code = run_cli("leaderboard", "build", *map(str, runs), "--out", str(out), "--with-paper",
                   "--vs", "fewshot")
    assert code == 0
    return out / "index.html"


@pytest.fixture(scope="module")
def browser_page(page_path, tmp_path_factory):
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="needs the playwright package to drive Chromium (pip install playwright)")
    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900}, java_script_enabled=True)
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_path.as_uri(), wait_until="load")
            yield page, requests
        finally:
            context.close()


def test_tables_render_with_their_rows(browser_page):
    page, _ = browser_page
    domains = page.eval_on_selector_all(
        "table.leaderboard", "tables => tables.map(t => t.dataset.domain)")
    assert domains == ["elix", "reviews", "roleplay"]
    run_rows = page.eval_on_selector_all(
        "table.leaderboard tbody tr.row-run", "rows => rows.map(r => r.innerText)")
    assert len(run_rows) == 4
    assert any("83.3 [" in text and "fspo" in text for text in run_rows)
    assert page.locator("table.leaderboard tbody tr.row-paper").count() == 27
    first = page.locator("table.leaderboard").first.bounding_box()
    assert first is not None and first["width"] > 600 and first["height"] > 100


def test_plots_are_present_and_decoded(browser_page):
    page, _ = browser_page
    plots = page.eval_on_selector_all(
        "img.winrate-plot",
        "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(plots) == 3
    assert all(complete and width > 300 and height > 100 for complete, width, height in plots)


def test_no_planted_script_runs_and_payload_shows_as_text(browser_page, tmp_path):
    page, requests = browser_page
    # Open every collapsible so anything planted in the samples would be rendered.
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.evaluate("document.scripts.length") == 0
    assert page.evaluate("document.querySelectorAll('[onerror], [onload], svg').length") == 0
    samples = page.inner_text("#samples")
    assert SCRIPT_PAYLOAD in samples and USER_PAYLOAD in samples
    print("\n[html] planted <script>, onerror= and onload= payloads in model, judge and user "
          "text: window.__pwned undefined, 0 scripts, shown as text")
    external = [url for url in requests if not url.startswith(("file:", "data:"))]
    assert external == []
    screenshot = tmp_path / "leaderboard.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("FSPO_BENCH_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["FSPO_BENCH_SCREENSHOT"])


#: What the widths check: every table of a domain but the folded-away provenance one.
FITS = """() => ({
  page: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
  tables: [...document.querySelectorAll('section.domain .table-wrap')]
    .filter(wrap => !wrap.closest('details'))
    .map(wrap => [wrap.querySelector('table').className, wrap.closest('section').id,
                  wrap.scrollWidth, wrap.clientWidth]),
})"""
PLOTS = """() => [...document.querySelectorAll('section.domain')]
  .filter(s => s.querySelector('img.prefacc-plot'))
  .map(s => [s.querySelector('img.winrate-plot'), s.querySelector('img.prefacc-plot')]
    .map(img => {
      const r = img.getBoundingClientRect();
      return [r.left, r.top, r.right, r.bottom, img.complete && img.naturalWidth];
    }))"""


@pytest.mark.parametrize("width", [1400, 800])
def test_tables_fit_without_scrolling_sideways_and_plots_sit_side_by_side(browser_page, width,
                                                                          tmp_path):
    page, _ = browser_page
    try:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(100)
        fits = page.evaluate(FITS)
        assert fits["page"][0] <= fits["page"][1]
        kinds = {cls for cls, *_ in fits["tables"]}
        assert kinds == {"leaderboard", "metric prefacc-table"}
        wide = [(cls, section, scroll, client) for cls, section, scroll, client in fits["tables"]
                if scroll > client + 1]
        assert wide == [], f"tables that scroll sideways at {width}px: {wide}"
        # the judged table shows failed answers and the canary pass rate, on screen
        for header in ("failed answers", "judge canary pass %"):
            box = page.locator("table.leaderboard th", has_text=header).first.bounding_box()
            assert box is not None and box["x"] + box["width"] <= width
        assert page.locator("table.leaderboard tr.row-failed .failed-mark").count() == 1
        (winrate, prefacc), = page.evaluate(PLOTS)  # elix alone has a calibrated accuracy
        assert winrate[4] > 300 and prefacc[4] > 300  # both decoded
        if width >= 900:  # beside each other
            assert abs(winrate[1] - prefacc[1]) < 2 and prefacc[0] >= winrate[2]
        else:  # stacked
            assert prefacc[1] >= winrate[3] and abs(prefacc[0] - winrate[0]) < 2
        screenshot = tmp_path / f"leaderboard-{width}.png"
        page.screenshot(path=str(screenshot), full_page=True)
        if os.environ.get("FSPO_BENCH_SCREENSHOT"):
            target = Path(os.environ["FSPO_BENCH_SCREENSHOT"])
            shutil.copyfile(screenshot, target.with_name(f"{target.stem}-{width}{target.suffix}"))
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})
