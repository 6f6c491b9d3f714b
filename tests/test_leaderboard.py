"""``fspo-bench leaderboard build``: rows, sorting, formats, errors, escaping, paper rows."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

from fspo_bench.records import Judgment, RunResult
from tests.run_fixtures import (
    EXPECTED_WINRATE,
    IMG_PAYLOAD,
    JUDGE_ID,
    JUDGE_PAYLOAD,
    SCRIPT_PAYLOAD,
    TEMPLATE_HASH,
    USER_PAYLOAD,
    run_cli,
    write_runs,
)

ROOT = Path(__file__).resolve().parents[1]
FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "index.html")
PAPER_JUDGE = "paper (judge model and prompt unpublished)"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    return write_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def built(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("board") / "out"
    assert run_cli("leaderboard", "build", *map(str, runs), "--out", str(out)) == 0
    return out


@pytest.fixture(scope="module")
def built_with_paper(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("board-paper") / "out"
    code = run_cli("leaderboard", "build", *map(str, runs), "--out", str(out), "--with-paper",
                   "--max-samples", "2", "--title", "Board <b>&</b>")
    assert code == 0
    return out


def results_of(runs: list[Path]) -> dict[tuple[str, str], tuple[Path, object, RunResult]]:
    found = {}
    for run in runs:
        result = RunResult.from_json((run / "results.json").read_text())
        for r in result.results:
            found[(result.spec.method, r.domain)] = (run, r, result)
    return found


def json_rows(out: Path) -> list[dict]:
    return json.loads((out / "leaderboard.json").read_text())["rows"]


def copy_runs(runs: list[Path], tmp_path: Path) -> list[Path]:
    return [Path(shutil.copytree(run, tmp_path / "runs" / run.name)) for run in runs]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- the four files


def test_build_writes_the_four_files(built):
    assert sorted(p.name for p in built.iterdir()) == sorted(FILES)
    for name in FILES:
        assert (built / name).stat().st_size > 0
    assert not list(built.parent.glob(".out.tmp-*"))


def test_cli_reports_what_it_wrote(runs, tmp_path, capsys):
    out = tmp_path / "board"
    assert run_cli("leaderboard", "build", *map(str, runs), "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert "leaderboard.md" in printed and "4 rows from 2 run(s)" in printed


def test_csv_and_json_rows_match_results_json(built, runs):
    expected = results_of(runs)
    table = pd.read_csv(built / "leaderboard.csv")
    rows = json_rows(built)
    assert len(table) == len(rows) == len(expected) == 4
    for source in (table.to_dict("records"), rows):
        for row in source:
            run, r, result = expected[(row["method"], row["domain"])]
            assert row["source"] == "run"
            for name in ("winrate", "ci_low", "ci_high"):
                assert row[name] == pytest.approx(getattr(r, name), rel=1e-12, abs=1e-12)
            for name in ("n_wins", "n_losses", "n_ties", "n_invalid"):
                assert row[name] == getattr(r, name)
            for name in ("position_consistency", "length_controlled_winrate", "mean_length",
                         "n_queries", "n_users"):
                assert row[name] == pytest.approx(r.extra[name])
            if "prefacc" in r.extra:
                assert row["prefacc"] == pytest.approx(r.extra["prefacc"])
            else:
                assert row["prefacc"] is None or pd.isna(row["prefacc"])
            assert row["winrate"] == pytest.approx(EXPECTED_WINRATE[(row["method"],
                                                                      row["domain"])])
            assert row["config_hash"] == result.config_hash
            assert row["package_version"] == result.package_version
            assert row["date"] == result.created
            assert row["judge_id"] == JUDGE_ID
            assert row["template_hash"] == TEMPLATE_HASH
            assert row["model"] == result.spec.model and row["backend"] == "hf"
            assert row["shots"] == 4
            assert Path(row["run_dir"]) == run.resolve()


def test_every_row_is_recomputable_from_its_published_judgments(built):
    """The JSON names each row's run directory; its judgments reproduce the row's winrate."""
    for row in json_rows(built):
        scores = defaultdict(list)
        for line in (Path(row["run_dir"]) / "judgments.jsonl").read_text().splitlines():
            j = Judgment.from_json(line)
            if j.meta["domain"] != row["domain"] or not j.valid:
                continue
            method_first = j.meta["order"] == "method_first"
            score = 0.5 if j.winner == "tie" else float((j.winner == "a") == method_first)
            scores[(j.user, j.meta["question_id"])].append(score)
        winrate = 100 * sum(sum(s) / len(s) for s in scores.values()) / len(scores)
        assert winrate == pytest.approx(row["winrate"])
        assert len(scores) == row["n_queries"]


def test_rows_sorted_by_domain_then_winrate_descending(built):
    rows = json_rows(built)
    assert [(r["domain"], r["method"]) for r in rows] == [
        ("elix", "fspo"), ("elix", "fewshot"), ("reviews", "fspo"), ("reviews", "fewshot")]
    table = pd.read_csv(built / "leaderboard.csv")
    for _, group in table.groupby("domain", sort=False):
        assert list(group["winrate"]) == sorted(group["winrate"], reverse=True)
    assert list(table["domain"]) == sorted(table["domain"])


def test_markdown_shows_winrate_with_ci(built, runs):
    text = (built / "leaderboard.md").read_text()
    assert text.startswith("# fspo-bench leaderboard\n")
    assert "winrate [95% CI]" in text
    for (method, domain), (_, r, _) in results_of(runs).items():
        cell = f"{r.winrate:.1f} [{r.ci_low:.1f}, {r.ci_high:.1f}]"
        line = next(line for line in text.splitlines()
                    if f"| {method} " in line and f"| {domain} " in line)
        assert cell in line
    assert "83.3 [" in text and "45.8 [" in text


# --------------------------------------------------------------------------- errors


def test_missing_results_json_is_one_line_error_and_out_is_untouched(runs, tmp_path, capsys):
    copies = copy_runs(runs, tmp_path)
    (copies[1] / "results.json").unlink()
    out = tmp_path / "board"
    out.mkdir()
    (out / "leaderboard.md").write_text("old leaderboard\n")
    (out / "notes.txt").write_text("keep me\n")
    before = snapshot(out)
    capsys.readouterr()
    code = run_cli("leaderboard", "build", *map(str, copies), "--out", str(out))
    captured = capsys.readouterr()
    assert code != 0
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "results.json" in lines[0] and "missing" in lines[0]
    assert str(copies[1]) in lines[0]
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board", "runs"]  # no temp folders


def test_bad_json_line_names_file_and_line_and_writes_nothing(runs, tmp_path, capsys):
    copies = copy_runs(runs, tmp_path)
    path = copies[0] / "generations.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:40]
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "new-board"
    capsys.readouterr()
    assert run_cli("leaderboard", "build", *map(str, copies), "--out", str(out)) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "generations.jsonl line 3" in err[0] and "bad JSON" in err[0]
    assert not out.exists()


def test_bad_config_json_is_named(runs, tmp_path, capsys):
    copies = copy_runs(runs, tmp_path)
    (copies[0] / "config.json").write_text("{not json")
    capsys.readouterr()
    assert run_cli("leaderboard", "build", str(copies[0]), "--out", str(tmp_path / "o")) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json" in err[0] and "bad JSON" in err[0]


def test_results_that_disagree_with_judgments_are_rejected(runs, tmp_path, capsys):
    copies = copy_runs(runs, tmp_path)
    path = copies[0] / "results.json"
    data = json.loads(path.read_text())
    data["results"][0]["n_wins"] += 1
    path.write_text(json.dumps(data))
    capsys.readouterr()
    assert run_cli("leaderboard", "build", *map(str, copies), "--out", str(tmp_path / "o")) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results.json" in err[0] and "judgments.jsonl" in err[0]
    assert not (tmp_path / "o").exists()


def test_missing_run_directory_is_one_line_error(tmp_path, capsys):
    capsys.readouterr()
    code = run_cli("leaderboard", "build", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "nope" in err[0]


# --------------------------------------------------------------------------- HTML


def test_payloads_appear_only_escaped(built):
    page = (built / "index.html").read_text()
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&#34;window.__pwned=2&#34;&gt;" in page
    assert "&lt;/pre&gt;&lt;/details&gt;&lt;script&gt;window.__pwned = 3" in page
    assert "&lt;svg onload=&#34;window.__pwned=4&#34;&gt;" in page
    for payload in (SCRIPT_PAYLOAD, IMG_PAYLOAD, JUDGE_PAYLOAD, USER_PAYLOAD):
        assert payload not in page
    assert "<script" not in page.lower()
    assert "onerror=" not in page.replace("onerror=&#34;", "")


def test_template_marks_nothing_safe():
    template = (ROOT / "leaderboard" / "templates" / "index.html.j2").read_text()
    assert not re.search(r"\|\s*safe", template)


def test_html_is_self_contained(built):
    page = (built / "index.html").read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(sources) == 2 and all(s.startswith("data:image/svg+xml;base64,") for s in sources)


def test_html_has_a_table_per_domain_and_samples(built):
    page = (built / "index.html").read_text()
    assert page.count('<table class="leaderboard"') == 2
    assert page.count('<details class="sample-set"') == 4
    assert page.count('<details class="sample">') == 4 * 6
    assert "The user is a child." in page and "What is gravity?" in page
    assert "Inferred from the shots" in page  # the RAT description of the fspo run


def test_max_samples_caps_queries_and_title_is_escaped(built_with_paper):
    page = (built_with_paper / "index.html").read_text()
    assert page.count('<details class="sample">') == 4 * 2
    assert "Board &lt;b&gt;&amp;&lt;/b&gt;" in page and "<b>&</b>" not in page


# --------------------------------------------------------------------------- paper rows


def paper_csv_rows() -> list[dict[str, str]]:
    rows = []
    for path in sorted((ROOT / "leaderboard" / "paper").glob("*.csv")):
        rows.extend(csv.DictReader(io.StringIO(path.read_text())))
    return rows


def test_paper_csvs_hold_the_published_tables():
    rows = paper_csv_rows()
    assert {r["domain"] for r in rows} == {"roleplay", "elix", "reviews"}
    assert len([r for r in rows if r["domain"] == "roleplay"]) == 7
    assert {(r["subset"], r["shots"]) for r in rows if r["domain"] == "reviews"} == {
        ("trained users", "4"), ("trained users", "8"),
        ("interpolated users", "4"), ("interpolated users", "8")}
    values = {(r["domain"], r["subset"], r["shots"], r["label"]): float(r["winrate"])
              for r in rows}
    assert values[("roleplay", "", "8", "FSPO + RAT")] == 90.3
    assert values[("elix", "hard", "4", "FSPO")] == 91.8
    assert values[("reviews", "interpolated users", "8", "8-shot FSPO + RAT")] == 84.6


def test_with_paper_adds_marked_reference_rows(built_with_paper, built):
    rows = json_rows(built_with_paper)
    paper = [r for r in rows if r["source"] == "paper"]
    assert len(paper) == len(paper_csv_rows()) == 27
    assert all(r["judge_id"] == PAPER_JUDGE and r["run_dir"] is None for r in paper)
    assert len([r for r in rows if r["source"] == "run"]) == 4
    assert all(r["source"] == "run" for r in json_rows(built))
    table = pd.read_csv(built_with_paper / "leaderboard.csv")
    assert set(table["source"]) == {"run", "paper"}
    for _, group in table.groupby("domain", sort=False):
        assert list(group["winrate"]) == sorted(group["winrate"], reverse=True)
    md = (built_with_paper / "leaderboard.md").read_text()
    assert "| paper " in md and PAPER_JUDGE in md
    page = (built_with_paper / "index.html").read_text()
    assert page.count('<table class="leaderboard"') == 3  # roleplay comes from the paper alone
    assert 'class="row-paper"' in page


def test_plugin_module_imports_nothing_heavy():
    code = ("import sys, fspo_bench.leaderboard.plugin as p; "
            "print(sorted(m for m in ('pandas', 'matplotlib', 'jinja2') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
