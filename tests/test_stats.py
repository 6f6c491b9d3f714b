from __future__ import annotations

import pytest

from fspo_bench.records import Generation, Judgment, Query, User
from fspo_bench.stats import (
    bootstrap_mean_ci,
    cluster_bootstrap,
    domain_result,
    length_controlled_winrate,
    outcome,
    paired_difference,
    query_scores,
)


def judgment(user, qid, order, winner, valid=True):
    return Judgment("j", user, qid, "x", "y", winner if valid else None, "raw", valid,
                    {"order": order, "question_id": qid})


def generation(role, user, qid, text):
    query = Query(User(user, "d"), [], qid, question_id=qid)
    return Generation(role, query, text, text, {"role": role, "question_id": qid})


def test_single_order_scores_are_from_the_methods_side():
    assert outcome(judgment("u", "q", "method_first", "a")).score == 1.0
    assert outcome(judgment("u", "q", "reference_first", "a")).score == 0.0
    assert outcome(judgment("u", "q", "reference_first", "b")).score == 1.0
    assert outcome(judgment("u", "q", "method_first", "tie")).score == 0.5
    assert outcome(judgment("u", "q", "method_first", None, valid=False)).score is None


def test_domain_result_by_hand():
    judgments = [
        judgment("u1", "q1", "method_first", "a"), judgment("u1", "q1", "reference_first", "b"),
        judgment("u1", "q2", "method_first", "a"), judgment("u1", "q2", "reference_first", "a"),
        judgment("u2", "q3", "method_first", "tie"), judgment("u2", "q3", "reference_first", None,
                                                              valid=False),
        judgment("u2", "q4", "method_first", None, valid=False),
        judgment("u2", "q4", "reference_first", None, valid=False),
    ]
    generations = [generation("method", "u1", "q1", "one two three"),
                   generation("reference", "u1", "q1", "one")]
    result = domain_result("d", judgments, generations)
    # query scores: q1 = 1, q2 = (1 + 0) / 2, q3 = 0.5 (one valid order), q4 invalid
    assert result.winrate == pytest.approx(100 * (1 + 0.5 + 0.5) / 3)
    assert (result.n_wins, result.n_losses, result.n_ties, result.n_invalid) == (3, 1, 1, 3)
    assert result.extra["position_consistency"] == 0.5  # q1 agrees, q2 does not
    assert result.extra["n_queries"] == 4 and result.extra["n_users"] == 2
    assert result.extra["mean_length"] == 3 and result.extra["mean_length_reference"] == 1
    assert result.ci_low <= result.winrate <= result.ci_high


def test_the_bootstrap_resamples_users_not_queries():
    # One user always wins, the other always loses: 50 queries each. Resampling queries would
    # give a tight interval around 50; resampling the two users gives nearly [0, 100].
    scores = {("u1", f"q{i}"): 1.0 for i in range(50)} | {("u2", f"r{i}"): 0.0 for i in range(50)}
    low, high = cluster_bootstrap(scores, seed=0)
    assert low == 0.0 and high == 100.0
    assert cluster_bootstrap(scores, seed=0) == (low, high)


def test_users_with_equal_means_give_no_spread():
    assert bootstrap_mean_ci({f"u{i}": [1.0, 0.0] for i in range(10)}) == (0.5, 0.5)
    assert bootstrap_mean_ci({}) is None


def test_bootstrap_narrows_with_more_users():
    few = {(f"u{i}", "q"): float(i % 2) for i in range(6)}
    many = {(f"u{i}", "q"): float(i % 2) for i in range(600)}
    width = [h - lo for lo, h in (cluster_bootstrap(few), cluster_bootstrap(many))]
    assert width[1] < width[0] / 4


def test_paired_difference_of_identical_runs_is_zero():
    scores = {(f"u{i}", "q"): float(i % 2) for i in range(10)}
    diff = paired_difference(scores, scores)
    assert diff["difference"] == 0 and diff["ci_low"] == 0 and diff["ci_high"] == 0
    better = {k: 1.0 for k in scores}
    assert paired_difference(better, scores)["difference"] == pytest.approx(50)
    assert paired_difference(better, scores)["ci_low"] > 0
    with pytest.raises(ValueError):
        paired_difference({("a", "q"): 1.0}, {("b", "q"): 1.0})


def test_length_control_removes_a_pure_length_preference():
    # The judge prefers whichever response is longer; the method is longer 80% of the time.
    outcomes, diffs = [], []
    for i in range(200):
        longer = i % 5 != 0
        diff = (20 + i % 7) if longer else -(20 + i % 7)
        for order in ("method_first", "reference_first"):
            winner = ("a" if order == "method_first" else "b") if longer else (
                "b" if order == "method_first" else "a")
            outcomes.append(outcome(judgment(f"u{i}", f"q{i}", order, winner)))
            diffs.append(diff)
    raw = 100 * sum(o.score for o in outcomes) / len(outcomes)
    assert raw == pytest.approx(80)
    assert abs(length_controlled_winrate(outcomes, diffs) - 50) < abs(raw - 50) / 2


def test_query_scores_skip_invalid_queries():
    scores = query_scores([outcome(judgment("u", "q", "method_first", None, valid=False))])
    assert scores == {}


def test_compare_two_runs_on_the_same_queries(tmp_path, capsys):
    from .run_fixtures import write_runs
    from .test_cli import run_cli

    fewshot, fspo = write_runs(tmp_path)
    code, out, _ = run_cli(capsys, "compare", str(fspo), str(fewshot))
    lines = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert code == 0
    assert lines["elix"].startswith("A - B = +16.7 [")  # 5/6 vs 4/6 of the same 6 queries
    assert lines["reviews"].startswith("A - B = +41.7 [")  # 5.25/6 vs 2.75/6
