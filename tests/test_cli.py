from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fspo_bench import __version__
from fspo_bench.cli import main

HEAVY = ("torch", "transformers", "vllm", "litellm", "lm_eval", "peft", "accelerate")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"fspo-bench {__version__}"


def test_list_methods_plain_is_one_name_per_line(capsys):
    code, out, _ = run_cli(capsys, "list", "methods")
    assert code == 0
    assert out.splitlines() == sorted(out.splitlines())
    assert {"base", "fewshot", "oracle", "preft"} <= set(out.splitlines())


def test_list_json_has_descriptions_and_providers(capsys):
    code, out, _ = run_cli(capsys, "list", "methods", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0
    assert rows["fewshot"]["plugin"] == "baselines"
    assert rows["fewshot"]["description"]


def test_unknown_listing_is_one_line_and_exit_2(capsys):
    code, out, err = run_cli(capsys, "list", "gizmos")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "fspo-bench: error: unknown listing 'gizmos'; valid listings: "
        "domains, methods, backends, judges, metrics"
    ]


def test_plugins_json_lists_builtins(capsys):
    code, out, _ = run_cli(capsys, "plugins", "--json")
    infos = {p["name"]: p for p in json.loads(out)}
    assert code == 0
    assert infos["baselines"]["builtin"] is True
    assert "register_methods" in infos["baselines"]["hooks"]


@pytest.mark.parametrize("argv", [["--help"], ["plugins"], ["list", "methods"]])
def test_cli_imports_nothing_heavy(argv):
    code = (
        "import sys\n"
        "from fspo_bench.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_known_bad_litellm_release_stops_the_cli(capsys, monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "1.107.0" if name == "litellm" else real(name))
    code, out, err = run_cli(capsys, "list", "methods")
    assert code == 1 and out == ""
    assert "litellm 1.107.0" in err and "known-bad" in err


@pytest.mark.parametrize(("argv", "says"), [
    (["run", "--method", "base", "--seed", "abc"], "Invalid value for '--seed'"),
    (["run", "--domain", "elix"], "Missing option '--method'"),
    (["run", "--method", "base", "--sede", "1"], "No such option: --sede"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
])
def test_a_usage_error_is_one_line_and_exit_2(capsys, argv, says):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("fspo-bench: error: ") and says in err and "--help" in err


def test_no_arguments_prints_the_help_and_no_error(capsys):
    code, out, err = run_cli(capsys)
    assert code == 2 and err == ""
    assert "Usage: fspo-bench" in out and "run" in out
