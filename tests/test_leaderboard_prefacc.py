"""A run's preference accuracy on the leaderboard: one column in percent with its interval."""

from __future__ import annotations

import json
from pathlib import Path

from tests.run_fixtures import run_cli, write_runs

PREFACC = {"prefacc": 0.615, "prefacc_ci_low": 0.521, "prefacc_ci_high": 0.708, "prefacc_n": 48}


def test_preference_accuracy_is_one_column_in_percent_and_raw_in_csv_and_json(tmp_path: Path):
    runs = write_runs(tmp_path / "runs")
    path = runs[0] / "results.json"
    results = json.loads(path.read_text())
    measured = results["results"][0]
    measured["extra"].update(PREFACC)
    path.write_text(json.dumps(results))
    out = tmp_path / "board"
    assert run_cli("leaderboard", "build", *map(str, runs), "--out", str(out)) == 0

    lines = (out / "leaderboard.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| method"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    column = cells.index("pref. acc. [95% CI]")
    assert not {"prefacc", "prefacc_ci_low", "prefacc_n"} & set(cells)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines
            if line.startswith("| ") and line != header]
    by_key = {(r[0], r[1]): r[column] for r in rows}
    method = results["spec"]["method"]
    assert by_key[(method, measured["domain"])] == "61.5 [52.1, 70.8]"
    for run in runs:  # rows without it show nothing; an attached one (no interval) alone
        result = json.loads((run / "results.json").read_text())
        for r in result["results"]:
            value = r["extra"].get("prefacc")
            expected = "" if value is None else f"{100 * value:.1f}"
            if (result["spec"]["method"], r["domain"]) != (method, measured["domain"]):
                assert by_key[(result["spec"]["method"], r["domain"])] == expected

    rows_json = json.loads((out / "leaderboard.json").read_text())["rows"]
    (row,) = [r for r in rows_json if r["method"] == method and r["domain"] == measured["domain"]]
    assert {k: row[k] for k in PREFACC} == PREFACC
    assert "prefacc_ci_high" in (out / "leaderboard.csv").read_text().splitlines()[0]
    assert "61.5 [52.1, 70.8]" in (out / "index.html").read_text()
