"""``fspo-bench run --method all``: every method that can run, one run directory each."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.run_fixtures import run_cli


def test_all_runs_every_method_that_can_run_and_names_the_ones_it_skips(
        tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FSPO_BENCH_CACHE", str(tmp_path / "cache.sqlite"))
    code = run_cli("run", "--method", "all", "--domain", "elix", "--model", str(tiny_model),
                   "--limit", "1", "--shots", "1", "--max-new-tokens", "4", "--judge", "proxy",
                   "--backend-option", "threads=1", "--out", str(tmp_path / "runs"))
    err = capsys.readouterr().err
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["base", "fewshot", "oracle"]
    for name in ("preft", "fspo", "fspo-rat"):
        assert f"skipping {name}: it needs a trained checkpoint" in err
    # a checkpoint serves one method, so it cannot go with 'all'
    assert run_cli("run", "--method", "all", "--model", str(tiny_model), "--checkpoint",
                   str(tmp_path)) != 0
    assert "--checkpoint serves one method" in capsys.readouterr().err
