"""``python -m fspo_bench.trainers [train options]``: what ``accelerate launch -m`` runs.

The same options as ``fspo-bench train`` (this is that command alone, without the plugin
system), so ``accelerate launch --config_file trainers/accelerate/fsdp.yaml -m
fspo_bench.trainers --method fspo --domain elix --model ...`` trains on every process.
"""

from __future__ import annotations

import sys

import click
import typer

from fspo_bench.errors import FspoBenchError
from fspo_bench.trainers.cli import add_train_command


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    add_train_command(app, "train")
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="python -m fspo_bench.trainers",
                            standalone_mode=False)
    except FspoBenchError as exc:
        typer.echo(f"fspo-bench: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
