"""``fspo-bench study invite | serve | export``: run a human study (docs/study.md).

A built-in plugin (entry point ``study = "fspo_bench.study.plugin"``) that adds one command group
through the ``register_commands`` hook. The web framework (the ``study`` extra) is imported only
when a command runs, so ``fspo-bench --help`` works without it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fspo_bench import hookimpl
from fspo_bench.errors import FspoBenchError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOOPBACK = ("127.0.0.1", "localhost", "::1")

StudyOption = Annotated[Path, typer.Option("--study", metavar="STUDY.yaml",
                                           help="The study file (docs/study.md).")]
DatabaseOption = Annotated[
    Optional[Path],  # noqa: UP045 - typer needs Optional on Python 3.10
    typer.Option("--database", metavar="FILE",
                 help="The study's SQLite file (default: the study file's 'database').")]


EXTRA_MODULES = ("yaml", "starlette", "uvicorn", "python_multipart")


def _require_extra() -> None:
    missing = [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise FspoBenchError(f"the study commands need the 'study' extra (missing: "
                             f"{', '.join(missing)}): pip install 'fspo-bench[study]'")


def _log(message: str) -> None:
    print(f"fspo-bench study: {message}", file=sys.stderr)


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    app = typer.Typer(help="Run a human study: invite participants, serve the study, export "
                           "their judgments.", no_args_is_help=True)
    cli.add_typer(app, name="study")

    @app.command("invite")
    def invite_command(
        study: StudyOption,
        n: Annotated[int, typer.Option("-n", min=1, help="How many invitations to make.")] = 1,
        base_url: Annotated[str, typer.Option(
            "--base-url", help="Where participants reach the server; links are BASE_URL/s/TOKEN.")
        ] = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}",
        database: DatabaseOption = None,
    ) -> None:
        """Make N participants and print one invitation link each.

        Tokens are shown only now: the database keeps their hashes."""
        _require_extra()
        from .config import load_study
        from .store import StudyStore

        config = load_study(study, database)
        store = StudyStore(config.database)
        try:
            for _ in range(n):
                typer.echo(f"{base_url.rstrip('/')}/s/{store.invite()}")
        finally:
            store.close()

    @app.command("serve")
    def serve_command(
        study: StudyOption,
        host: Annotated[str, typer.Option(
            "--host", help="Address to bind; anything but loopback exposes the study to the "
                           "network.")] = DEFAULT_HOST,
        port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = DEFAULT_PORT,
        database: DatabaseOption = None,
    ) -> None:
        """Serve the study to invited participants until interrupted."""
        _require_extra()
        import uvicorn

        from .server import build_app

        if host not in LOOPBACK:
            _log(f"warning: binding {host}: anyone who can reach this address and holds an "
                 "invitation link can take part; the server speaks plain HTTP")
        study_app, close = build_app(study, database, log=_log)
        _log(f"serving {study_app.config.title!r} on http://{host}:{port}/ (Ctrl-C stops)")
        try:
            uvicorn.run(study_app.app, host=host, port=port, log_level="warning")
        finally:
            close()

    @app.command("export")
    def export_command(
        study: StudyOption,
        out: Annotated[Path, typer.Option("--out", metavar="DIR",
                                          help="Folder for judgments.jsonl and summary.json.")],
        database: DatabaseOption = None,
    ) -> None:
        """Export human judgments, judges' verdicts on the same pairs, and statistics.

        Statistics: winrate with a participant-clustered CI, sign test, judge agreement."""
        _require_extra()
        from fspo_bench.cache import ResponseCache, default_cache_path

        from .config import load_study
        from .export import export, summary_lines
        from .store import StudyStore

        config = load_study(study, database)
        if not config.database.exists():
            raise FspoBenchError(f"no study database at {config.database}")
        store = StudyStore(config.database)
        try:
            with ResponseCache(config.cache or default_cache_path()) as cache:
                summary = export(config, store, out, cache, log=_log)
        finally:
            store.close()
        for line in summary_lines(summary):
            typer.echo(line)
        typer.echo(f"wrote {out}")
