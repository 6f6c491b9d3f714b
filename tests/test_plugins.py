from __future__ import annotations

import pytest

from fspo_bench import plugins
from fspo_bench.errors import PluginError, UnknownNameError

from .plugin_factory import GOOD_METHOD, make_plugin


def test_builtins_register_through_entry_points(plugin_site):
    state = plugins.build_state()
    builtin = {p.name for p in state.plugins if p.builtin}
    assert "baselines" in builtin
    assert {"base", "fewshot", "oracle", "preft"} <= set(state.registries["method"])
    assert state.registries["method"]["fewshot"].provider == "baselines"
    assert state.problems == []


def test_third_party_plugin_is_found_and_listed(plugin_site):
    make_plugin(plugin_site, "tp-good", "tp_good", GOOD_METHOD.format(name="tp-echo"))
    state = plugins.build_state()
    info = next(p for p in state.plugins if p.name == "tp_good")
    assert not info.builtin and info.distribution == "tp-good"
    assert info.hooks == ["register_methods"]
    assert state.registries["method"]["tp-echo"].provider == "tp_good"


def test_plugin_that_raises_on_import_warns_once_and_rest_works(plugin_site, capsys):
    make_plugin(plugin_site, "tp-broken", "tp_broken", "raise RuntimeError('boom at import')\n")
    make_plugin(plugin_site, "tp-good", "tp_good", GOOD_METHOD.format(name="tp-echo"))
    state = plugins.build_state()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "tp_broken" in lines[0] and "boom at import" in lines[0]
    assert "tp-echo" in state.registries["method"] and "fewshot" in state.registries["method"]
    assert next(p for p in state.plugins if p.name == "tp_broken").error


def test_strict_mode_makes_a_broken_plugin_fatal(plugin_site, monkeypatch):
    make_plugin(plugin_site, "tp-broken", "tp_broken", "raise RuntimeError('boom')\n")
    monkeypatch.setenv("FSPO_BENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="tp_broken"):
        plugins.build_state()


def test_duplicate_name_names_both_providers_and_keeps_the_first(plugin_site, capsys):
    make_plugin(plugin_site, "tp-dup", "tp_dup", GOOD_METHOD.format(name="fewshot"))
    state = plugins.build_state()
    err = capsys.readouterr().err
    assert "'fewshot'" in err and "'baselines'" in err and "'tp_dup'" in err
    assert state.registries["method"]["fewshot"].provider == "baselines"


def test_misspelled_hook_is_caught_by_check_pending(plugin_site, capsys):
    code = GOOD_METHOD.format(name="tp-echo").replace("def register_methods", "def register_method")
    make_plugin(plugin_site, "tp-typo", "tp_typo", code)
    state = plugins.build_state()
    assert "register_method" in capsys.readouterr().err
    assert "tp-echo" not in state.registries["method"]


def test_hook_that_raises_is_reported(plugin_site, capsys):
    code = """
    from fspo_bench import hookimpl

    @hookimpl
    def register_methods(register):
        raise ValueError("bad registration")
    """
    make_plugin(plugin_site, "tp-raise", "tp_raise", code)
    state = plugins.build_state()
    assert "bad registration" in capsys.readouterr().err
    assert "fewshot" in state.registries["method"]


def test_registering_a_non_method_is_rejected(plugin_site, capsys):
    code = """
    from fspo_bench import hookimpl

    @hookimpl
    def register_methods(register):
        register(object)
    """
    make_plugin(plugin_site, "tp-wrong", "tp_wrong", code)
    plugins.build_state()
    assert "not a Method" in capsys.readouterr().err


def test_disable_autoload_keeps_builtins_only(plugin_site, monkeypatch):
    make_plugin(plugin_site, "tp-good", "tp_good", GOOD_METHOD.format(name="tp-echo"))
    monkeypatch.setenv("FSPO_BENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    state = plugins.build_state()
    assert "tp-echo" not in state.registries["method"]
    assert "fewshot" in state.registries["method"]


def test_load_plugins_selects_by_name(plugin_site, monkeypatch):
    make_plugin(plugin_site, "tp-one", "tp_one", GOOD_METHOD.format(name="tp-one"))
    make_plugin(plugin_site, "tp-two", "tp_two", GOOD_METHOD.format(name="tp-two"))
    monkeypatch.setenv("FSPO_BENCH_LOAD_PLUGINS", "tp-two")
    state = plugins.build_state()
    assert "tp-two" in state.registries["method"]
    assert "tp-one" not in state.registries["method"]


def test_unknown_name_lists_valid_names(plugin_site):
    with pytest.raises(UnknownNameError) as info:
        plugins.get("method", "nope")
    assert info.value.exit_code == 2
    assert "fewshot" in str(info.value) and "'nope'" in str(info.value)
