"""The ``fspo-bench`` command line.

Core commands live here; plugins add more through the ``register_commands`` hook. Nothing heavy
(torch, transformers, vLLM, litellm, lm-eval) is imported until a command needs it, so
``fspo-bench --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated

import typer
from typer._click.exceptions import NoArgsIsHelpError  # the click that typer bundles

from fspo_bench import __version__, plugins
from fspo_bench.audit import add_audit_command
from fspo_bench.data_commands import add_data_commands
from fspo_bench.errors import FspoBenchError, UnknownNameError
from fspo_bench.prefacc_command import add_prefacc_commands
from fspo_bench.run_commands import add_run_commands
from fspo_bench.safety import check_litellm_version
from fspo_bench.serve import add_serve_command
from fspo_bench.synth_command import add_synth_command

LISTABLE = {"domains": "domain", "methods": "method", "backends": "backend",
            "judges": "judge", "metrics": "metric"}


def _interactive() -> bool:
    return sys.stdout.isatty()


def _echo_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"fspo-bench {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    """The CLI app with the core commands and every plugin's commands."""
    app = typer.Typer(
        name="fspo-bench",
        help="Benchmark few-shot personalization of language models (FSPO and baselines).",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def root(
        version: Annotated[bool, typer.Option(
            "--version", callback=_version_callback, is_eager=True,
            help="Print the version and exit.")] = False,
    ) -> None:
        """Benchmark few-shot personalization of language models (FSPO and baselines)."""

    @app.command("plugins")
    def plugins_command(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """List loaded plugins: built-in and third-party, with the hooks each implements."""
        infos = plugins.state().plugins
        if as_json:
            typer.echo(json.dumps([vars(i) for i in infos], indent=2))
        elif _interactive():
            rows = [[i.name, f"{i.distribution} {i.version}",
                     "built-in" if i.builtin else "third-party", ", ".join(i.hooks),
                     i.error or "ok"] for i in infos]
            _echo_table("plugins", ["name", "distribution", "kind", "hooks", "status"], rows)
        else:
            for i in infos:
                status = f"error: {i.error}" if i.error else "ok"
                kind = "built-in" if i.builtin else "third-party"
                typer.echo(f"{i.name}\t{i.distribution} {i.version}\t{kind}\t"
                           f"{','.join(i.hooks)}\t{status}")

    @app.command("list")
    def list_command(
        what: Annotated[str, typer.Argument(help="domains, methods, backends, judges or metrics")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """List registered domains, methods, backends, judges or metrics."""
        if what not in LISTABLE:
            raise UnknownNameError("listing", what, list(LISTABLE))
        entries = plugins.entries(LISTABLE[what])
        if as_json:
            typer.echo(json.dumps([
                {"name": e.name, "description": e.component.description, "plugin": e.provider}
                for e in entries], indent=2))
        elif _interactive():
            _echo_table(what, ["name", "description", "plugin"],
                        [[e.name, e.component.description, e.provider] for e in entries])
        else:
            for e in entries:
                typer.echo(e.name)

    add_data_commands(app)
    add_run_commands(app)
    add_serve_command(app)
    add_audit_command(app)
    add_prefacc_commands(app)
    add_synth_command(app)
    plugins.add_commands(app)
    return app


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    run_app(build_app, argv, "fspo-bench")


def _usage_line(exc: typer.TyperException) -> str:
    """The error in one line, with where to find help when it is about a command's usage."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see '{ctx.command_path} --help')" if ctx is not None else message


def run_app(make_app: Callable[[], typer.Typer], argv: list[str] | None, prog_name: str) -> None:
    """Run a typer app: user errors become one line on stderr and a non-zero exit code."""
    try:
        check_litellm_version()  # refuse to start beside a known-bad litellm release
        command = typer.main.get_command(make_app())
        code = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except FspoBenchError as exc:
        typer.echo(f"fspo-bench: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except NoArgsIsHelpError as exc:  # no arguments: the help (rich has printed it already)
        if exc.format_message():
            typer.echo(exc.format_message())
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors of the click that typer bundles
        typer.echo(f"fspo-bench: error: {_usage_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
