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
