"""``fspo-bench leaderboard build RUN_DIR... --out DIR``: the leaderboard of finished runs.

A built-in plugin (entry point ``leaderboard = "fspo_bench.leaderboard.plugin"``) that adds one
command group through the ``register_commands`` hook. pandas, Jinja2 and matplotlib are imported
only when the command runs, so ``fspo-bench --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fspo_bench import hookimpl

DEFAULT_TITLE = "fspo-bench leaderboard"


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    app = typer.Typer(help="Aggregate run directories into a leaderboard.", no_args_is_help=True)
    cli.add_typer(app, name="leaderboard")

    @app.command("build", short_help="Build the leaderboard files from run directories.", help=(
        "Build leaderboard.md, leaderboard.csv, leaderboard.json and index.html from run "
        "directories. Every run directory is read and checked before anything is written; then "
        "the four files replace those in --out (other files there are left alone)."))
    def build_command(
        run_dirs: Annotated[list[Path], typer.Argument(
            help="Run directories (config.json, generations.jsonl, judgments.jsonl, "
                 "results.json; see docs/runs.md).", metavar="RUN_DIR",
            show_default=False)],
        out: Annotated[Path, typer.Option(
            "--out", metavar="DIR",
            help="Output folder for leaderboard.md, .csv, .json and index.html.")],
        title: Annotated[str, typer.Option("--title", help="Page and table title.")]
            = DEFAULT_TITLE,
        max_samples: Annotated[int, typer.Option(
            "--max-samples", min=0, help="Queries shown per run and domain in index.html.")] = 50,
        with_paper: Annotated[bool, typer.Option(
            "--with-paper", help="Add the FSPO paper's published winrates as reference rows.")]
            = False,
        vs: Annotated[Optional[str], typer.Option(  # noqa: UP045
            "--vs", metavar="METHOD",
            help="Add each row's paired difference from METHOD's row of the same domain, model "
                 "and judge: winrate and preference accuracy, with 95% CIs and McNemar's p.")]
            = None,
    ) -> None:
        """Build the leaderboard files from run directories."""
        from fspo_bench.leaderboard.build import build

        summary = build(run_dirs, out, title=title, max_samples=max_samples,
                        with_paper=with_paper, vs=vs)
        paper = f" and {summary['paper_rows']} paper rows" if summary["paper_rows"] else ""
        typer.echo(f"wrote {', '.join(summary['files'])} to {out} "
                   f"({summary['rows'] - summary['paper_rows']} rows from {summary['runs']} "
                   f"run(s){paper})")
