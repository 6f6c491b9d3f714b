"""Known-bad litellm releases are refused; secret environment values are scrubbed from text."""

from __future__ import annotations

import importlib.metadata

import pytest

from fspo_bench import FspoBenchError, safety
from fspo_bench.safety import REDACTED, check_litellm_version, scrub_secrets


def fake_version(value: str | None):
    def version(name: str) -> str:
        assert name == "litellm"
        if value is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return value

    return version


@pytest.mark.parametrize("bad", ["1.82.7", "1.82.8", "1.107.0", "1.107", "1.82.7+local"])
def test_known_bad_litellm_versions_are_refused(monkeypatch, bad):
    monkeypatch.setattr(safety.importlib.metadata, "version", fake_version(bad))
    with pytest.raises(FspoBenchError) as info:
        check_litellm_version()
    message = str(info.value)
    assert f"litellm {bad} " in message
    assert "pip install 'litellm>=1.83.7,!=1.107.0'" in message


@pytest.mark.parametrize("good", ["1.83.7", "1.106.2", "1.107.1", "1.82.6", "1.82.70"])
def test_other_litellm_versions_pass(monkeypatch, good):
    monkeypatch.setattr(safety.importlib.metadata, "version", fake_version(good))
    assert check_litellm_version() == good


def test_missing_litellm_passes(monkeypatch):
    monkeypatch.setattr(safety.importlib.metadata, "version", fake_version(None))
    assert check_litellm_version() is None


def test_litellm_backend_refuses_a_bad_version_before_importing_it(monkeypatch):
    from fspo_bench.backends.litellm_backend import LiteLLMBackend, import_litellm

    monkeypatch.setattr(safety.importlib.metadata, "version", fake_version("1.82.8"))
    with pytest.raises(FspoBenchError, match="1.82.8"):
        LiteLLMBackend("openai/gpt-4o-2024-08-06")
    with pytest.raises(FspoBenchError, match="1.82.8"):
        import_litellm()


def test_scrub_secrets_removes_secret_env_values(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-PLANTED-1234")
    monkeypatch.setenv("HF_TOKEN", "hf_plantedtoken")
    monkeypatch.setenv("MY_CLIENT_SECRET", "s3cr3t-value")
    monkeypatch.setenv("SOME_KEY", "1")  # too short to scrub: would mangle every "1"
    monkeypatch.setenv("GREETING", "hello world")  # not a secret name
    text = ("key sk-test-PLANTED-1234 token hf_plantedtoken secret s3cr3t-value "
            "count 1 hello world")
    scrubbed = scrub_secrets(text)
    assert "sk-test-PLANTED-1234" not in scrubbed
    assert "hf_plantedtoken" not in scrubbed
    assert "s3cr3t-value" not in scrubbed
    assert scrubbed == (f"key {REDACTED} token {REDACTED} secret {REDACTED} "
                        f"count 1 hello world")


def test_scrub_secrets_removes_the_longest_secret_whole(monkeypatch):
    monkeypatch.setenv("A_KEY", "abcdef")
    monkeypatch.setenv("B_KEY", "abcdef-and-more")
    assert scrub_secrets("x abcdef-and-more y abcdef") == f"x {REDACTED} y {REDACTED}"
    assert scrub_secrets("extra value here", extra=["value here"]) == f"extra {REDACTED}"
