"""``python -m fspo_bench.trainers [train options]``: what ``accelerate launch -m`` runs.

The same options as ``fspo-bench train`` (this is that command alone, without the plugin
system), so ``accelerate launch --config_file trainers/accelerate/fsdp.yaml -m
fspo_bench.trainers --method fspo --domain elix --model ...`` trains on every process.
"""

from __future__ import annotations

import typer

from fspo_bench.cli import run_app
from fspo_bench.trainers.cli import add_train_command


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    add_train_command(app, "train")
    return app


def main(argv: list[str] | None = None) -> None:
    run_app(_app, argv, "python -m fspo_bench.trainers")


if __name__ == "__main__":
    main()
