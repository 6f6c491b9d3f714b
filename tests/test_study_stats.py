"""Study statistics and export: the sign test, participant-clustered winrates, judge agreement,
and judgments written in a run directory's format."""

from __future__ import annotations

import pytest

from fspo_bench.records import Judgment
from fspo_bench.rundir import read_judgments, read_records
from fspo_bench.stats import domain_result
from fspo_bench.study.config import parse_study
from fspo_bench.study.export import export, human_judgments, summary_lines
from fspo_bench.study.statistics import agreement, sign_test, winrate_summary
from fspo_bench.study.store import StudyStore, participant_id

from .study_fixtures import planted_task, study_dict


def test_sign_test_is_the_exact_two_sided_binomial_test():
    assert sign_test(0, 0) is None
    assert sign_test(9, 1) == pytest.approx(2 * (1 + 10) / 1024)
    assert sign_test(1, 9) == sign_test(9, 1)
    assert sign_test(5, 5) == 1.0 and sign_test(20, 0) == pytest.approx(2 / 2 ** 20)
    binomtest = pytest.importorskip("scipy.stats").binomtest
    for wins, losses in [(7, 3), (30, 14), (1, 0), (0, 12), (41, 19)]:
        expected = binomtest(wins, wins + losses, 0.5).pvalue
        assert sign_test(wins, losses) == pytest.approx(expected, rel=1e-12)


def human(user: str, qid: str, winner: str | None, method_first: bool = True) -> Judgment:
    meta = {"question_id": qid, "order": "method_first" if method_first else "reference_first"}
    return Judgment("human", user, "q", "x", "y", winner, str(winner), winner is not None, meta)


def test_winrate_counts_each_participant_question_once_and_clusters_by_participant():
    judgments = [human("p1", "q1", "a", True), human("p1", "q2", "b", False),   # 2 wins
                 human("p2", "q1", "a", False), human("p2", "q2", "tie")]      # loss, tie
    summary = winrate_summary(judgments)
    assert summary["winrate"] == pytest.approx(62.5)
    assert (summary["n_wins"], summary["n_losses"], summary["n_ties"]) == (2, 1, 1)
    assert summary["n_participants"] == 2
    assert summary["sign_test_p"] == pytest.approx(1.0)
    # Two clusters: resampled means are 100 (p1 twice), 25 (p2 twice) or 62.5.
    assert summary["ci_low"] == pytest.approx(25.0) and summary["ci_high"] == pytest.approx(100.0)
    assert winrate_summary([])["winrate"] is None


def test_agreement_pairs_verdicts_and_halves_ties():
    humans = [human("p1", "q1", "a"), human("p1", "q2", "b"), human("p2", "q1", "tie"),
              human("p2", "q2", "a")]
    judged = [human("p1", "q1", "a"), human("p1", "q2", "a"), human("p2", "q1", "b"),
              human("p2", "q2", None)]
    result = agreement(humans, judged)
    assert result["agreement"] == pytest.approx((1 + 0 + 0.5) / 3)
    assert (result["n_pairs"], result["n_invalid"]) == (3, 1)
    assert result["agreement_ci"][0] <= result["agreement"] <= result["agreement_ci"][1]
    with pytest.raises(ValueError):
        agreement(humans, judged[:2])


@pytest.fixture
def rated_study(tmp_path):
    config = parse_study(study_dict(comparisons=["fspo vs base", "fspo vs fewshot"],
                                    judges=["oracle"]), tmp_path)
    store = StudyStore(config.database)
    ratings = {  # participant -> (method_first, winner) per pair
        "p1": [(True, "a"), (False, "b"), (True, "a")],
        "p2": [(False, "a"), (True, "tie"), (True, "b")],
        "p3": [(True, "a"), (True, None), (False, None)],  # stopped after one rating
    }
    keys = {}
    for name, pairs in ratings.items():
        key = keys[name] = store.participant(store.invite()).key
        store.add_tasks(key, [planted_task(i, first, question_id=f"n{i % 2}",
                                           reference="base" if i < 2 else "fewshot")
                              for i, (first, _) in enumerate(pairs)])
        for i, (_, winner) in enumerate(pairs):
            if winner:
                store.rate(key, i, winner)
    yield config, store, keys
    store.close()


def test_export_writes_run_format_judgments_and_the_statistics(rated_study, tmp_path):
    from fspo_bench.cache import ResponseCache

    config, store, keys = rated_study
    out = tmp_path / "export"
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        summary = export(config, store, out, cache)
    humans = read_judgments(out)
    assert humans == human_judgments(config, store)
    assert len(humans) == 7 and {h.judge for h in humans} == {"human"}
    assert {h.user for h in humans} == {participant_id(k) for k in keys.values()}
    assert all(h.meta["participant"] == h.user and len(h.user) == 16 for h in humans)

    fspo_base = summary["comparisons"][0]
    assert (fspo_base["method"], fspo_base["reference"]) == ("fspo", "base")
    # p1: win, win; p2: loss (b shown first, a picked), tie; p3: win
    h = fspo_base["human"]
    assert (h["n_wins"], h["n_losses"], h["n_ties"]) == (3, 1, 1)
    assert h["winrate"] == pytest.approx(100 * (1 + 1 + 0 + 0.5 + 1) / 5)
    assert h["sign_test_p"] == pytest.approx(2 * (1 + 4) / 16)
    assert h["n_participants"] == 3
    # The run statistics give the same winrate and the same participant-clustered interval.
    picked = [j for j in humans if j.meta["reference"] == "base"]
    result = domain_result("roleplay", picked, [], seed=config.seed)
    assert (result.winrate, result.ci_low, result.ci_high) == (h["winrate"], h["ci_low"],
                                                               h["ci_high"])
    fewshot = summary["comparisons"][1]["human"]
    assert (fewshot["n_wins"], fewshot["n_losses"]) == (1, 1)

    # The oracle judge cannot judge generated text: every pair is invalid, none is agreed on.
    oracle = read_records(out / "judgments.oracle.jsonl", Judgment)
    assert [(j.a, j.b, j.meta["order"]) for j in oracle] == [
        (j.a, j.b, j.meta["order"]) for j in humans]
    assert not any(j.valid for j in oracle)
    judged = fspo_base["judges"]["oracle"]
    assert judged["agreement"] is None and judged["n_invalid"] == 5
    lines = summary_lines(summary)
    assert lines[1].startswith("fspo vs base: human winrate 70.0%")
    assert summary["n_judgments"] == 7 and summary["n_participants"] == 3
