"""Preference accuracy on the leaderboard: the calibrated one as the headline column (percent,
with its interval), summed and per-character as secondary columns, specificity; older runs'
0-1 summed accuracy on the same percent scale, never in the calibrated column."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from tests.run_fixtures import run_cli, write_runs
from tests.test_leaderboard import domain_sections, header_cells, row_cells, table_of

# What today's runs write (percent).
PREFACC = {"prefacc": 61.5, "prefacc_ci_low": 52.1, "prefacc_ci_high": 70.8, "prefacc_n": 48,
           "prefacc_summed": 40.0, "prefacc_norm": 45.5, "specificity": 12.25,
           "specificity_ci_low": -3.5, "specificity_ci_high": 20.0}


def markdown_cells(out: Path) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    lines = (out / "leaderboard.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| method"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines
            if line.startswith("| ") and line != header]
    return cells, {(r[0], r[1]): r for r in rows}


def test_calibrated_headline_secondary_columns_and_old_runs_on_one_scale(tmp_path: Path):
    fewshot, fspo = write_runs(tmp_path / "runs")
    path = fewshot / "results.json"
    results = json.loads(path.read_text())
    measured = results["results"][0]  # fewshot on elix, new format
    measured["extra"].update(PREFACC)
    path.write_text(json.dumps(results))
    out = tmp_path / "board"
    assert run_cli("leaderboard", "build", str(fewshot), str(fspo), "--out", str(out)) == 0

    cells, rows = markdown_cells(out)
    column = {name: cells.index(name) for name in (
        "pref. acc. calibrated [95% CI]", "pref. acc. summed", "pref. acc. norm",
        "specificity [95% CI]")}
    assert not {"prefacc", "prefacc_ci_low", "prefacc_n", "pref. acc. [95% CI]"} & set(cells)
    new = rows[("fewshot", "elix")]
    assert new[column["pref. acc. calibrated [95% CI]"]] == "61.5 [52.1, 70.8]"
    assert float(new[column["pref. acc. summed"]]) == 40.0  # tabulate prints "40"
    assert new[column["pref. acc. norm"]] == "45.5"
    assert new[column["specificity [95% CI]"]] == "+12.2 [-3.5, +20.0]"
    # fspo's results are old-format: prefacc 0.74 (summed, 0-1) -> 74.0 summed, no calibrated
    old = rows[("fspo", "elix")]
    assert old[column["pref. acc. calibrated [95% CI]"]] == ""
    assert float(old[column["pref. acc. summed"]]) == 74.0
    assert float(rows[("fspo", "reviews")][column["pref. acc. summed"]]) == 69.0
    assert rows[("fewshot", "reviews")][column["pref. acc. summed"]] == ""

    rows_json = json.loads((out / "leaderboard.json").read_text())
    by_key = {(r["method"], r["domain"]): r for r in rows_json}
    assert {k: by_key[("fewshot", "elix")][k] for k in PREFACC} == PREFACC
    assert by_key[("fspo", "elix")]["prefacc"] is None
    assert by_key[("fspo", "elix")]["prefacc_summed"] == 74.0
    header = (out / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert {"prefacc_ci_high", "prefacc_summed", "prefacc_norm", "specificity_ci_low"} <= set(
        header)
    page = (out / "index.html").read_text()
    assert "61.5 [52.1, 70.8]" in page and "pref. acc. calibrated [95% CI]" in page
    assert "+12.2 [-3.5, +20.0]" in page


def test_runs_without_preference_accuracy_show_no_such_column(tmp_path: Path):
    fewshot, _ = write_runs(tmp_path / "runs")
    out = tmp_path / "board"
    assert run_cli("leaderboard", "build", str(fewshot), "--out", str(out)) == 0
    cells, _ = markdown_cells(out)
    assert not [c for c in cells if c.startswith("pref. acc.") or c.startswith("specificity")]


def write_pair_samples(run: Path, accs: list[float]) -> None:
    samples = [{"id": f"p{i}", "user_id": f"u{i % 3}", "question_id": f"q{i}", "acc": acc,
                "acc_summed": 0.0, "acc_norm": 0.0} for i, acc in enumerate(accs)]
    (run / "preference_accuracy.json").write_text(json.dumps({"elix": {"samples": samples}}))


def test_page_has_a_preference_accuracy_plot_and_table_beside_the_winrate_ones(tmp_path: Path):
    fewshot, fspo = write_runs(tmp_path / "runs")
    path = fewshot / "results.json"
    results = json.loads(path.read_text())
    results["results"][0]["extra"].update(PREFACC)  # fewshot on elix, calibrated
    path.write_text(json.dumps(results))
    write_pair_samples(fewshot, [0, 0, 1, 0, 1, 1])
    write_pair_samples(fspo, [1, 1, 1, 1, 0, 1])
    out = tmp_path / "board"
    assert run_cli("leaderboard", "build", str(fewshot), str(fspo), "--out", str(out),
                   "--vs", "fewshot") == 0
    sections = domain_sections((out / "index.html").read_text())

    elix = sections["elix"]
    plots = re.search(r'<div class="plots two">(.*?)</div>', elix, re.S).group(1)
    images = re.findall(r'<img class="([\w-]+)" src="data:image/svg\+xml;base64,([^"]+)"', plots)
    assert [name for name, _ in images] == ["winrate-plot", "prefacc-plot"]
    svg = base64.b64decode(images[1][1]).decode()
    assert "calibrated preference accuracy on elix" in svg and "<script" not in svg

    table = table_of(elix, "metric prefacc-table")
    assert header_cells(table) == [
        "method", "pref. acc. calibrated [95% CI]", "pairs", "summed", "per char",
        "specificity [95% CI]", "\u0394 vs fewshot [95% CI]", "McNemar p"]
    rows = {cells[0]: cells for cells in row_cells(table)}
    assert rows["fewshot"] == ["fewshot", "61.5 [52.1, 70.8]", "48", "40.0", "45.5",
                               "+12.2 [-3.5, +20.0]", "baseline", ""]
    # fspo is an old run: summed accuracy only, no calibrated one; its paired difference is
    # the calibrated accuracy of the pair samples, with McNemar's p
    assert rows["fspo"][1:5] == ["", "", "74.0", ""]
    assert rows["fspo"][6].startswith("+33.3 [") and rows["fspo"][7] == "0.62"
    # the judged table keeps only what the judge gave
    judged = header_cells(table_of(elix, "leaderboard"))
    assert not [c for c in judged if "pref. acc." in c or "specificity" in c]
    assert "\u0394 winrate vs fewshot [95% CI]" in judged

    # reviews: only fspo's old summed accuracy, so a table but no calibrated plot
    reviews = sections["reviews"]
    assert "prefacc-plot" not in reviews and 'class="winrate-plot"' in reviews
    assert header_cells(table_of(reviews, "metric prefacc-table"))[1] == "summed"


def test_page_without_preference_accuracy_has_no_such_plot_or_table(tmp_path: Path):
    fewshot, _ = write_runs(tmp_path / "runs")
    out = tmp_path / "board"
    assert run_cli("leaderboard", "build", str(fewshot), "--out", str(out)) == 0
    page = (out / "index.html").read_text()
    assert "prefacc-plot" not in page and "prefacc-table" not in page
    assert page.count('class="winrate-plot"') == 2
