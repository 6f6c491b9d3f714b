"""``fspo-bench train`` through the plugin hook, ``python -m fspo_bench.trainers``, accelerate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fspo_bench.trainers import plugin
from fspo_bench.trainers.cli import accelerate_command, fsdp_config_path

ROOT = Path(__file__).resolve().parents[1]


def app() -> typer.Typer:
    cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @cli.callback()
    def root() -> None:
        """fspo-bench (test app)."""

    plugin.register_commands(cli)
    return cli


def test_plugin_registers_the_train_command_and_the_methods():
    registered: list[type] = []
    plugin.register_methods(registered.append)
    assert [m.name for m in registered] == ["fspo", "fspo-rat"]
    assert all(m.needs_checkpoint for m in registered)
    assert [m.rat for m in registered] == [False, True]
    result = CliRunner().invoke(app(), ["train", "--help"])
    assert result.exit_code == 0
    for flag in ("--method", "--domain", "--model", "--lora", "--steps", "--out", "--loss",
                 "--beta", "--lr", "--batch-size", "--grad-accum", "--shots", "--data",
                 "--preset", "--seed", "--launcher"):
        assert flag in result.output


def test_importing_the_plugin_and_building_the_cli_imports_nothing_heavy():
    code = (
        "import sys, typer\n"
        "from fspo_bench.trainers import plugin\n"
        "import fspo_bench.trainers.cli, fspo_bench.trainers.methods, fspo_bench.trainers.data\n"
        "import fspo_bench.trainers.presets, fspo_bench.trainers.losses\n"
        "import fspo_bench.logprobs, fspo_bench.trainers.trainer\n"
        "app = typer.Typer()\n"
        "plugin.register_commands(app)\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'accelerate') "
        "if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_accelerate_launcher_runs_the_module_with_the_shipped_fsdp_config():
    assert fsdp_config_path().is_file()
    text = fsdp_config_path().read_text()
    assert "distributed_type: FSDP" in text and "FULL_SHARD" in text
    argv = accelerate_command({"method": "fspo", "domain": "elix", "lora": True, "steps": 3,
                               "out": None}, config_file=None, num_processes=4)
    assert "launch" in " ".join(argv[:3])
    assert argv[argv.index("--config_file") + 1] == str(fsdp_config_path())
    assert argv[argv.index("--num_processes") + 1] == "4"
    tail = argv[len(argv) - 1 - argv[::-1].index("-m"):]
    assert tail == ["-m", "fspo_bench.trainers", "--method", "fspo", "--domain", "elix", "--lora",
                    "--steps", "3"]


def test_module_entry_point_has_the_same_options():
    result = subprocess.run([sys.executable, "-m", "fspo_bench.trainers", "--help"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--method" in result.stdout and "--preset" in result.stdout


def test_unknown_method_is_one_line(tmp_path):
    from fspo_bench.errors import FspoBenchError

    result = CliRunner().invoke(app(), ["train", "--method", "rlhf", "--domain", "elix"])
    assert isinstance(result.exception, FspoBenchError)
    assert "valid: sft, preft, fspo, fspo-rat, oracle" in str(result.exception)


def elix_rows() -> list[dict]:
    rows = []
    for q in range(8):
        for user in ("child", "expert"):
            rows.append({"prompt": f"Why is thing {q} so?", "response_x": f"Simple words {q}.",
                         "response_y": f"Technical mechanism {q}.", "label": 0 if user == "child"
                         else 1, "level_x": "child", "level_y": "expert", "scorer_level": user})
    return rows


@pytest.mark.slow
def test_train_command_trains_a_domain_file_and_prints_how_to_evaluate(tmp_path):
    pytest.importorskip("torch")
    from tests.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "model")
    data = tmp_path / "elix.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in elix_rows()))
    out = tmp_path / "out"
    result = CliRunner().invoke(app(), [
        "train", "--method", "fspo-rat", "--domain", "elix", "--data", str(data), "--model",
        str(model), "--preset", "cpu-tiny", "--steps", "2", "--shots", "1", "--out", str(out),
        "--eval-limit", "2", "--no-progress", "--lora", "--lora-r", "4"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    card = json.loads((out / "fspo_card.json").read_text())
    assert card["method"] == "fspo-rat" and card["kind"] == "lora" and card["steps"] == 2
    assert card["hyperparameters"]["preset"] == "cpu-tiny"
    assert card["examples"]["used"] > 0
    assert f"fspo-bench run --method fspo-rat --domain elix --model {model}" in result.output
    assert "held-out loglik accuracy" in result.output


def test_fspo_bench_cli_lists_the_methods_and_the_train_command(plugin_site, capsys):
    """Through the real plugin loading: the entry point once pyproject declares it, else the same
    hooks announced by a stand-in distribution."""
    from importlib.metadata import entry_points

    from fspo_bench import plugins
    from fspo_bench.cli import main
    from tests.plugin_factory import make_plugin

    if not any(ep.value == "fspo_bench.trainers.plugin"
               for ep in entry_points(group="fspo_bench")):
        make_plugin(plugin_site, "trainers-standin", "tp_trainers",
                    "from fspo_bench.trainers.plugin import register_commands, register_methods\n")
        plugins.reset()
    with pytest.raises(SystemExit) as info:
        main(["list", "methods"])
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    assert {"fspo", "fspo-rat", "preft"} <= set(out.split())
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    out, _ = capsys.readouterr()
    assert info.value.code == 0 and "--method" in out and "--launcher" in out
