"""The ``fspo-bench train`` command (also ``python -m fspo_bench.trainers``).

Options left out take the preset's value (``--preset``; default ``embedded`` for the embedded
model, ``paper`` otherwise), then the built-in default. ``--launcher accelerate`` re-executes
the same command under ``accelerate launch`` (FSDP config shipped in
``trainers/accelerate/fsdp.yaml``). Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fspo_bench.errors import FspoBenchError

METHODS = ("sft", "preft", "fspo", "fspo-rat", "oracle")
LAUNCHERS = ("none", "accelerate")


def fsdp_config_path() -> Path:
    """The shipped accelerate FSDP config (``trainers/accelerate/fsdp.yaml``)."""
    return Path(str(resources.files("fspo_bench.trainers").joinpath("accelerate/fsdp.yaml")))


def _option_args(options: dict[str, Any]) -> list[str]:
    """Command-line arguments that reproduce the explicitly given ``options``."""
    args: list[str] = []
    for name, value in options.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + name.replace("_", "-"))
        else:
            args += [flag, str(value)]
    return args


def accelerate_command(options: dict[str, Any], *, config_file: str | None,
                       num_processes: int | None) -> list[str]:
    """``accelerate launch [...] -m fspo_bench.trainers <options>``."""
    beside = Path(sys.executable).parent / "accelerate"  # the environment's own accelerate
    exe = str(beside) if beside.is_file() else shutil.which("accelerate")
    launch = [exe, "launch"] if exe else [sys.executable, "-m", "accelerate.commands.launch"]
    launch += ["--config_file", config_file or str(fsdp_config_path())]
    if num_processes is not None:
        launch += ["--num_processes", str(num_processes)]
    return launch + ["-m", "fspo_bench.trainers", *_option_args(options)]


def add_train_command(app: typer.Typer, name: str = "train") -> None:
    @app.command(name)
    def train_command(
        method: Annotated[str, typer.Option(help="sft, preft, fspo, fspo-rat or oracle.")],
        domain: Annotated[str, typer.Option(help="Domain to train on (its train split).")],
        model: Annotated[str, typer.Option(
            help="Base model: 'embedded', a local folder or a hub id.")] = "embedded",
        data: Annotated[str, typer.Option(help="builtin, hub, or a file path.")] = "builtin",
        preset: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="paper, cpu-tiny or embedded [default: embedded for the embedded model, "
                 "else paper]")] = None,
        out: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="Output folder [default: runs/train/METHOD-DOMAIN-HASH]")] = None,
        lora: Annotated[Optional[bool], typer.Option(  # noqa: UP045
            "--lora/--no-lora", help="Train a LoRA adapter instead of every weight.")] = None,
        lora_r: Annotated[Optional[int], typer.Option(help="LoRA rank.")] = None,  # noqa: UP045
        lora_layers: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="LoRA on the last N decoder layers only.")] = None,
        init: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="Start from this checkpoint (the SFT stage); it is also the reference.")
        ] = None,
        steps: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Optimizer steps [default: the preset's, else 1 epoch].")] = None,
        epochs: Annotated[Optional[float], typer.Option(  # noqa: UP045
            help="Epochs when --steps is not given.")] = None,
        loss: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="ipo, dpo or ipo_token_mean (pair methods).")] = None,
        beta: Annotated[Optional[float], typer.Option(help="IPO/DPO beta.")] = None,  # noqa: UP045
        label_smoothing: Annotated[Optional[float], typer.Option(  # noqa: UP045
            help="DPO label smoothing.")] = None,
        lr: Annotated[Optional[float], typer.Option(help="Learning rate.")] = None,  # noqa: UP045
        optimizer: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="rmsprop or adamw.")] = None,
        batch_size: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Micro-batch per process.")] = None,
        grad_accum: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Gradient accumulation steps.")] = None,
        warmup_steps: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Linear warm-up steps, then constant.")] = None,
        max_grad_norm: Annotated[Optional[float], typer.Option(  # noqa: UP045
            help="Gradient-norm clip.")] = None,
        max_length: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Context length; longer examples are counted and skipped.")] = None,
        shots: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Shots per example [default: the preset's, else the domain's].")] = None,
        dtype: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="auto (bf16 autocast where supported, else fp32), float32, bfloat16.")] = None,
        layout: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="packed (prompt once per pair) or naive.")] = None,
        gradient_checkpointing: Annotated[Optional[bool], typer.Option(  # noqa: UP045
            "--gradient-checkpointing/--no-gradient-checkpointing")] = None,
        save_every: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Checkpoint every N steps (0: only at the end).")] = None,
        eval_limit: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Held-out pairs to score at the end (0: none).")] = None,
        seed: Annotated[Optional[int], typer.Option(help="Seed.")] = None,  # noqa: UP045
        resume: Annotated[bool, typer.Option(
            "--resume/--no-resume", help="Resume from the last checkpoint in --out.")] = True,
        stop_after: Annotated[Optional[int], typer.Option(  # noqa: UP045
            hidden=True, help="Checkpoint and stop after N steps (tests).")] = None,
        device: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="cpu, cuda, cuda:1 ... [default: cuda if available]")] = None,
        progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
        launcher: Annotated[str, typer.Option(
            help="none, or accelerate (re-run under `accelerate launch`).")] = "none",
        accelerate_config: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="accelerate config file [default: the shipped FSDP config].")] = None,
        num_processes: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Processes for --launcher accelerate.")] = None,
    ) -> None:
        """Train SFT, Pref-FT, FSPO or FSPO + RAT on a domain; write a servable checkpoint."""
        if method not in METHODS:
            raise FspoBenchError(f"unknown training method {method!r}; valid: {', '.join(METHODS)}")
        if launcher not in LAUNCHERS:
            raise FspoBenchError(f"unknown launcher {launcher!r}; valid: {', '.join(LAUNCHERS)}")
        options = dict(
            method=method, domain=domain, model=model, data=data, preset=preset, out=out,
            lora=lora, lora_r=lora_r, lora_layers=lora_layers, init=init, steps=steps,
            epochs=epochs, loss=loss, beta=beta,
            label_smoothing=label_smoothing, lr=lr, optimizer=optimizer, batch_size=batch_size,
            grad_accum=grad_accum, warmup_steps=warmup_steps, max_grad_norm=max_grad_norm,
            max_length=max_length, shots=shots, dtype=dtype, layout=layout,
            gradient_checkpointing=gradient_checkpointing, save_every=save_every,
            eval_limit=eval_limit, seed=seed)
        if launcher == "accelerate":
            argv = accelerate_command({**options, "resume": resume, "progress": progress},
                                      config_file=accelerate_config, num_processes=num_processes)
            typer.echo(" ".join(argv), err=True)
            os.execvp(argv[0], argv)
        run_training(options, resume=resume, stop_after=stop_after, device=device,
                     progress=progress)


def run_training(options: dict[str, Any], *, resume: bool = True, stop_after: int | None = None,
                 device: str | None = None, progress: bool = True) -> Any:
    from fspo_bench.trainers.presets import make_config
    from fspo_bench.trainers.trainer import train

    options = dict(options)
    method = options.pop("method")
    preset = options.pop("preset", None)
    if preset is None:
        preset = "embedded" if options.get("model", "embedded") == "embedded" else "paper"
    try:
        config = make_config(method, preset=preset, **options)
    except ValueError as exc:
        raise FspoBenchError(str(exc)) from None
    result = train(config, resume=resume, stop_after=stop_after, device=device,
                   progress=progress)
    card = result.card
    if not result.main:
        return result
    if not result.complete:
        typer.echo(f"stopped after step {result.steps} of {card['steps_planned']}; run the same "
                   f"command again to resume: {result.out}")
        return result
    held = card.get("held_out_metrics") or {}
    line = f"trained {card['method']} on {card['domain']}: {card['steps']} steps, " \
           f"{card['wall_time_s']:.0f} s -> {result.out}"
    typer.echo(line)
    for key in ("loglik_accuracy", "reward_accuracy", "initial_loglik_accuracy"):
        if key in held:
            v = held[key]
            typer.echo(f"  held-out {key.replace('_', ' ')}: {v['value']:.1f} "
                       f"[{v['ci_low']:.1f}, {v['ci_high']:.1f}] ({held['n_pairs']} pairs, "
                       f"{held['n_users']} users)")
    typer.echo(f"  evaluate: {card['serve_command']}")
    return result
