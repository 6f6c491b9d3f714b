"""Tests for the ``hf`` backend on a tiny random Llama built on the fly (offline, CPU, seconds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from fspo_bench import FspoBenchError, GenerationParams, GenerationRequest  # noqa: E402
from fspo_bench.backends.hf import HFBackend  # noqa: E402
from fspo_bench.fingerprint import folder_fingerprint  # noqa: E402
from tests.tiny_model import build_lora_adapter, build_tiny_model  # noqa: E402

PROMPTS = [
    "What should I cook",
    "Hi",
    "# Example 1\n## Question \nWhich book would you recommend for a long train ride?\n"
    "## Preferred Response \n",
    "The quick brown fox jumps over the lazy dog.",
    "x",
]


def raw(prompt: str, adapter: str | None = None, stop=(), **params) -> GenerationRequest:
    params.setdefault("max_new_tokens", 16)
    return GenerationRequest(
        params=GenerationParams(**params), prompt=prompt, stop=list(stop), adapter=adapter
    )


def chat(content: str, **params) -> GenerationRequest:
    params.setdefault("max_new_tokens", 16)
    return GenerationRequest(
        params=GenerationParams(**params), messages=[{"role": "user", "content": content}]
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's matrices are too small for a second thread to help; on a busy machine
    torch's waiting threads only slow it down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def lora_dirs(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("lora")
    return [
        build_lora_adapter(tiny_model_dir, root / "one", seed=1),
        build_lora_adapter(tiny_model_dir, root / "two", seed=2),
    ]


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> HFBackend:
    return HFBackend(str(tiny_model_dir), batch_size=8).load()


# ----------------------------------------------------------------------------- plugin


def test_importing_the_plugin_does_not_import_torch():
    code = (
        "import sys, fspo_bench.backends.plugin, fspo_bench.backends.hf, fspo_bench.embedded\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'accelerate') "
        "if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plugin_registers_the_hf_backend():
    from fspo_bench.backends import plugin

    registered: list[type] = []
    plugin.register_backends(register=registered.append)
    assert HFBackend in registered
    assert HFBackend.name == "hf" and HFBackend.description


def test_hf_backend_is_found_through_the_entry_point():
    assert any(ep.value == "fspo_bench.backends.plugin" for ep in entry_points(group="fspo_bench"))
    from fspo_bench import plugins

    plugins.reset()
    try:
        assert plugins.get("backend", "hf") is HFBackend
    finally:
        plugins.reset()


def test_bad_options_are_refused_without_loading_anything():
    with pytest.raises(FspoBenchError, match="unknown option"):
        HFBackend("whatever", temprature=1)
    with pytest.raises(FspoBenchError, match="unknown dtype"):
        HFBackend("whatever", dtype="int3")
    with pytest.raises(FspoBenchError, match="batch_size"):
        HFBackend("whatever", batch_size=0)
    with pytest.raises(FspoBenchError, match="threads"):
        HFBackend("whatever", threads="many")
    assert HFBackend("whatever", batch_size="4").batch_size == 4
    assert HFBackend("whatever", threads="1").threads == 1


def test_tiny_model_is_the_same_every_time(tiny_model_dir: Path, tmp_path: Path):
    expected = folder_fingerprint(tiny_model_dir)
    assert folder_fingerprint(build_tiny_model(tmp_path / "again")) == expected
    # Another process too (the tokenizer trainer's hash maps are seeded per process).
    code = (
        "import sys; from tests.tiny_model import build_tiny_model; "
        "from fspo_bench.fingerprint import folder_fingerprint; "
        "print(folder_fingerprint(build_tiny_model(sys.argv[1])))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "other")],
        check=True, capture_output=True, text=True, cwd=root,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.stdout.strip() == expected


# ----------------------------------------------------------------------------- generation


def test_batched_greedy_equals_one_by_one(backend: HFBackend):
    requests = [raw(p) for p in PROMPTS] + [
        raw(PROMPTS[0], max_new_tokens=5),
        raw(PROMPTS[2], max_new_tokens=9, repetition_penalty=1.5),
        chat("Which book would you recommend?"),
    ]
    batched = backend.generate(requests)
    single = [backend.generate([r])[0] for r in requests]
    assert batched == single
    assert all(batched[:5]), "the tiny model should produce some text for every prompt"
    # Different prompts give different outputs (the test would be vacuous otherwise).
    assert len(set(batched[:5])) == 5


def test_batch_size_does_not_change_greedy_output(tiny_model_dir: Path, backend: HFBackend):
    requests = [raw(p, repetition_penalty=1.3) for p in PROMPTS]
    small = HFBackend(str(tiny_model_dir), batch_size=2)
    assert small.generate(requests) == backend.generate(requests)


def test_repetition_penalty_changes_output_and_ignores_padding(backend: HFBackend):
    plain = backend.generate([raw(PROMPTS[0], max_new_tokens=24)])
    penalized = backend.generate([raw(PROMPTS[0], max_new_tokens=24, repetition_penalty=3.0)])
    assert plain != penalized
    # The shortest prompt is padded most in a batch with a long one; the penalty must not
    # count the padding as text it has seen.
    pair = [raw(PROMPTS[1], repetition_penalty=3.0), raw(PROMPTS[2], repetition_penalty=3.0)]
    assert backend.generate(pair) == [backend.generate([r])[0] for r in pair]


def test_repetition_penalty_processor_skips_each_rows_padding():
    from transformers import RepetitionPenaltyLogitsProcessor

    from fspo_bench.backends.hf import _decoding_classes

    penalty_class, _ = _decoding_classes()
    ids = torch.tensor([[5, 5, 1, 2], [3, 4, 1, 2]])  # row 0 is left-padded with token 5
    scores = torch.tensor([[1.0, -1.0, 2.0, 0.5, 1.0, 4.0]] * 2)
    out = penalty_class([2.0, 2.0], [2, 0])(ids, scores.clone())
    assert out.tolist() == [
        [1.0, -2.0, 1.0, 0.5, 1.0, 4.0],  # token 5 only appears as padding: not penalized
        [1.0, -2.0, 1.0, 0.25, 0.5, 4.0],
    ]
    # Without padding it is exactly transformers' repetition penalty.
    reference = RepetitionPenaltyLogitsProcessor(2.0)(ids[1:], scores[1:].clone())
    assert torch.equal(out[1:], reference)


def test_tokenizer_without_pad_token_pads_with_eos(tmp_path: Path):
    folder = build_tiny_model(tmp_path / "nopad", pad_token=False)
    backend = HFBackend(str(folder), batch_size=4)
    requests = [raw(p) for p in PROMPTS]
    assert backend.generate(requests) == [backend.generate([r])[0] for r in requests]
    loaded = backend.load()._base
    assert loaded.pad_id == loaded.tokenizer.eos_token_id


def test_max_new_tokens(backend: HFBackend):
    assert backend.generate([raw(PROMPTS[0], max_new_tokens=0)]) == [""]
    short, long = backend.generate(
        [raw(PROMPTS[0], max_new_tokens=4), raw(PROMPTS[0], max_new_tokens=12)]
    )
    # A cut can split a multi-byte character (decoded as U+FFFD): compare the whole characters.
    assert long.startswith(short.rstrip("\ufffd"))
    assert len(short) < len(long)


def test_stop_strings_cut_the_text(backend: HFBackend):
    full = backend.generate([raw(PROMPTS[3], max_new_tokens=24)])[0]
    # An ASCII stop string found in the text, past its start.
    stop = next(
        full[i : i + 2] for i in range(3, len(full) - 1) if full[i : i + 2].isascii()
        and full[i : i + 2].isalnum()
    )
    expected = full[: full.index(stop)]
    cut = backend.generate([raw(PROMPTS[3], max_new_tokens=24, stop=["\x00never", stop])])[0]
    assert cut == expected
    # Per row in a batch: the other row is not cut.
    both = backend.generate([raw(PROMPTS[3], max_new_tokens=24, stop=[stop]), raw(PROMPTS[0])])
    assert both == [expected, backend.generate([raw(PROMPTS[0])])[0]]


def test_sampling_is_seeded_and_independent_of_the_batch(backend: HFBackend):
    def sample(prompt: str, index: int, seed: int = 7) -> GenerationRequest:
        return raw(prompt, temperature=1.0, top_p=0.95, seed=seed, sample_index=index)

    first = backend.generate([sample(PROMPTS[0], 0)])[0]
    assert backend.generate([sample(PROMPTS[0], 0)])[0] == first
    assert backend.generate([sample(PROMPTS[0], 1)])[0] != first
    assert backend.generate([sample(PROMPTS[0], 0, seed=8)])[0] != first
    mixed = backend.generate(
        [raw(PROMPTS[1]), sample(PROMPTS[2], 3), sample(PROMPTS[0], 0), sample(PROMPTS[0], 1)]
    )
    assert mixed[2] == first
    assert mixed[3] == backend.generate([sample(PROMPTS[0], 1)])[0]
    assert mixed[0] == backend.generate([raw(PROMPTS[1])])[0]
    # Sampling leaves the global RNG alone.
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    backend.generate([sample(PROMPTS[0], 0)])
    assert torch.equal(torch.rand(3), expected)


def test_messages_use_the_chat_template(backend: HFBackend):
    request = chat("What should I cook?")
    text = backend.render_prompt(request)
    assert text == "<|im_start|>user\nWhat should I cook?<|im_end|>\n<|im_start|>assistant\n"
    assert backend.render_prompt(raw("plain text")) == "plain text"
    # The chat request runs exactly the rendered text, its special tokens parsed as such ...
    assert backend.generate([request]) == backend.generate([raw(text)])
    tokenizer = backend.load()._base.tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    # ... and raw prompts get no BOS.
    assert tokenizer("Hi", add_special_tokens=False)["input_ids"][0] != tokenizer.bos_token_id


def test_messages_without_chat_template_are_refused(tmp_path: Path):
    folder = build_tiny_model(tmp_path / "notemplate", chat_template=False)
    with pytest.raises(FspoBenchError, match="no chat template"):
        HFBackend(str(folder)).generate([chat("hi")])


# ----------------------------------------------------------------------------- scoring


def hand_loglikelihood(backend: HFBackend, context: str, continuation: str) -> float:
    loaded = backend.load()._base
    context_ids = loaded.encode(context) or [loaded.start_id]
    whole = loaded.encode(context + continuation)
    if not loaded.encode(context):
        whole = [loaded.start_id, *whole]
    with torch.no_grad():
        logits = loaded.model(torch.tensor([whole])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return sum(
        logprobs[t - 1, whole[t]].item() for t in range(len(context_ids), len(whole))
    )


def test_loglikelihood_matches_a_hand_computation(tiny_model_dir: Path):
    backend = HFBackend(str(tiny_model_dir), batch_size=2)
    pairs = [
        (PROMPTS[2], "A quick vegetable curry."),
        ("Hi", " there"),
        ("", "Hello world"),
        ("The quick brown", " fox jumps over the lazy dog. Hello world! 0123456789"),
        ("Nothing to score", ""),
    ]
    scores = backend.loglikelihood(pairs)
    expected = [hand_loglikelihood(backend, c, x) for c, x in pairs]
    assert scores == pytest.approx(expected, abs=1e-3, rel=1e-5)
    assert scores[-1] == 0.0 and all(s < 0 for s in scores[:-1])
    # Batch composition does not matter either.
    assert HFBackend(str(tiny_model_dir), batch_size=5).loglikelihood(pairs) == pytest.approx(
        scores, abs=1e-3, rel=1e-5
    )
    assert backend.loglikelihood([]) == []


def test_packed_scoring_of_shared_prompts_equals_one_row_per_pair(tiny_model_dir: Path):
    shared = PROMPTS[2] + "\n## Preferred Response"
    pairs = [(shared, "\nA quick vegetable curry."), (shared, "\nNo."),
             ("Hi", " there"), ("Hi", " you, and a longer continuation"), ("Other", " one")]
    packed = HFBackend(str(tiny_model_dir), batch_size=2, layout="packed")
    naive = HFBackend(str(tiny_model_dir), batch_size=2, layout="naive")
    scores = packed.loglikelihood(pairs)
    assert scores == pytest.approx(naive.loglikelihood(pairs), abs=1e-4, rel=1e-5)
    assert scores == pytest.approx([hand_loglikelihood(naive, c, x) for c, x in pairs],
                                   abs=1e-3, rel=1e-5)
    with pytest.raises(FspoBenchError, match="unknown layout"):
        HFBackend(str(tiny_model_dir), layout="zigzag")


# ----------------------------------------------------------------------------- adapters


def test_lora_adapter_changes_outputs_and_leaves_the_base_model_alone(
    tiny_model_dir: Path, lora_dirs: list[Path]
):
    backend = HFBackend(str(tiny_model_dir), batch_size=4)
    one, two = (str(p) for p in lora_dirs)
    prompts = PROMPTS[:3]
    base = backend.generate([raw(p) for p in prompts])
    base_ll = backend.loglikelihood([("Hi", " there")])
    with_one = backend.generate([raw(p, one) for p in prompts])
    assert with_one != base
    mixed = backend.generate(
        [raw(prompts[0]), raw(prompts[0], two), raw(prompts[0], one), raw(prompts[1])]
    )
    with_two = backend.generate([raw(prompts[0], two)])[0]
    assert with_two not in (base[0], with_one[0])
    assert mixed == [base[0], with_two, with_one[0], base[1]]
    assert backend.generate([raw(p) for p in prompts]) == base
    assert backend.generate([raw(p, one) for p in prompts]) == with_one
    assert backend.loglikelihood([("Hi", " there")], adapter=one) != base_ll
    assert backend.loglikelihood([("Hi", " there")]) == base_ll
    assert len(backend._peft_names) == 2  # each adapter loaded once


def test_adapter_for_another_model_is_refused_and_changes_nothing(
    tiny_model_dir: Path, lora_dirs: list[Path], tmp_path: Path
):
    other = build_tiny_model(tmp_path / "narrow", hidden_size=32)
    wrong = build_lora_adapter(other, tmp_path / "wrong")
    for first in (True, False):  # as the first adapter, and after another one was loaded
        backend = HFBackend(str(tiny_model_dir))
        base = backend.generate([raw(PROMPTS[0])])
        if not first:
            good = backend.generate([raw(PROMPTS[0], str(lora_dirs[0]))])
        with pytest.raises(FspoBenchError, match="cannot load adapter") as info:
            backend.generate([raw(PROMPTS[0], str(wrong))])
        assert "\n" not in str(info.value)
        assert backend.generate([raw(PROMPTS[0])]) == base
        if not first:
            assert backend.generate([raw(PROMPTS[0], str(lora_dirs[0]))]) == good


def test_full_model_folder_as_adapter(tiny_model_dir: Path, tmp_path: Path):
    other = build_tiny_model(tmp_path / "other", seed=5)
    backend = HFBackend(str(tiny_model_dir))
    base = backend.generate([raw(PROMPTS[0])])[0]
    assert backend.generate([raw(PROMPTS[0], str(other))])[0] != base
    assert backend.generate([raw(PROMPTS[0], str(other))]) == HFBackend(str(other)).generate(
        [raw(PROMPTS[0])]
    )
    assert backend.generate([raw(PROMPTS[0])])[0] == base


def test_adapter_revision_fingerprints_the_folder(backend: HFBackend, lora_dirs: list[Path]):
    one, two = backend.adapter_revision(str(lora_dirs[0])), backend.adapter_revision(
        str(lora_dirs[1])
    )
    assert one.startswith("sha256:") and one != two
    assert backend.adapter_revision(None) is None


# ----------------------------------------------------------------------------- refusals


def pickle_only_folder(folder: Path, source: Path) -> Path:
    folder.mkdir()
    shutil.copy(source / "config.json", folder / "config.json")
    from safetensors.torch import load_file

    torch.save(load_file(source / "model.safetensors"), folder / "pytorch_model.bin")
    return folder


def test_pickle_only_model_is_refused(tiny_model_dir: Path, tmp_path: Path):
    folder = pickle_only_folder(tmp_path / "pickled", tiny_model_dir)
    with pytest.raises(FspoBenchError, match="pickle") as info:
        HFBackend(str(folder)).generate([raw("Hi")])
    assert str(folder) in str(info.value)


def test_pickle_only_adapter_is_refused(backend: HFBackend, tiny_model_dir: Path, tmp_path: Path):
    folder = pickle_only_folder(tmp_path / "pickled", tiny_model_dir)
    with pytest.raises(FspoBenchError, match="pickle") as info:
        backend.generate([raw("Hi", str(folder))])
    assert str(folder) in str(info.value)


def test_missing_model_folder_gives_one_line_error(tmp_path: Path):
    missing = tmp_path / "no" / "such-model"
    backend = HFBackend(str(missing))
    for call in (
        lambda: backend.generate([raw("Hi")]),
        backend.identity,
        lambda: backend.loglikelihood([("a", "b")]),
    ):
        with pytest.raises(FspoBenchError) as info:
            call()
        message = str(info.value)
        assert message.startswith(f"cannot load model {missing}") and "\n" not in message


def test_folder_that_does_not_load_gives_one_line_error(tmp_path: Path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(FspoBenchError) as info:
        HFBackend(str(broken)).load()
    assert str(info.value).startswith(f"cannot load model {broken}:")
    assert "\n" not in str(info.value)


def test_bad_adapter_fails_before_any_work(
    backend: HFBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    calls = []
    monkeypatch.setattr(backend, "_run", lambda *a, **k: calls.append(a) or [""])
    with pytest.raises(FspoBenchError, match="cannot load adapter .*no such folder"):
        backend.generate([raw("Hi"), raw("Hi", str(tmp_path / "missing"))])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FspoBenchError, match="neither adapter_config.json"):
        backend.generate([raw("Hi"), raw("Hi", str(empty))])
    assert calls == []


# ----------------------------------------------------------------------------- identity


def test_identity_fingerprints_the_folder(tiny_model_dir: Path, tmp_path: Path):
    folder = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, folder)
    first = HFBackend(str(folder)).identity()
    assert first["backend"] == "hf" and first["model"] == str(folder.resolve())
    assert first["revision"].startswith("sha256:") and first["dtype"] == "float32"
    assert HFBackend(str(folder)).identity() == first
    assert first["revision"] == folder_fingerprint(tiny_model_dir)  # content, not location
    assert json.loads(json.dumps(first)) == first

    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1e-3
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    changed = HFBackend(str(folder)).identity()
    assert changed["revision"] != first["revision"]
    assert {k: v for k, v in changed.items() if k != "revision"} == {
        k: v for k, v in first.items() if k != "revision"
    }


def test_identity_of_a_hub_id_uses_the_given_revision():
    identity = HFBackend("someone/some-model", revision="abc123", dtype="bf16").identity()
    assert identity == {
        "backend": "hf", "model": "someone/some-model", "revision": "abc123", "dtype": "bfloat16",
    }
