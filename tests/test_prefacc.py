"""Preference accuracy with our own backends: docs, metrics, implicit reward, shot curves, CLI.

lm-eval is not needed here (tests/test_lmeval.py compares the two engines).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fspo_bench import prefacc
from fspo_bench.cache import ResponseCache
from fspo_bench.errors import FspoBenchError, UnknownNameError
from fspo_bench.prefacc_command import add_prefacc_commands, attach_to_run, output_paths
from fspo_bench.prompts import completion, few_shot_prompt
from fspo_bench.records import DomainResult, RunResult, RunSpec
from fspo_bench.rundir import write_json
from fspo_bench.sampling import sample_shots


@pytest.fixture(scope="module")
def elix():
    return prefacc.load_domain("elix", "builtin", 2)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FSPO_BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FSPO_BENCH_CACHE", str(tmp_path / "cache.sqlite"))


class FakeBackend:
    """Scores a continuation by a rule on its text; records every call."""

    name = "fake"
    batch_size = 8

    def __init__(self, rule=None, adapters=None):
        self.rule = rule or (lambda context, continuation: -float(len(continuation)))
        self.adapters = adapters or {}
        self.calls: list[tuple[str | None, int]] = []

    def identity(self):
        return {"backend": "fake", "model": "rule"}

    def adapter_revision(self, adapter):
        return f"rev-{adapter}"

    def loglikelihood(self, pairs, adapter=None):
        self.calls.append((adapter, len(pairs)))
        bonus = self.adapters.get(adapter, lambda c, x: 0.0)
        return [self.rule(c, x) + bonus(c, x) for c, x in pairs]


def test_docs_use_the_official_prompt_and_completions(elix):
    docs = prefacc.build_docs(elix, shots=2, seed=0, limit=6)
    prefs = {prefacc.doc_id("elix", p): p for p in elix.eval_preferences()}
    assert len(docs) == 6
    for doc in docs:
        pref = prefs[doc["id"]]
        shots = sample_shots(elix.shot_pool(pref.user_id), 2, seed=0, user_id=pref.user_id,
                             question_id=pref.question_id, exclude_question_ids=elix.eval_questions)
        assert doc["context"] == few_shot_prompt(shots, pref.question)
        assert doc["choices"][doc["gold"]] == completion(pref.chosen)
        assert doc["choices"][1 - doc["gold"]] == completion(pref.rejected)
        assert doc["choices"][0].startswith("## Preferred Response \n")
        assert doc["shot_question_ids"] == [s.question_id for s in shots]
        assert not set(doc["shot_question_ids"]) & elix.eval_questions
        assert doc["user_id"] in elix.eval_users and doc["question_id"] in elix.eval_questions


def test_doc_order_is_seeded_and_limit_keeps_the_first(elix):
    everything = prefacc.build_docs(elix, shots=2, seed=0)
    assert len(everything) == len(elix.eval_preferences())
    assert prefacc.build_docs(elix, shots=2, seed=0, limit=5) == everything[:5]
    assert prefacc.build_docs(elix, shots=2, seed=0) == everything
    other = prefacc.build_docs(elix, shots=2, seed=1)
    assert [d["id"] for d in other] != [d["id"] for d in everything]
    assert {d["gold"] for d in everything} == {0, 1}  # the chosen one is not always first


def test_request_pairs_move_the_trailing_newline_like_lm_eval(elix):
    doc = prefacc.build_docs(elix, shots=1, limit=1)[0]
    pairs = prefacc.request_pairs(doc)
    assert doc["context"].endswith("\n")
    for (context, continuation), choice in zip(pairs, doc["choices"], strict=True):
        assert context == doc["context"][:-1]
        assert continuation == "\n" + choice
        assert context + continuation == doc["context"] + choice


def test_accuracy_and_acc_norm_follow_lm_evals_rules(elix):
    backend = FakeBackend()  # log-likelihood = -(characters): prefers the shorter choice
    result = prefacc.preference_accuracy(backend, elix, shots=1, seed=0, limit=20)
    docs = prefacc.build_docs(elix, shots=1, seed=0, limit=20)

    def shorter_is_chosen(doc):
        lengths = [len(c) for c in doc["choices"]]
        return min(range(2), key=lambda i: (lengths[i], i)) == doc["gold"]

    # ll / len(choice) = -(len + 1) / len: larger for the longer choice
    def longer_is_chosen(doc):
        lengths = [len(c) for c in doc["choices"]]
        return max(range(2), key=lambda i: (-(lengths[i] + 1) / lengths[i], -i)) == doc["gold"]

    assert result["n_docs"] == 20
    assert result["acc"] == pytest.approx(sum(map(shorter_is_chosen, docs)) / 20)
    assert result["acc_norm"] == pytest.approx(sum(map(longer_is_chosen, docs)) / 20)
    assert result["acc_ci_low"] <= result["acc"] <= result["acc_ci_high"]
    assert [s["id"] for s in result["samples"]] == [d["id"] for d in docs]


def test_a_tie_goes_to_the_first_choice_as_in_lm_eval(elix):
    result = prefacc.preference_accuracy(FakeBackend(lambda c, x: -1.0), elix, shots=1, limit=30)
    docs = prefacc.build_docs(elix, shots=1, limit=30)
    assert result["acc"] == pytest.approx(sum(d["gold"] == 0 for d in docs) / 30)


def test_implicit_reward_compares_policy_and_reference(elix):
    docs = prefacc.build_docs(elix, shots=1, limit=10)
    chosen = {(d["context"], d["choices"][d["gold"]]) for d in docs}
    backend = FakeBackend(adapters={"pi": lambda c, x: 5.0 if (c, x) in chosen else 0.0,
                                    "flat": lambda c, x: 0.0})
    result = prefacc.implicit_reward_accuracy(backend, elix, shots=1, limit=10, adapter="pi",
                                              beta=0.5)
    assert result["acc"] == 1.0 and result["n_ties"] == 0
    assert result["mean_margin"] == pytest.approx(0.5 * 5.0)
    assert {adapter for adapter, _ in backend.calls} == {"pi", None}
    # the implicit reward uses the trainer's boundary: the prompt keeps its final newline
    tie = prefacc.implicit_reward_accuracy(backend, elix, shots=1, limit=10, adapter="flat")
    assert tie["acc"] == 0.0 and tie["n_ties"] == 10
    with pytest.raises(FspoBenchError, match="checkpoint"):
        prefacc.implicit_reward_accuracy(backend, elix, shots=1, limit=10, adapter=None)


def test_curve_variants(elix):
    docs = prefacc.curve_docs(elix, max_shots=2, seed=0, limit=3)
    assert len(docs) == 3 * 3 * len(prefacc.VARIANTS)
    by = {(d["id"], d["variant"], d["n_shots"]): d for d in docs}
    standard = {d["id"]: d for d in prefacc.build_docs(elix, shots=2, seed=0, limit=3)}
    prefs = {prefacc.doc_id("elix", p): p for p in elix.eval_preferences()}
    for doc_id, doc in standard.items():
        pref = prefs[doc_id]
        full = by[(doc_id, "standard", 2)]
        assert full == {**doc, "variant": "standard"}
        assert by[(doc_id, "standard", 1)]["shot_question_ids"] == doc["shot_question_ids"][:1]
        contexts = {by[(doc_id, v, 0)]["context"] for v in prefacc.VARIANTS}
        assert contexts == {few_shot_prompt([], pref.question)}
        shuffled = by[(doc_id, "shuffled", 2)]
        assert shuffled["shot_question_ids"] == doc["shot_question_ids"][::-1]
        contradicting = by[(doc_id, "contradicting", 2)]["context"]
        shots = sample_shots(elix.shot_pool(pref.user_id), 2, seed=0, user_id=pref.user_id,
                             question_id=pref.question_id, exclude_question_ids=elix.eval_questions)
        swapped = [few_shot_prompt([replace(s, chosen=s.rejected, rejected=s.chosen) if i == j
                                    else s for i, s in enumerate(shots)], pref.question)
                   for j in range(2)]
        assert contradicting in swapped
        other = by[(doc_id, "other_user", 2)]
        assert other["shot_user"] != pref.user_id
        pool = {p.question_id for p in elix.shot_pool(other["shot_user"])}
        assert set(other["shot_question_ids"]) <= pool
        assert other["choices"] == doc["choices"] and other["gold"] == doc["gold"]
    with pytest.raises(UnknownNameError):
        prefacc.curve_docs(elix, max_shots=1, variants=["sideways"])


def test_shot_curve_rows_and_files(elix, tmp_path: Path):
    backend = FakeBackend()
    rows = prefacc.shot_curve(backend, elix, max_shots=2, seed=0, limit=4)
    assert len(rows) == len(prefacc.VARIANTS) * 3
    assert {(r["variant"], r["shots"]) for r in rows} == {
        (v, k) for v in prefacc.VARIANTS for k in range(3)}
    assert all(r["n_docs"] == 4 for r in rows)
    zero = {r["acc"] for r in rows if r["shots"] == 0}
    assert len(zero) == 1  # every variant is the zero-shot prompt at k = 0
    prefacc.write_curve(rows, tmp_path / "c.csv", tmp_path / "c.png")
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == ",".join(prefacc.CURVE_COLUMNS) and len(lines) == len(rows) + 1
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cached_loglikelihood_scores_each_pair_once(tmp_path: Path):
    backend = FakeBackend()
    pairs = [("a", "b"), ("a", "cc"), ("a", "b")]
    count = prefacc.LoglikCount()
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        first = prefacc.cached_loglikelihood(backend, pairs, cache=cache, count=count)
        assert first == [-1.0, -2.0, -1.0] and backend.calls == [(None, 2)]
        again = prefacc.cached_loglikelihood(backend, pairs, cache=cache, count=count)
        assert again == first and backend.calls == [(None, 2)]
        prefacc.cached_loglikelihood(backend, pairs, cache=cache, adapter="x")
        assert backend.calls[-1] == ("x", 2)  # another adapter is another key
    assert (count.cached, count.new) == (2, 2)


def test_domain_and_task_names():
    assert prefacc.task_names() == ["fspo_elix_prefacc", "fspo_reviews_prefacc",
                                    "fspo_roleplay_prefacc"]
    assert prefacc.domain_of("fspo_reviews_prefacc") == "reviews"
    with pytest.raises(UnknownNameError, match="fspo_elix_prefacc, fspo_reviews_prefacc"):
        prefacc.domain_of("fspo_nope_prefacc")
    folder = prefacc.lmeval_path()
    assert sorted(p.name for p in folder.glob("*.yaml")) == sorted(
        f"{t}.yaml" for t in prefacc.task_names())


def test_lmeval_dataset_hook_writes_the_docs_it_returns(tmp_path: Path):
    pytest.importorskip("datasets")
    dataset = prefacc.lmeval_dataset("elix", shots="1", seed=0, version=1.0, pretrained="x")
    path = tmp_path / "home" / "lm_eval" / "fspo_elix_prefacc-builtin-shots1-seed0.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(dataset["test"]) == len(lines)
    assert dataset["test"][0] == lines[0]
    expected = prefacc.build_docs(prefacc.load_domain("elix", shots=1), shots=1, seed=0)
    assert lines == expected


# --------------------------------------------------------------------------- the CLI


def app() -> typer.Typer:
    cli = typer.Typer()

    @cli.callback()
    def root() -> None:
        """Test app."""

    add_prefacc_commands(cli)
    return cli


def invoke(*args: str):
    return CliRunner().invoke(app(), list(args))


def test_prefacc_command_with_our_backend(tiny_model: Path, tmp_path: Path):
    out = tmp_path / "acc.json"
    result = invoke("prefacc", "--model", str(tiny_model), "--engine", "backend", "--domain",
                    "elix", "--shots", "1", "--limit", "3", "--out", str(out), "--json",
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report == json.loads(out.read_text())
    (row,) = report["results"]
    assert row["domain"] == "elix" and row["engine"] == "backend" and row["n_docs"] == 3
    samples = [json.loads(x) for x in Path(report["files"]["samples"]).read_text().splitlines()]
    assert len(samples) == 3 and all(len(s["lls"]) == 2 for s in samples)
    # a re-run is answered from the cache
    again = invoke("prefacc", "--model", str(tiny_model), "--engine", "backend", "--domain",
                   "elix", "--shots", "1", "--limit", "3", "--out", str(out), "--device", "cpu")
    assert "cached 6 / new 0" in again.output


def test_prefacc_command_adapter_implicit_reward_and_curve(tiny_model: Path, tmp_path: Path):
    from .tiny_model import build_lora_adapter

    lora = build_lora_adapter(tiny_model, tmp_path / "lora")
    out = tmp_path / "run"
    result = invoke("prefacc", "--model", str(tiny_model), "--checkpoint", str(lora),
                    "--engine", "backend", "--domain", "elix", "--shots", "1", "--limit", "2",
                    "--implicit-reward", "--curve", "--out", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "prefacc.json").read_text())
    implicit = report["results"][0]["implicit_reward"]
    assert implicit["n_docs"] == 2 and implicit["reference"] == "base"
    assert (out / "prefacc_curve.png").is_file()
    assert len((out / "prefacc_curve.csv").read_text().splitlines()) == 1 + 4 * 2
    assert "implicit reward" in result.stdout


def test_prefacc_command_errors(tmp_path: Path):
    bad = invoke("prefacc", "--domain", "nope", "--engine", "backend")
    assert isinstance(bad.exception, UnknownNameError) and bad.exception.exit_code == 2
    assert "fspo_elix_prefacc, fspo_reviews_prefacc, fspo_roleplay_prefacc" in str(bad.exception)
    need = invoke("prefacc", "--implicit-reward", "--engine", "backend")
    assert "needs --checkpoint" in str(need.exception)
    attach = invoke("prefacc", "--attach", "--out", str(tmp_path), "--engine", "backend")
    assert "run directory" in str(attach.exception)
    engine = invoke("prefacc", "--engine", "vllm")
    assert "valid engines: lm-eval, backend" in str(engine.exception)


def test_lmeval_path_command_writes_the_docs(tmp_path: Path):
    result = invoke("lmeval-path", "--domain", "elix", "--shots", "1")
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip()) == prefacc.lmeval_path()
    assert (tmp_path / "home" / "lm_eval" / "fspo_elix_prefacc-builtin-shots1-seed0.jsonl"
            ).is_file()
    assert "--metadata" in result.stderr


def test_attach_adds_leaderboard_columns_to_a_run(tmp_path: Path):
    spec = RunSpec(method="fewshot", domains=["elix", "reviews"], model="embedded")
    results = [DomainResult(d, 60.0, 50.0, 70.0, 1, 1, 0, 0, {"n_queries": 2})
               for d in ("elix", "reviews")]
    run = tmp_path / "run"
    write_json(run / "config.json", {"spec": spec.to_dict()})
    write_json(run / "results.json",
               RunResult(spec, results, spec.config_hash(), "0.1.0", "now").to_dict())
    ours = [{"domain": "elix", "acc": 0.75, "acc_norm": 0.5,
             "implicit_reward": {"acc": 0.875}}]
    assert attach_to_run(run, ours, model="embedded", checkpoint=None) == ["elix"]
    saved = json.loads((run / "results.json").read_text())
    # in percent, under names that never stand for a run's calibrated prefacc
    assert saved["results"][0]["extra"] == {"n_queries": 2, "prefacc_fewshot_summed": 75.0,
                                            "prefacc_fewshot_norm": 50.0,
                                            "prefacc_implicit": 87.5}
    assert "prefacc_fewshot_summed" not in saved["results"][1]["extra"]
    with pytest.raises(FspoBenchError, match="another model"):
        attach_to_run(run, ours, model="/some/other/model", checkpoint=None)
    assert output_paths(run)["json"] == run / "prefacc.json"
    assert output_paths(tmp_path / "x.json")["curve_png"] == tmp_path / "x.curve.png"


def test_importing_the_command_imports_nothing_heavy():
    code = ("import sys; import fspo_bench.prefacc_command, fspo_bench.prefacc; "
            "print(sorted(m for m in ('torch', 'lm_eval', 'transformers', 'datasets') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
