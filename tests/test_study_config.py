"""Study files: every key checked, and the shipped example picks its questions from Roleplay."""

from __future__ import annotations

from pathlib import Path

import pytest

from fspo_bench.errors import FspoBenchError
from fspo_bench.study.config import DEFAULT_CONSENT, load_study, parse_study
from fspo_bench.study.items import study_items

from .study_fixtures import study_dict, write_study

EXAMPLE = Path(__file__).resolve().parents[1] / "study" / "examples" / "roleplay.yaml"


def test_the_example_study_file_loads_with_the_paper_design():
    config = load_study(EXAMPLE)
    assert config.domain == "roleplay" and config.questions == 11
    assert config.comparisons == [("fspo", "base"), ("fspo", "fewshot")]
    assert config.methods == ["fspo", "base", "fewshot"]
    assert config.database == EXAMPLE.parent / "study.sqlite"
    assert config.checkpoints["fspo"] == str(EXAMPLE.parent / "checkpoints" / "fspo-roleplay")
    assert "CONSENT TEXT PLACEHOLDER" in config.consent
    spec = config.run_spec("fspo")
    assert spec.checkpoint == config.checkpoints["fspo"] and config.run_spec("base").checkpoint \
        is None


def test_items_come_from_the_domain_seeded_and_shared_by_everyone():
    config = load_study(EXAMPLE)
    items = study_items(config)
    assert len(items.shots) == 8 and len(items.questions) == 11
    shot_ids = {s.question_id for s in items.shots}
    new_ids = {qid for qid, _ in items.questions}
    assert len(shot_ids) == 8 and len(new_ids) == 11 and not shot_ids & new_ids
    assert all(a != b for a, b in (s.responses for s in items.shots))
    assert study_items(config) == items
    other = parse_study({**study_dict(shots=8, questions=11), "seed": 1}, EXAMPLE.parent)
    assert study_items(other) != items


def test_defaults_and_overrides(tmp_path):
    config = load_study(write_study(tmp_path), database=tmp_path / "elsewhere.sqlite")
    assert config.database == tmp_path / "elsewhere.sqlite"
    assert config.consent == DEFAULT_CONSENT and config.allow_tie and config.backend == "hf"
    assert (config.rate_limit, config.rate_window_s) == (60, 60.0)
    assert parse_study(study_dict(judges={"pairwise": {"model": "x/y"}, "proxy": None}),
                       tmp_path).judges == {"pairwise": {"model": "x/y"}, "proxy": {}}
    assert parse_study(study_dict(comparisons=[["a", "b"]]), tmp_path).comparisons == [("a", "b")]


@pytest.mark.parametrize("change,message", [
    ({"colour": "blue"}, "unknown key(s) colour"),
    ({"title": None}, "missing key(s) title"),
    ({"comparisons": ["fspo"]}, "comparisons"),
    ({"comparisons": ["fspo vs fspo"]}, "comparisons"),
    ({"comparisons": "fspo vs base"}, "comparisons"),
    ({"shots": 0}, "shots"),
    ({"questions": "3"}, "questions"),
    ({"judges": "proxy"}, "judges"),
    ({"rate_limit": {"per_minute": 3}}, "rate_limit"),
    ({"rate_limit": {"window_s": "soon"}}, "window_s"),
    ({"seed": "zero"}, "seed"),
    ({"generation": [1, 2]}, "generation"),
    ({"checkpoints": "fspo"}, "checkpoints"),
])
def test_bad_study_files_are_one_line_errors(tmp_path, change, message):
    raw = {k: v for k, v in {**study_dict(), **change}.items() if v is not None}
    with pytest.raises(FspoBenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_study(raw, tmp_path)


def test_unreadable_study_files_name_the_file(tmp_path):
    with pytest.raises(FspoBenchError, match="no such study file"):
        load_study(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: [unclosed\n")
    with pytest.raises(FspoBenchError, match="bad.yaml: not valid YAML"):
        load_study(bad)


def test_a_domain_too_small_for_the_study_is_an_error(tmp_path):
    with pytest.raises(FspoBenchError, match="held-out questions"):
        study_items(parse_study(study_dict(questions=10_000), tmp_path))


def test_the_embedded_example_serves_the_shipped_fspo_adapter_without_naming_it():
    from fspo_bench.runner import make_method
    from fspo_bench.study.config import check_study

    config = load_study(EXAMPLE.with_name("embedded.yaml"))
    assert config.model == "embedded" and not config.checkpoints
    check_study(config)  # fspo needs a checkpoint: the shipped one counts
    method = make_method(config.run_spec("fspo"), "fspo", config.domain)
    assert Path(method.checkpoint).parent.name == "fspo"
    assert Path(method.checkpoint).name == "roleplay"
    # on any other model, the checkpoint must be named
    with pytest.raises(FspoBenchError, match="needs a trained checkpoint"):
        check_study(parse_study({**study_dict(), "model": "some/model"}, EXAMPLE.parent))
