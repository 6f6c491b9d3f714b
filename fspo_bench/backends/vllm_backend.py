"""The ``vllm`` backend: offline vLLM on a GPU machine (extra ``[vllm]``).

``VLLMBackend(model, revision=None, **options)`` runs ``vllm.LLM(model, enable_prefix_caching=True,
**options)``; the engine starts on first use, so constructing the backend is cheap. Importing this
module never imports vLLM; on a machine without vLLM, constructing the backend raises
FspoBenchError("the vllm backend needs a GPU machine with vLLM: pip install 'fspo-bench[vllm]'").

Prompts, as in the ``hf`` backend
    A raw ``prompt`` is tokenized with ``add_special_tokens=False`` (no BOS: the official FSPO
    format) and run with ``LLM.generate`` as token ids; chat ``messages`` run with ``LLM.chat``
    (the model's chat template, ``add_generation_prompt=True``). The output is the new text
    without special tokens, cut before the first stop string.

Sampling
    :func:`sampling_params_kwargs` maps :class:`GenerationParams` to ``SamplingParams``: one
    ``SamplingParams`` per request, with its own seed (:func:`request_seed`: ``seed`` for sample
    0, a stable mix of ``seed`` and ``sample_index`` otherwise). ``temperature == 0`` is greedy.
    A request with ``max_new_tokens == 0`` returns "" (vLLM needs at least one token).

Adapters
    ``request.adapter`` names a PEFT LoRA folder (``adapter_config.json``), run through
    ``LoRARequest``. LoRA is enabled when the first call that starts the engine has an adapter,
    or with the ``enable_lora=True`` option (raise ``max_lora_rank`` with an option if the adapter's
    rank is over vLLM's default). Full checkpoints are not adapters here: serve them as the model.

Identity
    ``{"backend": "vllm", "model": ..., "revision": ..., "dtype": ...}``, the same shape as the
    ``hf`` backend's: a local folder's content fingerprint, or the ``revision`` option for a hub id.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fspo_bench.backend import Backend, GenerationParams, GenerationRequest
from fspo_bench.backends.litellm_backend import request_seed
from fspo_bench.errors import FspoBenchError

VLLM_MISSING = "the vllm backend needs a GPU machine with vLLM: pip install 'fspo-bench[vllm]'"


def sampling_params_kwargs(params: GenerationParams, stop: Sequence[str] = ()) -> dict[str, Any]:
    """The ``vllm.SamplingParams`` arguments of one request (a pure function: no vLLM needed)."""
    return {
        "n": 1,
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "repetition_penalty": params.repetition_penalty,
        "seed": request_seed(params),
        "stop": list(stop) or None,
        "skip_special_tokens": True,
    }


def _require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise FspoBenchError(VLLM_MISSING)


def import_vllm() -> Any:
    """``import vllm``, or FspoBenchError naming the extra (and the reason, if it is not just
    missing: a CUDA problem, for example)."""
    try:
        import vllm
    except ImportError:
        raise FspoBenchError(VLLM_MISSING) from None
    except Exception as exc:
        raise FspoBenchError(f"{VLLM_MISSING} (importing vllm failed: {type(exc).__name__}: "
                             f"{exc})") from None
    return vllm


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return text[: min(cuts)] if cuts else text


class VLLMBackend(Backend):
    name = "vllm"
    description = (
        "vLLM offline on a GPU (extra [vllm]): prefix caching, per-request seeds, LoRA adapters."
    )

    def __init__(self, model: str, *, revision: str | None = None, **options: Any) -> None:
        _require_vllm()
        super().__init__(model, **options)
        self.revision = revision
        self.llm_options = {"enable_prefix_caching": True, **options}
        if revision:
            self.llm_options.setdefault("revision", revision)
        self._llm: Any = None
        self._lora_ids: dict[str, int] = {}
        self._lora_enabled = False
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- identity

    def _local_folder(self) -> Path | None:
        path = Path(self.model).expanduser()
        return path.resolve() if path.is_dir() else None

    def identity(self) -> dict[str, Any]:
        from fspo_bench.fingerprint import folder_fingerprint

        folder = self._local_folder()
        return {
            "backend": self.name,
            "model": str(folder) if folder else self.model,
            "revision": folder_fingerprint(folder) if folder else self.revision,
            "dtype": str(self.llm_options.get("dtype", "auto")),
        }

    # ----------------------------------------------------------------- engine

    def _engine(self, want_lora: bool) -> Any:
        with self._lock:
            if self._llm is None:
                vllm = import_vllm()
                options = dict(self.llm_options)
                if want_lora:
                    options.setdefault("enable_lora", True)
                try:
                    self._llm = vllm.LLM(model=self.model, **options)
                    self._lora_enabled = bool(options.get("enable_lora"))
                except Exception as exc:
                    raise FspoBenchError(
                        f"vllm cannot load {self.model}: {type(exc).__name__}: {exc}"
                    ) from exc
            return self._llm

    def load(self) -> VLLMBackend:
        """Start the engine now."""
        self._engine(bool(self.llm_options.get("enable_lora")))
        return self

    def _lora(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        path = Path(adapter).expanduser()
        if not (path / "adapter_config.json").is_file():
            raise FspoBenchError(
                f"the vllm backend runs LoRA adapters only (a folder with adapter_config.json); "
                f"{adapter} is not one: use a full checkpoint as the model, or the hf backend"
            )
        if not self._lora_enabled:
            raise FspoBenchError(
                "this vllm engine started without LoRA: start it with the option enable_lora=True"
            )
        from vllm.lora.request import LoRARequest

        key = str(path.resolve())
        if key not in self._lora_ids:
            self._lora_ids[key] = len(self._lora_ids) + 1
        return LoRARequest(f"adapter-{self._lora_ids[key]}", self._lora_ids[key], key)

    # ----------------------------------------------------------------- generation

    def generate(self, requests: Sequence[GenerationRequest]) -> list[str]:
        requests = list(requests)
        results = [""] * len(requests)
        todo = [i for i, r in enumerate(requests) if r.params.max_new_tokens > 0]
        if not todo:
            return results
        with self._lock:
            llm = self._engine(any(requests[i].adapter for i in todo))
            vllm = import_vllm()
            # Group by (raw or chat, adapter): LLM.chat takes one LoRARequest per call.
            groups: dict[tuple[bool, str | None], list[int]] = {}
            for i in todo:
                groups.setdefault((requests[i].messages is not None, requests[i].adapter),
                                  []).append(i)
            for (is_chat, adapter), indices in groups.items():
                lora = self._lora(adapter)
                sampling = [
                    vllm.SamplingParams(**sampling_params_kwargs(requests[i].params,
                                                                 requests[i].stop))
                    for i in indices
                ]
                if is_chat:
                    outputs = llm.chat([requests[i].messages for i in indices], sampling,
                                       use_tqdm=False, lora_request=lora,
                                       add_generation_prompt=True)
                else:
                    tokenizer = llm.get_tokenizer()
                    prompts = [
                        {"prompt_token_ids": tokenizer.encode(requests[i].prompt,
                                                              add_special_tokens=False)}
                        for i in indices
                    ]
                    outputs = llm.generate(prompts, sampling, use_tqdm=False, lora_request=lora)
                for i, output in zip(indices, outputs, strict=True):
                    results[i] = _cut_at_stop(output.outputs[0].text, requests[i].stop)
        return results
