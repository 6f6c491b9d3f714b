"""Checkpoints and resumable training state: safetensors and JSON only, never pickle.

An output folder ``OUT`` holds:

``OUT/``
    the final model: a PEFT adapter (``adapter_config.json``, ``adapter_model.safetensors``) or a
    full model (``config.json``, ``*.safetensors``, tokenizer files), and ``fspo_card.json``.
    ``fspo-bench run --checkpoint OUT`` serves it.
``OUT/checkpoint-NNNNNN/``
    the state after step N: the same weights and card, plus ``optimizer.safetensors`` (every
    tensor of the optimizer state), ``rng.safetensors`` (torch CPU/CUDA generator states) and
    ``trainer_state.json`` (step, optimizer hyper-parameters and scalars, scheduler state, Python
    RNG state, config and data hashes). Written into a temporary folder and renamed into place,
    so a killed run leaves either the previous checkpoint or the new one, never half of one.
``OUT/reference_logps.safetensors``
    the reference log-probs, computed once before the first step (pair methods).
``OUT/metrics.jsonl``
    one line per optimizer step.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

CARD = "fspo_card.json"
STATE = "trainer_state.json"
OPTIMIZER = "optimizer.safetensors"
RNG = "rng.safetensors"
REFERENCE = "reference_logps.safetensors"
METRICS = "metrics.jsonl"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_TMP_PREFIX = ".tmp-checkpoint-"


def checkpoint_dirs(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``out``, oldest first."""
    if not out.is_dir():
        return []
    found = []
    for path in out.iterdir():
        match = _CHECKPOINT_RE.match(path.name)
        if match and (path / STATE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out: Path) -> Path | None:
    found = checkpoint_dirs(out)
    return found[-1][1] if found else None


def remove_stale_temporaries(out: Path) -> None:
    if out.is_dir():
        for path in out.glob(f"{_TMP_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", "utf-8")
    os.replace(tmp, path)


def save_tensors(path: Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None
                 ) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
              metadata=metadata)
    os.replace(tmp, path)


def load_tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


# --------------------------------------------------------------------------- optimizer


def optimizer_state(optimizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tensors, json)`` of an optimizer's state dict: tensors go to safetensors."""
    import torch

    state = optimizer.state_dict()
    tensors: dict[str, Any] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: Any, tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# --------------------------------------------------------------------------- RNG


def rng_state() -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda.{i}"] = value
    version, internal, gauss = random.getstate()
    return tensors, {"python": [version, list(internal), gauss]}


def restore_rng(tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(tensors["torch_cpu"])
    cuda = sorted((int(k.split(".")[1]), v) for k, v in tensors.items()
                  if k.startswith("torch_cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([v for _, v in cuda])
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(out: Path, step: int, *, save_weights: Callable[[Path], None],
                    optimizer: Any | None, scheduler: Any, state: dict[str, Any],
                    card: dict[str, Any], keep: int = 1) -> Path:
    """Write ``out/checkpoint-<step>`` atomically and keep the ``keep`` newest (at least 1)."""
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"checkpoint-{step:06d}"
    tmp = out / f"{_TMP_PREFIX}{step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights(tmp)
    full_state = dict(state)
    if optimizer is not None:
        tensors, meta = optimizer_state(optimizer)
        save_tensors(tmp / OPTIMIZER, tensors)
        full_state["optimizer"] = meta
    full_state["scheduler"] = scheduler.state_dict()
    tensors, meta = rng_state()
    save_tensors(tmp / RNG, tensors)
    full_state["rng"] = meta
    full_state["step"] = step
    write_json(tmp / CARD, card)
    write_json(tmp / STATE, full_state)  # last: its presence marks the checkpoint complete
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for _, old in checkpoint_dirs(out)[:-max(keep, 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE).read_text("utf-8"))


def restore_training_state(checkpoint: Path, state: dict[str, Any], optimizer: Any,
                           scheduler: Any) -> None:
    """Optimizer, scheduler and RNG states of a checkpoint (the weights are loaded apart)."""
    if "optimizer" not in state:
        raise ValueError(f"{checkpoint} has no optimizer state; it cannot be resumed")
    restore_optimizer(optimizer, load_tensors(checkpoint / OPTIMIZER), state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng(load_tensors(checkpoint / RNG), state["rng"])


def trim_metrics(out: Path, last_step: int) -> None:
    """Drop metric lines of steps after ``last_step`` (written after the checkpoint resumed)."""
    path = out / METRICS
    if not path.is_file():
        return
    kept = []
    for line in path.read_text("utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(f"{line}\n" for line in kept), "utf-8")
    os.replace(tmp, path)
