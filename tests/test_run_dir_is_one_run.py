"""A run directory is one run: another configuration is refused (or replaced whole with
--overwrite), one writer at a time, and files of another run are refused by score, judge and
leaderboard build (issue: reliability, second sweep)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fspo_bench.cache import ResponseCache
from fspo_bench.errors import FspoBenchError
from fspo_bench.records import RunSpec
from fspo_bench.rundir import CONFIG, GENERATIONS, claimed, read_json
from fspo_bench.runner import Runner, load_runner

from .run_fixtures import run_cli


def spec(model: Path, **changes) -> RunSpec:
    base = dict(method="fewshot", domains=["elix"], model=str(model), judge="proxy", limit=2,
                shots=1, generation={"max_new_tokens": 4}, backend_options={"threads": 1})
    return RunSpec(**{**base, **changes})


def run(model: Path, out: Path, cache: ResponseCache, **changes):
    return Runner(spec(model, **changes), out, cache, progress=lambda *a: None,
                  log=lambda _: None).run()


@pytest.fixture
def finished(tiny_model, tmp_path):
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        run(tiny_model, tmp_path / "R", cache)
    return tmp_path / "R"


def test_another_configuration_in_out_is_refused_and_nothing_is_written(tiny_model, finished,
                                                                         tmp_path):
    before = {p.name: p.read_bytes() for p in finished.iterdir()}
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        with pytest.raises(FspoBenchError, match="another configuration.*--overwrite"):
            run(tiny_model, finished, cache, method="base", seed=3)
    assert {p.name: p.read_bytes() for p in finished.iterdir()} == before


def test_overwrite_replaces_the_run_whole(tiny_model, finished, tmp_path):
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        result = Runner(spec(tiny_model, method="base", seed=3), finished, cache,
                        progress=lambda *a: None, log=lambda _: None, overwrite=True).run()
        rescored = load_runner(finished, cache).score()
    assert result.spec.method == "base" and result.results[0].winrate == 50.0
    assert rescored.results[0].winrate == 50.0  # base vs base: nothing of fewshot is left
    assert read_json(finished / CONFIG)["spec"]["method"] == "base"


def test_files_of_another_run_are_refused_by_score_judge_and_leaderboard(tiny_model, finished,
                                                                          tmp_path):
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        run(tiny_model, tmp_path / "other", cache, seed=5)
    shutil.copy(tmp_path / "other" / GENERATIONS, finished / GENERATIONS)
    with ResponseCache(tmp_path / "cache.sqlite") as cache:
        runner = load_runner(finished, cache)
        for stage in (runner.score, runner.judge):
            with pytest.raises(FspoBenchError, match="generations.jsonl: not the file"):
                stage()
    assert run_cli("leaderboard", "build", str(finished), "--out", str(tmp_path / "lb")) != 0
    assert not (tmp_path / "lb").exists()


def test_a_second_writer_is_refused_in_one_line(tiny_model, finished, tmp_path, capsys):
    with claimed(finished):  # another process holds the directory
        code = run_cli("score", str(finished))
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "in use by another fspo-bench process" in err[0]
    assert run_cli("score", str(finished)) == 0  # free again
