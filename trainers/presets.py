"""Training configuration and its presets.

A :class:`TrainConfig` starts from the defaults below, then a preset's values, then whatever was
given explicitly (command-line flags or keyword arguments): explicit beats preset beats default.

``paper``
    The official recipe (official README; PAPER.md "Training recipe"): RMSprop, 150 warm-up
    steps then a constant learning rate, gradient-norm clip 10, global batch 4, 1 epoch,
    8192-token context, bf16 where the device supports it (fp32 on CPU). Learning rate 1e-7 for
    SFT (stage 1) and 1e-6 with IPO beta 0.01 for FSPO (stage 2, started from the SFT
    checkpoint with ``--init``: the reference is that checkpoint). Pref-FT's learning rate is
    not published; it is a supervised objective, so it gets the SFT rate (our choice). Full
    fine-tuning (no LoRA). The official runs used FSDP and flash-attention-2; here the packed
    layout needs ``sdpa`` (see :mod:`fspo_bench.logprobs`).
``cpu-tiny``
    For tests on tiny random models: AdamW 1e-3, micro-batch 2, no accumulation, no warm-up,
    IPO beta 0.1, fp32.
``embedded``
    LoRA (r 8 on the attention query and value projections of the last 8 of SmolLM2's 30
    layers, so the backward pass stops there) on the embedded SmolLM2-135M on 2 CPU cores:
    2 shots (short prompts), a 768-token context (longer examples skipped and counted),
    micro-batch 1, AdamW 5e-4 with 10 warm-up steps, IPO beta 0.1, 100 steps, 32 held-out
    pairs. Even so a step costs seconds on 2 cores (timings in the trainers README).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "optimizer": "rmsprop",
        "lr": {"sft": 1e-7, "preft": 1e-7, "fspo": 1e-6, "fspo-rat": 1e-6, "oracle": 1e-6},
        "loss": "ipo",
        "beta": 0.01,
        "epochs": 1.0,
        "steps": None,
        "batch_size": 1,
        "global_batch": 4,
        "warmup_steps": 150,
        "max_grad_norm": 10.0,
        "max_length": 8192,
        "dtype": "auto",
        "lora": False,
        "eval_limit": 1000,
        "save_every": 200,
    },
    "cpu-tiny": {
        "optimizer": "adamw",
        "lr": 1e-3,
        "loss": "ipo",
        "beta": 0.1,
        "batch_size": 2,
        "grad_accum": 1,
        "global_batch": None,
        "warmup_steps": 0,
        "max_grad_norm": 10.0,
        "max_length": 4096,
        "dtype": "float32",
        "eval_limit": 32,
        "save_every": 50,
    },
    "embedded": {
        "optimizer": "adamw",
        "lr": 5e-4,
        "loss": "ipo",
        "beta": 0.1,
        "steps": 100,
        "batch_size": 1,
        "grad_accum": 1,
        "global_batch": None,
        "warmup_steps": 10,
        "max_grad_norm": 10.0,
        "max_length": 768,
        "shots": 2,
        "dtype": "float32",
        "lora": True,
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_targets": ["q_proj", "v_proj"],
        "lora_layers": 8,
        "eval_limit": 32,
        "save_every": 50,
    },
}

#: Fields that do not change what is trained (left out of the config hash that guards resume).
RUN_ONLY_FIELDS = ("out", "save_every", "keep_checkpoints", "eval_limit", "eval_batch_size",
                   "log_every", "preset")


@dataclass
class TrainConfig:
    """Everything a training run needs; JSON-able (it goes into ``fspo_card.json``)."""

    method: str
    domain: str = ""
    model: str = "embedded"
    data: str = "builtin"
    out: str | None = None
    preset: str | None = None
    # model and adapters
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: list[str] | str = "all-linear"
    lora_layers: int | None = None  # adapters on the last N decoder layers only (None: all)
    init: str | None = None
    dtype: str = "auto"
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    # data
    shots: int | None = None
    passes: int | None = None
    max_length: int = 8192
    # objective
    loss: str = "ipo"
    beta: float = 0.01
    label_smoothing: float = 0.0
    layout: str = "packed"
    # optimisation
    optimizer: str = "rmsprop"
    lr: float | dict[str, float] = 1e-6
    weight_decay: float = 0.0
    steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 1
    grad_accum: int = 4
    global_batch: int | None = None
    warmup_steps: int = 150
    max_grad_norm: float = 10.0
    seed: int = 0
    # bookkeeping
    save_every: int = 200
    keep_checkpoints: int = 1
    eval_limit: int | None = 200
    eval_batch_size: int | None = None
    log_every: int = 10

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def learning_rate(self) -> float:
        if isinstance(self.lr, dict):
            return float(self.lr[self.method])
        return float(self.lr)

    def training_fields(self) -> dict[str, Any]:
        """What determines the trained weights (for the resume guard)."""
        data = self.to_dict()
        for name in RUN_ONLY_FIELDS:
            data.pop(name, None)
        data["lr"] = self.learning_rate()
        return data


def make_config(method: str, *, preset: str | None = None, **explicit: Any) -> TrainConfig:
    """Defaults, then the preset, then the explicit values (None means "not given")."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(explicit) - names)
    if unknown:
        raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
    values: dict[str, Any] = dict(PRESETS.get(preset or "", {}))
    given = {k: v for k, v in explicit.items() if v is not None}
    if "grad_accum" in given and "global_batch" not in given:
        values["global_batch"] = None  # an explicit accumulation beats the preset's global batch
    values.update(given)
    values["preset"] = preset
    return TrainConfig(method=method, **values)
