"""``fspo-bench leaderboard build``: rows, sorting, formats, errors, escaping, paper rows."""

from __future__ import annotations

import csv
import html
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
FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.meta.json",
         "index.html")
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
    return json.loads((out / "leaderboard.json").read_text())


def copy_runs(runs: list[Path], tmp_path: Path) -> list[Path]:
    return [Path(shutil.copytree(run, tmp_path / "runs" / run.name)) for run in runs]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- the four files


def test_build_writes_its_files(built):
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
            # the fixtures' prefacc is old-format (a 0-1 summed accuracy, no prefacc_summed):
            # it shows as prefacc_summed in percent, and no calibrated number is made up
            assert row["prefacc"] is None or pd.isna(row["prefacc"])
            if "prefacc" in r.extra:
                assert row["prefacc_summed"] == pytest.approx(100 * r.extra["prefacc"])
            else:
                assert row["prefacc_summed"] is None or pd.isna(row["prefacc_summed"])
            assert row["winrate"] == pytest.approx(EXPECTED_WINRATE[(row["method"],
                                                                      row["domain"])])
            assert row["config_hash"] == result.config_hash
            assert row["package_version"] == result.package_version
            assert row["date"] == result.created
            assert row["judge_id"] == JUDGE_ID
            assert row["template_hash"] == TEMPLATE_HASH
            assert row["model"] == result.spec.model and row["backend"] == "hf"
            assert row["shots"] == 4
            assert (built / row["run_dir"]).resolve() == run.resolve()


def test_every_row_is_recomputable_from_its_published_judgments(built):
    """The JSON names each row's run directory; its judgments reproduce the row's winrate."""
    for row in json_rows(built):
        scores = defaultdict(list)
        for line in (built / row["run_dir"] / "judgments.jsonl").read_text().splitlines():
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


# --------------------------------------------------------------------------- answer health


def set_extra(run: Path, domain: str, **values) -> None:
    path = run / "results.json"
    data = json.loads(path.read_text())
    next(r for r in data["results"] if r["domain"] == domain)["extra"].update(values)
    path.write_text(json.dumps(data))


def md_table(out: Path) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    lines = (out / "leaderboard.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| method"))
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines
            if line.startswith("| ") and line != header]
    return [c.strip() for c in header.strip("|").split("|")], {(r[0], r[1]): r for r in rows}


def test_a_method_that_failed_over_10_percent_is_marked_everywhere(runs, tmp_path):
    copies = copy_runs(runs, tmp_path)
    health = {"n_failed_reference": 0, "judge_canary_pass": 92.5}
    set_extra(copies[0], "elix", n_failed=1, failed_share=100 / 6, **health)  # fewshot
    set_extra(copies[0], "reviews", n_failed=0, failed_share=0.0, **health)
    set_extra(copies[1], "elix", n_failed=0, failed_share=10.0, **health)  # 10% is not over
    set_extra(copies[1], "reviews", length_controlled_winrate=None,
              length_controlled_reliable=False)
    out = tmp_path / "board"
    assert run_cli("leaderboard", "build", *map(str, copies), "--out", str(out)) == 0

    header, rows = md_table(out)
    failed, canary, lc = (header.index(h) for h in (
        "failed answers", "judge canary pass %", "LC winrate"))
    assert rows[("fewshot", "elix")][failed] == "1 (16.7%) \u26a0"
    assert rows[("fspo", "elix")][failed] == "0 (10.0%)"
    assert rows[("fspo", "reviews")][failed] == ""  # an older run: blank, no mark
    assert rows[("fewshot", "reviews")][canary] == "92.5"
    assert rows[("fspo", "reviews")][lc] == "unreliable"
    assert rows[("fspo", "elix")][lc] == f"{EXPECTED_WINRATE[('fspo', 'elix')] - 2.5:.1f}"
    assert "more than 10% of its answers" in (out / "leaderboard.md").read_text()

    flags = {(r["method"], r["domain"]): r["failed_over_10pct"] for r in json_rows(out)}
    assert flags == {("fewshot", "elix"): True, ("fewshot", "reviews"): False,
                     ("fspo", "elix"): False, ("fspo", "reviews"): None}
    table = pd.read_csv(out / "leaderboard.csv")
    marked = table[table["failed_over_10pct"].astype("boolean").fillna(False)]
    assert list(zip(marked["method"], marked["domain"], strict=True)) == [("fewshot", "elix")]
    reliable = {(r["method"], r["domain"]): r["length_controlled_reliable"]
                for r in json_rows(out)}
    assert reliable[("fspo", "reviews")] is False and reliable[("fspo", "elix")] is None
    page = (out / "index.html").read_text()
    assert page.count("row-failed") == 2  # the CSS rule and the one marked row
    assert 'class="failed-mark">\u26a0</span>' in page and "unreliable" in page


# --------------------------------------------------------------------------- --vs


def write_pair_samples(run: Path, accs: list[float]) -> None:
    samples = [{"id": f"p{i}", "user_id": f"u{i % 3}", "question_id": f"q{i}", "acc": acc,
                "acc_summed": 0.0, "acc_norm": 0.0} for i, acc in enumerate(accs)]
    (run / "preference_accuracy.json").write_text(json.dumps({"elix": {"samples": samples}}))


def test_vs_adds_paired_differences_from_the_baseline_row(runs, tmp_path):
    copies = copy_runs(runs, tmp_path)
    write_pair_samples(copies[0], [0, 0, 1, 0, 1, 1])  # fewshot
    write_pair_samples(copies[1], [1, 1, 1, 1, 0, 1])  # fspo: better on 3, worse on 1
    out = tmp_path / "board"
    assert run_cli("leaderboard", "build", *map(str, copies), "--out", str(out),
                   "--vs", "fewshot") == 0

    rows = {(r["method"], r["domain"]): r for r in json_rows(out)}
    elix, reviews = rows[("fspo", "elix")], rows[("fspo", "reviews")]
    assert elix["vs"] == "fewshot" and rows[("fewshot", "elix")]["vs"] == "fewshot"
    assert elix["vs_winrate_diff"] == pytest.approx(100 * 1 / 6)  # 5/6 - 4/6, same queries
    assert elix["vs_winrate_n"] == 6
    assert reviews["vs_winrate_diff"] == pytest.approx(100 * 2.5 / 6)
    assert elix["vs_winrate_diff_ci_low"] <= elix["vs_winrate_diff"] <= elix[
        "vs_winrate_diff_ci_high"]
    assert elix["vs_prefacc_diff"] == pytest.approx(100 * 2 / 6)
    assert elix["vs_prefacc_n"] == 6 and elix["vs_prefacc_kind"] == "calibrated"
    assert elix["vs_prefacc_mcnemar_p"] == pytest.approx(10 / 16)  # 3 vs 1 discordant
    assert reviews["vs_prefacc_diff"] is None  # no pairs on reviews
    assert rows[("fewshot", "elix")]["vs_winrate_diff"] is None

    header, md = md_table(out)
    winrate = header.index("\u0394 winrate vs fewshot [95% CI]")
    prefacc = header.index("\u0394 pref. acc. vs fewshot [95% CI] (McNemar p)")
    assert md[("fspo", "elix")][winrate].startswith("+16.7 [")
    assert md[("fspo", "elix")][prefacc].startswith("+33.3 [")
    assert md[("fspo", "elix")][prefacc].endswith("(p 0.62)")
    assert md[("fewshot", "elix")][winrate] == "baseline"
    csv_header = (out / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert {"vs", "vs_winrate_diff", "vs_prefacc_mcnemar_p"} <= set(csv_header)
    assert "\u0394 winrate vs fewshot [95% CI]" in (out / "index.html").read_text()


def test_without_vs_there_are_no_difference_columns(built):
    assert not [c for c in json.loads((built / "leaderboard.meta.json").read_text())["columns"]
                if c.startswith("vs")]


def test_pandas_reads_the_leaderboard_json_in_one_call(built):
    table = pd.read_json(built / "leaderboard.json")
    assert list(table.columns) == json.loads((built / "leaderboard.meta.json").read_text())[
        "columns"]
    assert len(table) == len(pd.read_csv(built / "leaderboard.csv"))


def test_a_moved_copy_of_the_leaderboard_and_its_runs_still_points_at_them(runs, tmp_path):
    import shutil

    home = tmp_path / "home"
    for run in runs:
        shutil.copytree(run, home / "runs" / run.name)
    copied = [home / "runs" / run.name for run in runs]
    assert run_cli("leaderboard", "build", *map(str, copied), "--out", str(home / "board")) == 0
    moved = tmp_path / "elsewhere"
    shutil.move(str(home), str(moved))
    board = moved / "board"
    published = "".join(p.read_text() for p in board.iterdir())
    assert str(tmp_path) not in published  # no absolute path of this machine
    for row in json.loads((board / "leaderboard.json").read_text()):
        assert (board / row["run_dir"] / "results.json").is_file()


def test_vs_an_absent_method_is_one_line_error(runs, tmp_path, capsys):
    capsys.readouterr()
    code = run_cli("leaderboard", "build", *map(str, runs), "--out", str(tmp_path / "o"),
                   "--vs", "oracle")
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "oracle" in err[0]
    assert not (tmp_path / "o").exists()


#: Run directories written before answer health and calibration (the embedded leaderboard of
#: commit b839fef).
OLD_RUNS = Path(__file__).parent / "data" / "old_runs"


def test_builds_from_old_format_run_dirs(tmp_path):
    runs = sorted(OLD_RUNS.iterdir())
    out = tmp_path / "board"
    assert run_cli("leaderboard", "build", *map(str, runs), "--out", str(out),
                   "--max-samples", "0", "--vs", "fewshot") == 0
    rows = json_rows(out)
    assert len(rows) == 3 * len(runs)
    results = results_of(runs)
    for row in rows:
        _, r, _ = results[(row["method"], row["domain"])]
        assert row["prefacc"] is None  # those runs measured no calibrated accuracy
        assert row["prefacc_summed"] == pytest.approx(100 * r.extra["prefacc"])
        assert row["prefacc_norm"] == pytest.approx(100 * r.extra["prefacc_norm"])
        assert row["n_failed"] is None and row["failed_over_10pct"] is None
        if row["method"] != "fewshot":
            assert row["vs_winrate_diff"] is not None and row["vs_prefacc_kind"] == "summed"
    header, _ = md_table(out)
    assert "pref. acc. summed" in header
    assert not [h for h in header if h.startswith("pref. acc. calibrated")]


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


# --------------------------------------------------------------------------- page structure


def domain_sections(page: str) -> dict[str, str]:
    """Each domain's <section> of index.html, by domain name."""
    return dict(re.findall(r'<section class="domain" id="domain-\d+">\s*<h2>(.*?)</h2>(.*?)'
                           r"</section>", page, re.S))


def table_of(section: str, css_class: str) -> str | None:
    found = re.search(rf'<table class="{css_class}"[^>]*>(.*?)</table>', section, re.S)
    return found.group(1) if found else None


def header_cells(table: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<th[^>]*>(.*?)</th>", table, re.S)]


def row_cells(table: str) -> list[list[str]]:
    """The text of each body row's cells."""
    body = table.split("<tbody>", 1)[1]
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def test_judge_identity_is_said_once_per_domain_above_narrow_tables(built):
    sections = domain_sections((built / "index.html").read_text())
    assert list(sections) == ["elix", "reviews"]
    for section in sections.values():
        identity = re.search(r'<dl class="identity">(.*?)</dl>', section, re.S).group(1)
        assert f"<code>{JUDGE_ID}</code>" in identity
        assert f'<code title="{TEMPLATE_HASH}">{TEMPLATE_HASH[:12]}</code>' in identity
        assert "SmolLM2-135M-Instruct" in identity and "<code>base</code>" in identity
        table = table_of(section, "leaderboard")
        assert header_cells(table) == ["method", "winrate [95% CI]", "W/L/T/invalid",
                                       "LC winrate", "position consistency"]
        assert JUDGE_ID not in table and TEMPLATE_HASH not in table
        # the provenance columns stay on the page, folded away
        more = re.search(r'<details class="more">(.*?)</details>', section, re.S).group(1)
        assert JUDGE_ID in more and "config" in header_cells(table_of(more, "metric all-columns"))
    assert 'href="#samples-' in sections["elix"]  # method names link to their samples


def test_a_judge_that_differs_between_runs_gets_its_column(runs, tmp_path):
    copies = copy_runs(runs, tmp_path)
    path = copies[1] / "config.json"  # fspo judged by another judge model
    config = json.loads(path.read_text())
    config["judge"]["model"] = "gpt-4o-mini"
    path.write_text(json.dumps(config))
    out = tmp_path / "board"
    assert run_cli("leaderboard", "build", *map(str, copies), "--out", str(out)) == 0
    elix = domain_sections((out / "index.html").read_text())["elix"]
    assert "differs between runs (judge column)" in elix
    table = table_of(elix, "leaderboard")
    assert header_cells(table)[1:3] == ["judge", "template"]
    assert JUDGE_ID in table and "pairwise:gpt-4o-mini" in table


def test_failed_answers_and_canary_sit_in_the_judged_table(runs, tmp_path):
    copies = copy_runs(runs, tmp_path)
    set_extra(copies[0], "elix", n_failed=2, failed_share=100 / 3, judge_canary_pass=87.5)
    out = tmp_path / "board"
    assert run_cli("leaderboard", "build", *map(str, copies), "--out", str(out)) == 0
    elix = domain_sections((out / "index.html").read_text())["elix"]
    table = table_of(elix, "leaderboard")
    cells = header_cells(table)
    assert "failed answers" in cells and "judge canary pass %" in cells
    row = next(r for r in re.findall(r"<tr class=\"([^\"]*)\">(.*?)</tr>", table, re.S)
               if "fewshot" in r[1])
    assert row[0] == "row-run row-failed"
    assert "2 (33.3%) <span class=\"failed-mark\">\u26a0</span>" in row[1] and "87.5" in row[1]


def write_statuses(run: Path, statuses: dict[int, tuple[str, str]]) -> None:
    """Give the method generations number N (in file order) a status and text."""
    path = run / "generations.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    methods = [g for g in lines if g["meta"]["role"] == "method"]
    for number, (status, text) in statuses.items():
        methods[number].update(status=status, text=text)
    path.write_text("".join(json.dumps(g) + "\n" for g in lines))


def test_samples_show_each_answers_status_and_its_raw_text(runs, tmp_path):
    copies = copy_runs(runs, tmp_path)
    # fewshot on elix; the page shows generations 0, 2, 4, 1, 3, 5 (in turn from each user)
    write_statuses(copies[0], {2: ("truncated", "An answer that stops mid"),
                               4: ("format_error", "")})
    out = tmp_path / "board"
    assert run_cli("leaderboard", "build", *map(str, copies), "--out", str(out)) == 0
    page = (out / "index.html").read_text()
    sets = re.findall(r'<details class="sample-set" id="samples-\d+">(.*?)</details>\s*'
                      r'(?=<details class="sample-set"|</section>)', page, re.S)
    fewshot_elix = sets[0]
    summary = re.search(r"<summary>(.*?)</summary>", fewshot_elix, re.S).group(1)
    assert ('shown answers: 4 <span class="status status-ok">ok</span>, '
            '1 <span class="status status-format_error">format_error</span>, '
            '1 <span class="status status-truncated">truncated</span>') in summary
    queries = re.findall(r'<details class="sample">\s*<summary>(.*?)</summary>', fewshot_elix,
                         re.S)
    assert 'class="status status-truncated">truncated</span>' in queries[1]
    assert 'class="status status-format_error">format_error</span>' in queries[2]
    assert "status-ok" not in queries[0]  # an ok answer is not flagged in the list
    answers = re.findall(r"method: fewshot &middot; \d+ words &middot; answer "
                         r'<span class="status status-(\w+)">', fewshot_elix)
    assert answers == ["ok", "truncated", "format_error", "ok", "ok", "ok"]
    references = re.findall(r"reference: base &middot; \d+ words &middot; answer "
                            r'<span class="status status-(\w+)">', fewshot_elix)
    assert references == ["ok"] * 6
    # the raw model text (before the header was stripped) beside the parsed answer
    raws = re.findall(r'<details class="raw"><summary>raw model output \(before parsing\)'
                      r"</summary><pre>(.*?)</pre>", fewshot_elix, re.S)
    assert len(raws) == 6 and all(raw.startswith("## Preferred Response") for raw in raws)
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in raws[0]


def test_a_judge_without_a_template_is_named_by_its_version_and_the_hash_it_follows():
    from fspo_bench.judges.proxy import ProxyJudge
    from fspo_bench.leaderboard.build import judge_identity

    identity = ProxyJudge().identity()
    assert judge_identity(identity, "proxy") == ("proxy v2", identity["lexicon_sha256"])
