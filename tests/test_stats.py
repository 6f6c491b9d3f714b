from __future__ import annotations

import pytest

from fspo_bench.records import Generation, Judgment, Query, User
from fspo_bench.stats import (
    LengthControlled,
    bootstrap_mean_ci,
    cluster_bootstrap,
    domain_result,
    lc_band,
    length_controlled_winrate,
    method_difference,
    outcome,
    paired_difference,
    prefacc_difference,
    query_scores,
    sign_test,
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
    # 7 valid verdicts: the GLM fits, and the number is stored only inside the band
    assert result.extra["length_controlled_reliable"] is (
        result.extra["length_controlled_winrate"] is not None)


def test_verdicts_of_failed_answers_count_in_the_winrate_not_in_position_consistency():
    judgments = [judgment("u1", "q1", "method_first", "a"),
                 judgment("u1", "q1", "reference_first", "a")]  # inconsistent judge
    for order, winner in (("method_first", "b"), ("reference_first", "a")):  # failed answer
        ruled = judgment("u2", "q2", order, winner)
        judgments.append(Judgment(**{**ruled.__dict__, "meta": {**ruled.meta,
                                                                 "not_judged": True}}))
    result = domain_result("d", judgments, [])
    assert result.winrate == pytest.approx(100 * (0.5 + 0.0) / 2)
    assert result.extra["position_consistency"] == 0.0  # only the judged query counts


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


def test_length_control_removes_a_length_preference_and_flags_it():
    # The judge prefers the longer response 9 times in 10, whichever it is; the method is longer
    # 80% of the time: raw 0.8 * 0.9 + 0.2 * 0.1 = 74%, 50% at equal lengths.
    outcomes, diffs = [], []
    for i in range(200):
        longer = i % 5 != 0
        method_preferred = longer != ((i // 5) % 10 == 0)
        diff = (20 + i % 7) if longer else -(20 + i % 7)
        for order in ("method_first", "reference_first"):
            winner = "a" if method_preferred == (order == "method_first") else "b"
            outcomes.append(outcome(judgment(f"u{i}", f"q{i}", order, winner)))
            diffs.append(diff)
    lc = length_controlled_winrate(outcomes, diffs)
    assert lc.raw == pytest.approx(74)
    assert abs(lc.fitted - 50) < abs(lc.raw - 50) / 4
    # ... which takes it out of AlpacaEval's band [55.5, 84]: unreliable, no number.
    assert (lc.low, lc.high) == (55.5, 84)
    assert not lc.reliable and lc.winrate is None


def test_lc_band_by_hand():
    # raw 31.25: [min(31.25 - 7.8125, 21.25), max(31.25 + 68.75 / 4, 41.25)]
    assert lc_band(31.25) == (21.25, 48.4375)
    assert lc_band(80) == (60, 90) and lc_band(5) == (-5, 28.75) and lc_band(50) == (37.5, 62.5)
    # The 0.8 that the old column gave for a raw 31.2 is outside: unreliable, no number.
    old = LengthControlled(0.8, 31.25, *lc_band(31.25))
    assert not old.reliable and old.winrate is None
    inside = LengthControlled(21.25, 31.25, *lc_band(31.25))
    assert inside.reliable and inside.winrate == 21.25


def symmetric_verdicts() -> tuple[list, list]:
    """Four pairs of queries whose length differences are +d and -d with the same verdicts:
    method first it wins 3 pairs of 4, reference first 2 of 4."""
    outcomes, diffs = [], []
    wins = {"method_first": [1, 1, 1, 0], "reference_first": [1, 1, 0, 0]}
    for order, won in wins.items():
        for pair, win in enumerate(won):
            for sign in (1, -1):
                a_is_method = order == "method_first"
                winner = "a" if win == a_is_method else "b"
                outcomes.append(outcome(judgment(f"u{pair}", f"q{pair}{sign}", order, winner)))
                diffs.append(sign * 10 * (pair + 1))
    return outcomes, diffs


def test_length_controlled_winrate_by_hand():
    # By symmetry the length weight is 0; the intercept and the order term then reproduce the
    # two orders' means, 3/4 and 1/2, whose average over the 16 verdicts is 62.5 = raw.
    outcomes, diffs = symmetric_verdicts()
    lc = length_controlled_winrate(outcomes, diffs)
    assert lc.raw == 62.5 and lc.fitted == pytest.approx(62.5, abs=1e-3)
    assert lc.reliable and lc.winrate == lc.fitted
    # Two verdicts scored by rule (a failed answer loses, unjudged) keep their 0, unfitted.
    failed = Judgment("j", "u9", "q9", "", "y", "b", "raw", True,
                      {"order": "method_first", "question_id": "q9", "not_judged": True})
    lc = length_controlled_winrate([*outcomes, outcome(failed), outcome(failed)],
                                   [*diffs, -500, -500])
    assert lc.fitted == pytest.approx(100 * 10 / 18, abs=1e-3) and lc.raw == 100 * 10 / 18


def test_length_controlled_winrate_needs_verdicts():
    outcomes, diffs = symmetric_verdicts()
    lc = length_controlled_winrate(outcomes[:3], diffs[:3])
    assert lc.fitted is None and lc.raw is not None and not lc.reliable
    assert length_controlled_winrate([], []).raw is None


def test_query_scores_skip_invalid_queries():
    scores = query_scores([outcome(judgment("u", "q", "method_first", None, valid=False))])
    assert scores == {}


def sample(pair, user, acc, **more):
    return {"id": pair, "user_id": user, "question_id": f"q-{pair}", "acc": acc, **more}


def test_paired_prefacc_difference_and_mcnemar_by_hand():
    # 9 common pairs of 3 users (p9 only in A): A better on 6 (one of them against a tie),
    # B better on 1, equal on 2.
    a = [sample("p1", "u1", 1.0), sample("p2", "u1", 1.0), sample("p3", "u1", 0.0),
         sample("p4", "u2", 1.0), sample("p5", "u2", 1.0), sample("p6", "u2", 0.5),
         sample("p7", "u3", 1.0), sample("p8", "u3", 1.0), sample("p0", "u3", 1.0),
         sample("p9", "u3", 0.0)]
    b = [sample("p1", "u1", 0.0), sample("p2", "u1", 1.0), sample("p3", "u1", 1.0),
         sample("p4", "u2", 0.0), sample("p5", "u2", 0.5), sample("p6", "u2", 0.5),
         sample("p7", "u3", 0.0), sample("p8", "u3", 0.0), sample("p0", "u3", 0.0)]
    for s in (*a, *b):
        s["acc_summed"] = 0.0
    diff = prefacc_difference(a, b)
    # differences: u1 +1 0 -1; u2 +1 +0.5 0; u3 +1 +1 +1 -> mean 4.5 / 9
    assert diff["kind"] == "calibrated"
    assert diff["difference"] == pytest.approx(100 * 4.5 / 9)
    assert (diff["n_pairs"], diff["n_users"]) == (9, 3)
    assert (diff["n_a_better"], diff["n_b_better"]) == (6, 1)
    # exact two-sided binomial: 2 * (C(7,0) + C(7,1)) / 2**7 = 16 / 128
    assert diff["p_value"] == pytest.approx(0.125)
    assert diff["ci_low"] <= diff["difference"] <= diff["ci_high"]
    # each user's mean difference: 0, 1/2, 1 -> the bootstrap stays within [0, 100]
    assert 0 <= diff["ci_low"] and diff["ci_high"] <= 100


def test_mcnemar_without_discordant_pairs_and_old_format_samples():
    a = {("u", "p1"): 1.0, ("u", "p2"): 0.0}
    assert sign_test(a, a) == {"n_a_better": 0, "n_b_better": 0, "p_value": 1.0}
    assert sign_test({("u", f"p{i}"): 1.0 for i in range(10)},
                     {("u", f"p{i}"): 0.0 for i in range(10)})["p_value"] == pytest.approx(
        2 / 2 ** 10)
    # A run without acc_summed is from before calibrated accuracy: its acc is the summed one,
    # so it is paired with the other run's acc_summed.
    old = [sample("p1", "u1", 1.0), sample("p2", "u2", 1.0)]
    new = [sample("p1", "u1", 0.0, acc_summed=1.0), sample("p2", "u2", 0.0, acc_summed=0.0)]
    diff = prefacc_difference(old, new)
    assert diff["kind"] == "summed" and diff["difference"] == pytest.approx(50)
    with pytest.raises(ValueError):
        prefacc_difference(old, [sample("p3", "u1", 1.0)])


def test_method_difference_says_what_is_not_comparable():
    scores = {("u1", "q1"): 1.0, ("u2", "q2"): 0.0}
    diff = method_difference(scores, {("u1", "q1"): 0.5}, [], [])
    assert diff["winrate"]["difference"] == pytest.approx(50) and diff["prefacc"] is None
    assert method_difference(scores, {("u3", "q1"): 0.5}, [], [])["winrate"] is None
