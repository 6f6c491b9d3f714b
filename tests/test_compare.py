"""``fspo-bench compare RUN_A RUN_B``: paired differences on the same queries and pairs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from fspo_bench.records import Judgment
from tests.run_fixtures import run_cli, write_runs

#: Run directories written before answer health and calibration (the embedded leaderboard of
#: commit b839fef).
OLD_RUNS = Path(__file__).parent / "data" / "old_runs"


def compare(capsys, *argv: str) -> tuple[int, list[str], list[str]]:
    capsys.readouterr()
    code = run_cli("compare", *argv)
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err.strip().splitlines()


def by_domain_and_metric(lines: list[str]) -> dict[tuple[str, str], str]:
    return {(line.split()[0], line.split()[1]): line.split(None, 2)[2] for line in lines}


def write_prefacc(run: Path, accs: dict[str, float]) -> None:
    samples = [{"id": pair, "user_id": f"user-{pair[-1]}", "question_id": f"q-{pair}",
                "acc": acc, "acc_summed": 1.0, "acc_norm": 0.0}
               for pair, acc in accs.items()]
    (run / "preference_accuracy.json").write_text(json.dumps({"elix": {"samples": samples}}))


def test_compare_two_runs_on_the_same_queries_and_pairs(tmp_path, capsys):
    fewshot, fspo = write_runs(tmp_path)
    write_prefacc(fspo, {"p1": 1.0, "p2": 1.0, "p3": 1.0, "p4": 0.5, "p5": 0.0})
    write_prefacc(fewshot, {"p1": 0.0, "p2": 0.0, "p3": 1.0, "p4": 0.0, "p5": 1.0, "p6": 1.0})
    code, out, err = compare(capsys, str(fspo), str(fewshot))
    assert code == 0, err
    lines = by_domain_and_metric(out)
    assert sorted(lines) == [("elix", "prefacc"), ("elix", "winrate"), ("reviews", "winrate")]
    assert lines[("elix", "winrate")].startswith("A - B = +16.7 [")  # 5/6 vs 4/6 of 6 queries
    assert lines[("reviews", "winrate")].startswith("A - B = +41.7 [")  # 5.25/6 vs 2.75/6
    # 5 common pairs: differences +1 +1 0 +0.5 -1 -> +30 points; A better on 3, B on 1;
    # exact two-sided p = 2 * (C(4,0) + C(4,1)) / 2**4 = 10 / 16 = 0.625
    prefacc = lines[("elix", "prefacc")]
    assert prefacc.startswith("A - B = +30.0 [")
    assert "over 5 pairs of 5 users (calibrated)" in prefacc
    assert prefacc.endswith("McNemar: A better on 3, B on 1, exact p = 0.625")


def test_compare_runs_with_nothing_in_common_is_one_line_and_fails(tmp_path, capsys):
    fewshot, fspo = write_runs(tmp_path)
    path = fspo / "judgments.jsonl"
    moved = [dataclasses.replace(j, user=f"other-{j.user}")
             for j in map(Judgment.from_json, path.read_text().splitlines())]
    path.write_text("".join(j.to_json() + "\n" for j in moved))
    code, out, err = compare(capsys, str(fspo), str(fewshot))
    assert code != 0 and out == []
    assert len(err) == 1 and "nothing to compare" in err[0] and str(fspo) in err[0]


def test_compare_a_missing_run_is_one_line(tmp_path, capsys):
    (fewshot, _) = write_runs(tmp_path)
    code, _, err = compare(capsys, str(tmp_path / "nope"), str(fewshot))
    assert code != 0 and len(err) == 1 and "nope" in err[0]


def test_compare_old_format_runs_pairs_the_summed_accuracy(capsys):
    code, out, err = compare(capsys, str(OLD_RUNS / "fspo"), str(OLD_RUNS / "fewshot"))
    assert code == 0, err
    lines = by_domain_and_metric(out)
    assert {metric for _, metric in lines} == {"winrate", "prefacc"}
    assert all("(summed)" in text for (_, metric), text in lines.items() if metric == "prefacc")
