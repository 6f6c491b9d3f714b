"""The trainer: SFT, Pref-FT, FSPO (IPO / DPO) and FSPO + RAT on a domain's train split.

Plain PyTorch and transformers (peft for LoRA, accelerate only when launched by it):

- **Data**: :func:`fspo_bench.trainers.data.build_examples` (official prompt format and
  windowing), tokenized as the official code does (:mod:`fspo_bench.trainers.tokens`); examples
  longer than ``max_length`` are counted, reported and skipped.
- **Order**: an example stream of seeded permutations, one per epoch; optimizer step ``s`` takes
  stream positions ``s G .. s G + G - 1`` (``G`` = micro-batch x accumulation x processes), so a
  step's data depends only on the seed and the step: what makes resume exact.
- **Reference**: for preference losses, the reference log-probs of every example the run will
  use (and of the held-out pairs) are computed **once, before the first update**, with the
  initial model (with a fresh LoRA adapter: the base model, adapters disabled; after ``--init``:
  that checkpoint), stored in ``reference_logps.safetensors`` and never recomputed: no second
  model copy, no second forward per step.
- **Step**: log-probs summed over completion tokens, prompt computed once per example (the
  packed layout of :mod:`fspo_bench.logprobs`); loss / accumulation, backward; after
  ``grad_accum`` micro-batches: grad-norm clipping, optimizer (RMSprop or AdamW), scheduler
  (linear warm-up ``min(1, (s + 1) / (warmup + 1))`` then constant, the official LambdaLR).
- **Checkpoints**: every ``save_every`` steps and at the end (:mod:`.checkpoint`); a run finds
  its latest checkpoint in ``out`` and resumes from it, weights, optimizer, scheduler and RNG
  restored exactly.
- **Metrics**: loss, reward accuracy, reward margin and tokens/s per step (``metrics.jsonl`` and
  a rich progress bar); at the end, held-out preference accuracy (policy log-likelihood, implicit
  reward, and the initial model's log-likelihood for comparison) with user-clustered bootstrap
  CIs, written into ``fspo_card.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fspo_bench import __version__
from fspo_bench.dataset import DomainData
from fspo_bench.errors import FspoBenchError
from fspo_bench.hashing import stable_hash
from fspo_bench.logprobs import completion_logps
from fspo_bench.sampling import rng_for
from fspo_bench.trainers import checkpoint as ckpt
from fspo_bench.trainers.data import (
    METHOD_KINDS,
    SERVING_METHOD,
    BuiltExamples,
    build_examples,
    eval_examples,
)
from fspo_bench.trainers.losses import PREFERENCE_LOSSES, preference_loss, sft_loss
from fspo_bench.trainers.presets import TrainConfig
from fspo_bench.trainers.tokens import TokenizedExample, encode, special_ids

CARD_FORMAT = "fspo-bench-checkpoint/1"
OPTIMIZERS = ("rmsprop", "adamw")
DTYPES = {"auto": "auto", "float32": "float32", "fp32": "float32", "bfloat16": "bfloat16",
          "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}


@dataclass
class TrainResult:
    out: Path
    card: dict[str, Any]
    steps: int
    complete: bool
    main: bool = True  # False on the other processes of a multi-process run


# --------------------------------------------------------------------------- runtimes


def launched_by_accelerate() -> bool:
    return "ACCELERATE_MIXED_PRECISION" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


class Runtime:
    """One process on one device (CPU, or the first GPU)."""

    world_size = 1
    rank = 0
    is_main = True
    fsdp = False

    def __init__(self, device: str | None = None) -> None:
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")

    def prepare_model(self, model: Any) -> Any:
        return model

    def prepare_optimizer(self, optimizer: Any) -> Any:
        return optimizer

    def backward(self, loss: Any) -> None:
        loss.backward()

    def clip(self, model: Any, params: Sequence[Any], max_norm: float) -> float:
        import torch

        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def gather(self, tensor: Any) -> Any:
        return tensor

    def barrier(self) -> None:
        pass

    def unwrap(self, model: Any) -> Any:
        return model

    def full_state_dict(self, model: Any) -> dict[str, Any] | None:
        return None


class AccelerateRuntime(Runtime):
    """Processes started by ``accelerate launch`` (DDP or FSDP per its config file)."""

    def __init__(self) -> None:
        import torch
        from accelerate import Accelerator
        from accelerate.utils import DistributedType

        # On a machine without CUDA (torchrun or accelerate on CPUs), processes talk over gloo.
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.device = str(self.accelerator.device)
        self.world_size = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        self.fsdp = self.accelerator.distributed_type == DistributedType.FSDP

    def prepare_model(self, model: Any) -> Any:
        return self.accelerator.prepare(model)

    def prepare_optimizer(self, optimizer: Any) -> Any:
        return self.accelerator.prepare(optimizer)

    def backward(self, loss: Any) -> None:
        self.accelerator.backward(loss)

    def clip(self, model: Any, params: Sequence[Any], max_norm: float) -> float:
        return float(self.accelerator.clip_grad_norm_(model.parameters(), max_norm))

    def gather(self, tensor: Any) -> Any:
        return self.accelerator.gather(tensor.contiguous())

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def unwrap(self, model: Any) -> Any:
        return self.accelerator.unwrap_model(model)

    def full_state_dict(self, model: Any) -> dict[str, Any] | None:
        return self.accelerator.get_state_dict(model)


def make_runtime(device: str | None = None) -> Runtime:
    return AccelerateRuntime() if launched_by_accelerate() else Runtime(device)


# --------------------------------------------------------------------------- helpers


def resolve_model(model: str) -> str:
    """``embedded`` is the embedded SmolLM2-135M-Instruct folder; anything else is as given."""
    if model == "embedded":
        from fspo_bench.embedded import embedded_model_path

        return str(embedded_model_path())
    return model


def load_domain_data(config: TrainConfig) -> DomainData:
    import inspect

    from fspo_bench import plugins

    domain = plugins.get("domain", config.domain)()
    kwargs = {}
    if config.shots is not None and "shots" in inspect.signature(domain.load).parameters:
        kwargs["shots"] = config.shots
    return domain.load(config.data, **kwargs)


def _refuse_pickle_only(folder: Path, what: str) -> None:
    files = [p for p in folder.iterdir() if p.is_file()]
    if any(p.suffix == ".safetensors" for p in files):
        return
    if any(p.suffix in (".bin", ".pt", ".pkl", ".pth") for p in files):
        raise FspoBenchError(f"refusing to load {what} {folder}: pickle weights and no "
                             f"safetensors (convert them to safetensors first)")


def _quiet_transformers() -> contextlib.AbstractContextManager:
    from transformers.utils import logging as hf_logging

    @contextlib.contextmanager
    def quiet():
        bars = hf_logging.is_progress_bar_enabled()
        verbosity = hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        try:
            yield
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()

    return quiet()


@dataclass
class Policy:
    model: Any
    tokenizer: Any
    base_path: str
    serve_model: str  # the --model to serve a checkpoint of this policy with
    lora: bool
    fresh_adapter: bool  # a new LoRA adapter (a no-op at step 0): reference = adapters disabled
    autocast: Any  # a dtype to autocast to, or None


def load_policy(config: TrainConfig, runtime: Runtime) -> Policy:
    """The model to train: base (or ``--init``) weights, optionally a LoRA adapter on top."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = DTYPES.get(str(config.dtype).lower())
    if dtype is None:
        raise FspoBenchError(f"unknown dtype {config.dtype!r}; valid: {', '.join(DTYPES)}")
    device = runtime.device
    cuda_bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    weights = torch.float32 if dtype in ("auto", "float32") else getattr(torch, dtype)
    autocast = torch.bfloat16 if dtype == "auto" and cuda_bf16 else None

    source = resolve_model(config.model)
    init = Path(config.init).expanduser() if config.init else None
    if init is not None and not init.is_dir():
        raise FspoBenchError(f"--init {init}: no such folder")
    init_adapter = init is not None and (init / "adapter_config.json").is_file()
    if init is not None and not init_adapter and not (init / "config.json").is_file():
        raise FspoBenchError(f"--init {init}: neither a PEFT adapter nor a model folder")
    base = str(init) if init is not None and not init_adapter else source
    for folder, what in ((Path(base), "model"), (init, "checkpoint")):
        if folder is not None and folder.is_dir():
            _refuse_pickle_only(folder, what)
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(base)
            model = AutoModelForCausalLM.from_pretrained(
                base, dtype=weights, attn_implementation=config.attn_implementation,
                use_safetensors=True)
    except OSError as exc:
        raise FspoBenchError(f"cannot load model {base}: {str(exc).splitlines()[0]}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # as the official code
    model.config.use_cache = False
    fresh = False
    if init_adapter:
        from peft import PeftModel

        with _quiet_transformers():
            model = PeftModel.from_pretrained(model, str(init), is_trainable=config.lora)
        if not config.lora:
            model = model.merge_and_unload()
    elif config.lora:
        from peft import LoraConfig, get_peft_model

        targets = config.lora_targets
        layers: dict[str, Any] = {}
        if config.lora_layers:
            if isinstance(targets, str):
                raise FspoBenchError("lora_layers needs a list of target modules, not "
                                     f"{targets!r}")
            n = int(model.config.num_hidden_layers)
            layers["layers_to_transform"] = list(range(max(0, n - config.lora_layers), n))
        with warnings.catch_warnings():  # peft calls a transformers API deprecated in v5
            warnings.simplefilter("ignore", FutureWarning)
            model = get_peft_model(model, LoraConfig(
                r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                target_modules=targets if isinstance(targets, str) else list(targets),
                task_type="CAUSAL_LM", **layers))
        fresh = True
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if config.lora and hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    model.to(device)
    serve_model = base if base != source else config.model
    return Policy(model, tokenizer, base, serve_model, config.lora, fresh, autocast)


def _autocast(policy: Policy, device: str) -> contextlib.AbstractContextManager:
    import torch

    if policy.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=policy.autocast)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"fspo-bench": __version__}
    for name in ("torch", "transformers", "peft", "accelerate", "safetensors"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


# --------------------------------------------------------------------------- display


class Display:
    """A rich progress bar on a terminal; one plain line every ``log_every`` steps otherwise."""

    def __init__(self, total: int, start: int, title: str, *, enabled: bool, log_every: int,
                 notes: bool = True):
        self.enabled = enabled
        self.notes = notes
        self.log_every = max(1, log_every)
        self.total = total
        self.progress = None
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                console=Console(stderr=True), transient=False)
            self.task = self.progress.add_task(title, total=total, completed=start, stats="")
            self.progress.start()

    @staticmethod
    def stats(metrics: dict[str, Any]) -> str:
        parts = [f"loss {metrics['loss']:.4g}"]
        if "reward_accuracy" in metrics:
            parts.append(f"acc {metrics['reward_accuracy']:.2f}")
            parts.append(f"margin {metrics['reward_margin']:.3g}")
        parts.append(f"{metrics['tokens_per_s']:.0f} tok/s")
        return "  ".join(parts)

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.progress is not None:
            self.progress.update(self.task, completed=step, stats=self.stats(metrics))
        elif step % self.log_every == 0 or step == self.total:
            print(f"step {step}/{self.total}  {self.stats(metrics)}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        """Counts and events: printed on the main process even without a progress display."""
        if not self.notes:
            return
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """One training run; :meth:`run` trains (or resumes) and returns a :class:`TrainResult`."""

    def __init__(self, config: TrainConfig, *, domain_data: DomainData | None = None,
                 progress: bool = True, runtime: Runtime | None = None,
                 device: str | None = None) -> None:
        self.config = config
        self.check_config()
        self.runtime = runtime or make_runtime(device)
        self.progress = progress and self.runtime.is_main
        self.kind = METHOD_KINDS[config.method]
        self.out = Path(config.out or default_out(config)).expanduser()
        self.domain_data = domain_data

    # ----------------------------------------------------------------- validation

    def check_config(self) -> None:
        c = self.config
        problems = []
        if c.method not in METHOD_KINDS:
            problems.append(f"unknown method {c.method!r}; valid: {', '.join(METHOD_KINDS)}")
        if c.loss not in PREFERENCE_LOSSES:
            problems.append(f"unknown loss {c.loss!r}; valid: {', '.join(PREFERENCE_LOSSES)}")
        if c.optimizer not in OPTIMIZERS:
            problems.append(f"unknown optimizer {c.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if c.layout not in ("packed", "naive"):
            problems.append(f"unknown layout {c.layout!r}; valid: packed, naive")
        if c.beta <= 0:
            problems.append("beta must be > 0")
        if c.batch_size < 1 or c.grad_accum < 1:
            problems.append("batch size and gradient accumulation must be >= 1")
        if c.steps is not None and c.steps < 1:
            problems.append("steps must be >= 1")
        if problems:
            raise FspoBenchError("; ".join(problems))

    def grad_accum(self) -> int:
        c = self.config
        if c.global_batch is None:
            return c.grad_accum
        per = c.batch_size * self.runtime.world_size
        if c.global_batch % per:
            raise FspoBenchError(
                f"global batch {c.global_batch} is not a multiple of micro-batch {c.batch_size} "
                f"x {self.runtime.world_size} process(es)")
        return c.global_batch // per

    # ----------------------------------------------------------------- data

    def build(self) -> None:
        c = self.config
        data = self.domain_data if self.domain_data is not None else load_domain_data(c)
        self.data = data
        self.n_shots = data.default_shots if c.shots is None else c.shots
        self.built: BuiltExamples = build_examples(c.method, data, n_shots=self.n_shots,
                                                   seed=c.seed, passes=c.passes)
        if c.eval_limit == 0:
            self.built_eval = BuiltExamples([], {})
        else:
            self.built_eval = eval_examples(c.method, data, n_shots=self.n_shots, seed=c.seed,
                                            limit=c.eval_limit)

    def tokenize(self, tokenizer: Any) -> None:
        c = self.config
        self.eos_id, self.pad_id, _ = special_ids(tokenizer)
        self.items, too_long = encode(tokenizer, self.built.examples, max_length=c.max_length)
        self.eval_items, eval_too_long = encode(tokenizer, self.built_eval.examples,
                                                max_length=c.max_length)
        self.counts = dict(self.built.counts)
        self.counts["skipped_too_long"] = len(too_long)
        self.counts["used"] = len(self.items)
        self.eval_counts = dict(self.built_eval.counts)
        self.eval_counts["skipped_too_long"] = len(eval_too_long)
        self.eval_counts["used"] = len(self.eval_items)
        if not self.items:
            raise FspoBenchError(
                f"no training example fits in max_length {c.max_length} "
                f"({len(too_long)} too long, {self.built.counts})")

    # ----------------------------------------------------------------- schedule

    def plan(self) -> None:
        c = self.config
        self.accum = self.grad_accum()
        self.per_step = c.batch_size * self.accum * self.runtime.world_size
        n = len(self.items)
        self.total_steps = c.steps or max(1, math.ceil(c.epochs * n / self.per_step))
        self._orders: dict[int, list[int]] = {}

    def stream(self, position: int) -> int:
        """The example (index into ``self.items``) at a stream position."""
        n = len(self.items)
        epoch, offset = divmod(position, n)
        if epoch not in self._orders:
            order = list(range(n))
            rng_for("trainer-order", self.config.seed, epoch).shuffle(order)
            self._orders[epoch] = order
        return self._orders[epoch][offset]

    def micro_batches(self, step: int, rank: int | None = None) -> list[list[int]]:
        """This rank's micro-batches of optimizer step ``step`` (indices into ``self.items``)."""
        c = self.config
        rank = self.runtime.rank if rank is None else rank
        world = self.runtime.world_size
        base = step * self.per_step
        return [[self.stream(base + ((a * world + rank) * c.batch_size) + i)
                 for i in range(c.batch_size)] for a in range(self.accum)]

    def used_examples(self) -> list[int]:
        return sorted({self.stream(p) for p in range(self.total_steps * self.per_step)})

    # ----------------------------------------------------------------- log-probs

    def logps(self, model: Any, items: Sequence[TokenizedExample]) -> tuple[Any, Any]:
        with _autocast(self.policy, self.runtime.device):
            return completion_logps(model, items, pad_id=self.pad_id, layout=self.config.layout)

    def score(self, model: Any, items: Sequence[TokenizedExample], batch_size: int) -> Any:
        """Summed log-probs ``(len(items), 2)`` without gradients, split evenly over processes
        (every process runs the same number of forwards) and gathered."""
        import torch

        world, rank = self.runtime.world_size, self.runtime.rank
        if not items:
            return torch.zeros((0, 2))
        share = math.ceil(len(items) / world)
        mine = [items[min(rank * share + i, len(items) - 1)] for i in range(share)]
        results = []
        model.eval()
        with torch.no_grad():
            for start in range(0, share, batch_size):
                sums, _ = self.logps(model, mine[start:start + batch_size])
                if sums.shape[1] < 2:
                    sums = torch.cat([sums, torch.zeros_like(sums)], dim=1)
                results.append(sums.float())
        local = torch.cat(results).to(self.runtime.device)
        gathered = self.runtime.gather(local).cpu()
        return gathered.reshape(world, share, -1).reshape(world * share, -1)[:len(items)]

    def reference(self, model: Any, fresh_adapter: bool) -> None:
        """Reference log-probs of the used train examples and the held-out pairs: loaded from
        ``reference_logps.safetensors`` if it matches this run, else computed now."""
        import torch

        path = self.out / ckpt.REFERENCE
        used = self.used_examples() if self.kind == "pair" else []
        key = stable_hash([self.data_hash, self.config_hash, self.eval_hash, used])
        if path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
            if meta.get("key") == key:
                tensors = ckpt.load_tensors(path)
                self.ref_train = dict(zip(tensors["train_index"].tolist(), tensors["train"],
                                          strict=True))
                self.ref_eval = tensors["eval"]
                self.reference_source = "loaded"
                return
        if self.resuming and not fresh_adapter:
            raise FspoBenchError(
                f"{path} is missing or from another run, and the initial model it needs is "
                f"gone (resuming a full or continued fine-tune); start over in a new --out")
        started = time.monotonic()
        batch = self.config.eval_batch_size or self.config.batch_size
        context = (self.runtime.unwrap(model).disable_adapter() if fresh_adapter
                   else contextlib.nullcontext())
        with context:
            train = self.score(model, [self.items[i] for i in used], batch)
            evals = self.score(model, self.eval_items, batch)
        self.ref_train = dict(zip(used, train, strict=True))
        self.ref_eval = evals
        self.reference_source = f"computed in {time.monotonic() - started:.1f} s"
        if self.runtime.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            ckpt.save_tensors(path, {
                "train_index": torch.tensor(used, dtype=torch.long),
                "train": train if len(used) else torch.zeros((0, 2)),
                "eval": evals,
            }, metadata={"key": key})
        self.runtime.barrier()

    # ----------------------------------------------------------------- weights

    def save_weights(self, model: Any, folder: Path, state_dict: dict[str, Any] | None) -> None:
        unwrapped = self.runtime.unwrap(model)
        kwargs = {} if state_dict is None else {"state_dict": state_dict}
        with _quiet_transformers():
            if self.policy.lora:
                unwrapped.save_pretrained(str(folder), safe_serialization=True, **kwargs)
            else:
                unwrapped.save_pretrained(str(folder), **kwargs)
                self.policy.tokenizer.save_pretrained(str(folder))

    def load_weights(self, model: Any, folder: Path) -> None:
        import torch

        if self.policy.lora:
            from peft import set_peft_model_state_dict

            state = ckpt.load_tensors(folder / "adapter_model.safetensors")
            result = set_peft_model_state_dict(model, state)
            unexpected = getattr(result, "unexpected_keys", [])
            if unexpected:
                raise FspoBenchError(f"{folder}: unexpected adapter weights {unexpected[:3]}")
            return
        state: dict[str, Any] = {}
        for path in sorted(folder.glob("model*.safetensors")):
            state.update(ckpt.load_tensors(path))
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        missing = [k for k in missing if not (tied and k.endswith("lm_head.weight"))]
        if missing or unexpected:
            raise FspoBenchError(f"{folder}: weights do not match the model "
                                 f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        with torch.no_grad():
            if tied:
                model.tie_weights()

    # ----------------------------------------------------------------- card

    def card(self, *, step: int, complete: bool, wall: float, train_metrics: dict[str, Any],
             held_out: dict[str, Any] | None) -> dict[str, Any]:
        c = self.config
        serve = SERVING_METHOD[c.method]
        model_flag = self.policy.serve_model
        return {
            "format": CARD_FORMAT,
            "kind": "lora" if self.policy.lora else "full",
            "base_model": c.model,
            "base_model_path": self.policy.base_path,
            "init": c.init,
            "method": c.method,
            "serve_method": serve,
            "serve_model": model_flag,
            "serve_command": (f"fspo-bench run --method {serve} --domain {c.domain} "
                              f"--model {model_flag} --checkpoint {self.out}"),
            "domain": c.domain,
            "data": c.data,
            "data_source": getattr(self.data, "source", c.data),
            "data_hash": self.data_hash,
            "config_hash": self.config_hash,
            "shots": self.n_shots,
            "special_tokens": {"eos_id": self.eos_id, "pad_id": self.pad_id},
            "examples": self.counts,
            "held_out_examples": self.eval_counts,
            "hyperparameters": {**c.to_dict(), "lr": c.learning_rate(),
                                "grad_accum": self.accum,
                                "global_batch": self.per_step,
                                "world_size": self.runtime.world_size},
            "steps": step,
            "steps_planned": self.total_steps,
            "complete": complete,
            "wall_time_s": round(wall, 3),
            "train_metrics": train_metrics,
            "held_out_metrics": held_out,
            "reference": getattr(self, "reference_source", None),
            "versions": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    # ----------------------------------------------------------------- evaluation

    def evaluate(self, model: Any) -> dict[str, Any] | None:
        """Held-out preference accuracy, in percent, with user-clustered bootstrap CIs."""
        from fspo_bench.stats import cluster_bootstrap

        if not self.eval_items:
            return None
        batch = self.config.eval_batch_size or self.config.batch_size
        policy = self.score(model, self.eval_items, batch)
        ref = self.ref_eval
        beta = self.config.beta
        examples = self.built_eval.examples
        keys = [(examples[it.index].user_id, f"{examples[it.index].question_id}#{n}")
                for n, it in enumerate(self.eval_items)]

        def summary(values: list[float]) -> dict[str, Any]:
            scores = dict(zip(keys, values, strict=True))
            low, high = cluster_bootstrap(scores, seed=self.config.seed)
            return {"value": 100 * sum(values) / len(values), "ci_low": low, "ci_high": high}

        pc, pr = policy[:, 0], policy[:, 1]
        rc, rr = ref[:, 0], ref[:, 1]
        h = (pc - rc) - (pr - rr)
        return {
            "n_pairs": len(self.eval_items),
            "n_users": len({k[0] for k in keys}),
            "loglik_accuracy": summary((pc > pr).float().tolist()),
            "reward_accuracy": summary((h > 0).float().tolist()),
            "initial_loglik_accuracy": summary((rc > rr).float().tolist()),
            "reward_margin": float(beta * h.mean()),
            "ci": "95% percentile bootstrap over users (10,000 resamples)",
        }

    # ----------------------------------------------------------------- the run

    def run(self, *, resume: bool = True, stop_after: int | None = None) -> TrainResult:
        import torch

        c = self.config
        session_start = time.monotonic()
        random.seed(c.seed)
        torch.manual_seed(c.seed)
        self.build()
        self.policy = load_policy(c, self.runtime)
        self.tokenize(self.policy.tokenizer)
        self.plan()
        self.data_hash = self.built.data_hash()
        self.eval_hash = stable_hash([e.to_dict() for e in self.built_eval.examples])
        self.config_hash = stable_hash(c.training_fields())[:16]
        display = Display(self.total_steps, 0, f"{c.method} {c.domain}",
                          enabled=self.progress, log_every=c.log_every,
                          notes=self.runtime.is_main)
        display.note(
            f"{c.method} on {c.domain}: {self.counts['used']} examples "
            f"({self.counts['skipped_too_long']} longer than {c.max_length} tokens skipped"
            + (f", {self.counts['skipped_no_rejected_description']} without a rejected "
               f"description skipped" if self.counts.get("skipped_no_rejected_description")
               else "")
            + f"), {self.total_steps} steps of {self.per_step}, "
            f"{self.eval_counts['used']} held-out pairs")

        checkpoint = None
        self.resuming = False
        if self.runtime.is_main:
            ckpt.remove_stale_temporaries(self.out)
        if resume:
            checkpoint = ckpt.latest_checkpoint(self.out)
        elif ckpt.latest_checkpoint(self.out) is not None:
            raise FspoBenchError(f"{self.out} already has checkpoints; resume (the default) or "
                                 f"use another --out")
        state: dict[str, Any] = {}
        if checkpoint is not None:
            state = ckpt.read_state(checkpoint)
            if state.get("config_hash") != self.config_hash or \
                    state.get("data_hash") != self.data_hash:
                raise FspoBenchError(
                    f"{checkpoint} is from a different configuration or data; use another --out "
                    f"(or the same options as that run to resume it)")
            if self.runtime.fsdp:
                raise FspoBenchError("resuming FSDP runs is not supported (the optimizer state "
                                     "is sharded); start a new --out")
            self.resuming = True

        model = self.policy.model
        if self.kind == "pair" or self.eval_items:
            self.reference(model, self.policy.fresh_adapter)
        if checkpoint is not None:
            self.load_weights(self.runtime.unwrap(model), checkpoint)

        model = self.runtime.prepare_model(model)
        params = [p for p in model.parameters() if p.requires_grad]
        if c.optimizer == "rmsprop":
            optimizer = torch.optim.RMSprop(params, lr=c.learning_rate(),
                                            weight_decay=c.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=c.learning_rate(),
                                          weight_decay=c.weight_decay)
        optimizer = self.runtime.prepare_optimizer(optimizer)
        warmup = c.warmup_steps
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda=lambda s: min(1.0, (s + 1) / (warmup + 1)))
        start = 0
        history: list[dict[str, Any]] = []
        wall_before = 0.0
        if checkpoint is not None:
            ckpt.restore_training_state(checkpoint, state, optimizer, scheduler)
            start = int(state["step"])
            history = state.get("history", [])
            wall_before = float(state.get("wall_time_s", 0.0))
            if self.runtime.is_main:
                ckpt.trim_metrics(self.out, start)
            display.note(f"resumed from {checkpoint} (step {start})")
        elif self.runtime.is_main:
            ckpt.trim_metrics(self.out, 0)  # lines left by a run that never checkpointed
        if display.progress is not None:
            display.progress.update(display.task, completed=start)

        def save(step: int, complete: bool, wall: float) -> None:
            state_dict = self.runtime.full_state_dict(model)
            if self.runtime.is_main:
                card = self.card(step=step, complete=complete, wall=wall,
                                 train_metrics=train_summary(history), held_out=None)
                ckpt.save_checkpoint(
                    self.out, step, optimizer=None if self.runtime.fsdp else optimizer,
                    scheduler=scheduler, card=card, keep=c.keep_checkpoints,
                    save_weights=lambda folder: self.save_weights(model, folder, state_dict),
                    state={"config_hash": self.config_hash, "data_hash": self.data_hash,
                           "history": history, "wall_time_s": wall})
            self.runtime.barrier()

        metrics_path = self.out / ckpt.METRICS
        self.out.mkdir(parents=True, exist_ok=True)
        for step in range(start, self.total_steps):
            tick = time.monotonic()
            model.train()
            record = self.train_step(model, step, optimizer, scheduler, params)
            record["tokens_per_s"] = record["tokens"] / max(time.monotonic() - tick, 1e-9)
            history.append(record)
            if self.runtime.is_main:
                with open(metrics_path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(record) + "\n")
            display.update(step + 1, record)
            wall = wall_before + time.monotonic() - session_start
            done = step + 1
            if stop_after is not None and done >= stop_after and done < self.total_steps:
                save(done, False, wall)
                display.close()
                card = self.card(step=done, complete=False, wall=wall,
                                 train_metrics=train_summary(history), held_out=None)
                return TrainResult(self.out, card, done, False, self.runtime.is_main)
            if c.save_every and done % c.save_every == 0 and done < self.total_steps:
                save(done, False, wall)
        done = self.total_steps
        wall = wall_before + time.monotonic() - session_start
        save(done, False, wall)
        display.note("evaluating on held-out users ...")
        held_out = self.evaluate(model)
        wall = wall_before + time.monotonic() - session_start
        card = self.card(step=done, complete=True, wall=wall,
                         train_metrics=train_summary(history), held_out=held_out)
        state_dict = self.runtime.full_state_dict(model)
        if self.runtime.is_main:
            self.save_weights(model, self.out, state_dict)
            ckpt.write_json(self.out / ckpt.CARD, card)
        self.runtime.barrier()
        display.close()
        return TrainResult(self.out, card, done, True, self.runtime.is_main)

    def train_step(self, model: Any, step: int, optimizer: Any, scheduler: Any,
                   params: Sequence[Any]) -> dict[str, Any]:
        import torch

        c = self.config
        totals: dict[str, float] = {"loss": 0.0, "tokens": 0.0}
        pair_stats: list[Any] = []
        for micro in self.micro_batches(step):
            batch = [self.items[i] for i in micro]
            sums, counts = self.logps(model, batch)
            if self.kind == "pair":
                ref = torch.stack([self.ref_train[i] for i in micro]).to(sums.device)
                result = preference_loss(c.loss, sums, ref, counts, beta=c.beta,
                                         label_smoothing=c.label_smoothing)
                loss = result.losses.mean()
                pair_stats.append(torch.stack([
                    (result.chosen_rewards > result.rejected_rewards).float(),
                    result.chosen_rewards - result.rejected_rewards,
                    sums[:, 0].detach(), sums[:, 1].detach()], dim=1))
            else:
                loss = sft_loss(sums, counts)
            self.runtime.backward(loss / self.accum)
            totals["loss"] += float(loss.detach()) / self.accum
            totals["tokens"] += sum(it.packed_tokens if c.layout == "packed" else it.naive_tokens
                                    for it in batch)
        grad_norm = self.runtime.clip(model, params, c.max_grad_norm)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        device = self.runtime.device
        scalars = torch.tensor([totals["loss"], totals["tokens"]], device=device)
        gathered = self.runtime.gather(scalars[None]).reshape(-1, 2)
        record: dict[str, Any] = {
            "step": step + 1,
            "loss": float(gathered[:, 0].mean()),
            "tokens": float(gathered[:, 1].sum()),
            "lr": lr,
            "grad_norm": grad_norm,
        }
        if pair_stats:
            stats = self.runtime.gather(torch.cat(pair_stats).to(device)).cpu()
            record.update({
                "reward_accuracy": float(stats[:, 0].mean()),
                "reward_margin": float(stats[:, 1].mean()),
                "logp_chosen": float(stats[:, 2].mean()),
                "logp_rejected": float(stats[:, 3].mean()),
            })
        return record


def train_summary(history: Sequence[dict[str, Any]], window: int = 50) -> dict[str, Any]:
    """Means over the last ``window`` steps (and the first step's loss, for comparison)."""
    if not history:
        return {}
    last = history[-window:]
    out: dict[str, Any] = {"steps_averaged": len(last), "first_loss": history[0]["loss"]}
    for key in ("loss", "reward_accuracy", "reward_margin", "logp_chosen", "logp_rejected",
                "tokens_per_s", "grad_norm"):
        values = [h[key] for h in last if key in h]
        if values:
            out[key] = sum(values) / len(values)
    out["tokens"] = sum(h.get("tokens", 0.0) for h in history)
    return out


def default_out(config: TrainConfig) -> str:
    """``runs/train/<method>-<domain>-<config hash>``."""
    digest = stable_hash(config.training_fields())[:10]
    return str(Path("runs") / "train" / f"{config.method}-{config.domain or 'data'}-{digest}")


def train(config: TrainConfig, *, domain_data: DomainData | None = None, progress: bool = True,
          resume: bool = True, stop_after: int | None = None,
          device: str | None = None) -> TrainResult:
    """Train (or resume) as ``config`` says; see :class:`Trainer`."""
    trainer = Trainer(config, domain_data=domain_data, progress=progress, device=device)
    return trainer.run(resume=resume, stop_after=stop_after)
