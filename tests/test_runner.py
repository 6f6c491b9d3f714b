"""The runner end to end on a tiny model: files, caching, re-judging, dry runs, kill and resume."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fspo_bench.cache import ResponseCache
from fspo_bench.records import RunSpec
from fspo_bench.rundir import read_generations, read_judgments
from fspo_bench.runner import Runner, plan

from .run_fixtures import canary_count

GENERATION = {"max_new_tokens": 12, "temperature": 0.0, "repetition_penalty": 1.0}


def spec(model_dir: Path, **overrides) -> RunSpec:
    fields = dict(method="fewshot", domains=["elix"], model=str(model_dir), judge="proxy", limit=4,
                  shots=1, seed=0, generation=GENERATION)
    return RunSpec(**{**fields, **overrides})


def run(model_dir: Path, out: Path, cache: ResponseCache, **overrides
        ) -> tuple[Runner, list[str]]:
    logs: list[str] = []
    runner = Runner(spec(model_dir, **overrides), out, cache, progress=lambda *a: None,
                    log=logs.append)
    runner.run()
    return runner, logs


def test_a_run_writes_every_stage_file(tiny_model, tmp_path):
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        runner, logs = run(tiny_model, tmp_path / "run", cache)
    generations = read_generations(tmp_path / "run")
    judgments = read_judgments(tmp_path / "run")
    assert len(generations) == 8 and len(judgments) == 8
    assert {g.meta["role"] for g in generations} == {"method", "reference"}
    assert {j.meta["order"] for j in judgments} == {"method_first", "reference_first"}
    (result,) = runner.score().results
    assert result.n_wins + result.n_losses + result.n_ties + result.n_invalid == 8
    assert result.extra["n_queries"] == 4
    assert logs[0] == "generate method (fewshot): cached 0 / new 4"
    for name in ("config.json", "generations.jsonl", "judgments.jsonl", "results.json"):
        assert (tmp_path / "run" / name).is_file()


def test_a_finished_run_re_run_makes_no_model_call_and_writes_the_same_files(tiny_model,
                                                                              tmp_path):
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        run(tiny_model, tmp_path / "run", cache)
        before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
        _, logs = run(tiny_model, tmp_path / "run", cache)
    assert all(line.endswith("/ new 0") for line in logs), logs
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    assert after == before


def test_re_judging_never_touches_the_model(tiny_model, tmp_path):
    model = tmp_path / "model"
    model.symlink_to(tiny_model, target_is_directory=True)
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        runner, _ = run(model, tmp_path / "run", cache)
        generations = (tmp_path / "run" / "generations.jsonl").read_bytes()
        model.unlink()  # the model is gone: any generation would fail
        runner.judge("oracle")
        result = runner.score()
    assert (tmp_path / "run" / "generations.jsonl").read_bytes() == generations
    assert result.spec.judge == "oracle"
    assert result.results[0].n_invalid == 8  # the oracle cannot judge generated text


def test_dry_run_counts_calls_without_making_them(tiny_model, tmp_path):
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        before = plan(spec(tiny_model), cache)
        assert len(cache) == 0
        run(tiny_model, tmp_path / "run", cache)
        after = plan(spec(tiny_model), cache)
    canaries = canary_count(tmp_path / "run")  # judged too, and counted
    assert canaries > 0
    assert (before.generations.new, before.judgments.new) == (8, 8 + canaries)
    assert (after.generations.new, after.judgments.new) == (0, 0)
    assert (after.generations.cached, after.judgments.cached) == (8, 8 + canaries)
    assert before.cost == 0.0


def test_unknown_names_fail_before_any_work(capsys, tmp_path):
    from .test_cli import run_cli

    code, _, err = run_cli(capsys, "run", "--method", "nope", "--cache",
                           str(tmp_path / "c.sqlite"))
    assert code == 2 and "valid methods:" in err
    code, _, err = run_cli(capsys, "run", "--method", "fewshot", "--domain", "nope")
    assert code == 2 and "valid domains:" in err


def cache_rows(path: Path) -> int:
    try:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT count(*) FROM responses").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_a_killed_run_resumes_without_repeating_calls(tiny_model, tmp_path):
    args = [sys.executable, "-m", "fspo_bench", "run", "--method", "fewshot", "--domain",
            "elix", "--model", str(tiny_model), "--limit", "24", "--shots", "1",
            "--max-new-tokens", "24", "--repetition-penalty", "1.0"]
    killed_cache, clean_cache = tmp_path / "killed.sqlite", tmp_path / "clean.sqlite"
    child = subprocess.Popen([*args, "--cache", str(killed_cache), "--out", str(tmp_path / "a")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while cache_rows(killed_cache) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    done_before_kill = cache_rows(killed_cache)
    assert 10 <= done_before_kill < 96, "kill landed outside the run"
    resumed = subprocess.run([*args, "--cache", str(killed_cache), "--out", str(tmp_path / "a")],
                             capture_output=True, text=True, check=True)
    news = {line.split(": ")[1]: int(line.rsplit("new ", 1)[1])
            for line in resumed.stderr.splitlines() if "/ new " in line}
    canaries = news.pop("judge canaries (proxy)")  # all after the kill
    assert canaries > 0
    # 24 x 2 generations + 24 x 2 judgments
    assert sum(news.values()) == 96 - done_before_kill
    subprocess.run([*args, "--cache", str(clean_cache), "--out", str(tmp_path / "b")],
                   capture_output=True, check=True)
    for name in ("generations.jsonl", "judgments.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


PLANTED_KEY = "sk-test-PLANTED-0123456789abcdef"


def test_a_run_through_litellm_against_fspo_bench_serve(tiny_model, tmp_path, monkeypatch):
    """The litellm path end to end over real HTTP, with a planted API key that must never be
    written anywhere."""
    import threading

    if importlib.util.find_spec("litellm") is None:  # importing it here would skip our setup
        pytest.skip("litellm is not installed (extra [api])")
    from fspo_bench.backends.hf import HFBackend
    from fspo_bench.serve import make_server

    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
    server = make_server(HFBackend(str(tiny_model)), port=0, model_name="tiny",
                         log_requests=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api_base = f"http://127.0.0.1:{server.server_address[1]}/v1"
        with ResponseCache(tmp_path / "cache.sqlite") as cache:
            runner, logs = run(tiny_model, tmp_path / "run", cache, backend="litellm",
                               model="openai/tiny", backend_options={"api_base": api_base})
            _, again = run(tiny_model, tmp_path / "run", cache, backend="litellm",
                           model="openai/tiny", backend_options={"api_base": api_base})
    finally:
        server.shutdown()
        server.server_close()
    generations = read_generations(tmp_path / "run")
    assert len(generations) == 8 and all(isinstance(g.raw, str) for g in generations)
    assert logs[0] == "generate method (fewshot): cached 0 / new 4"
    assert all(line.endswith("/ new 0") for line in again)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "cache.sqlite" for p in written)
    for path in written:
        assert PLANTED_KEY.encode() not in path.read_bytes(), path


def test_re_scoring_keeps_columns_attached_by_other_commands(tiny_model, tmp_path):
    import json

    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        runner, _ = run(tiny_model, tmp_path / "run", cache)
        path = tmp_path / "run" / "results.json"
        results = json.loads(path.read_text())
        results["results"][0]["extra"]["prefacc"] = 0.75
        path.write_text(json.dumps(results))
        rescored = runner.score()
    assert rescored.results[0].extra["prefacc"] == 0.75
    assert rescored.results[0].extra["n_queries"] == 4


def test_bad_rows_are_reported_and_strict_makes_them_fatal(tiny_model, tmp_path):
    from fspo_bench import plugins
    from fspo_bench.datafiles import DataError, write_rows

    rows = plugins.get("domain", "elix")().builtin_rows()
    rows[0] = {**rows[0], "label": 7}
    data = write_rows(rows, tmp_path / "elix.jsonl")
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        _, logs = run(tiny_model, tmp_path / "run", cache, data=str(data), limit=1)
        assert logs[0].startswith("elix: skipped 1 bad row(s)") and "row 1" in logs[0]
        with pytest.raises(DataError, match="label must be 0 or 1"):
            Runner(spec(tiny_model, data=str(data)), tmp_path / "strict", cache,
                   strict=True).generate()


def test_re_scoring_a_run_from_before_calibration_keeps_its_numbers(tmp_path):
    import shutil

    from fspo_bench.cache import ResponseCache
    from fspo_bench.runner import load_runner

    old = Path(__file__).parent / "data" / "old_runs" / "fspo"
    run = tmp_path / "fspo"
    shutil.copytree(old, run)
    before = json.loads((old / "results.json").read_text())
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        result = load_runner(run, cache, log=lambda _: None).score()
    for then, now in zip(before["results"], result.results, strict=True):
        for key in ("prefacc", "prefacc_n", "prefacc_norm", "prefacc_ci_low"):
            assert now.extra[key] == then["extra"][key]  # the 0-1 summed accuracy, as it was
        assert "prefacc_summed" not in now.extra  # so the leaderboard reads it as old-format
