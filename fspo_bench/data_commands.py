"""``fspo-bench data``: statistics of a domain's data, and export in the official columns."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from fspo_bench import plugins
from fspo_bench.data_metrics import label_entropy, mean_pairwise_similarity
from fspo_bench.datafiles import write_rows
from fspo_bench.dataset import DomainData
from fspo_bench.errors import FspoBenchError

DataOption = Annotated[str, typer.Option("--data", help="builtin, hub, or a file path")]
DomainOption = Annotated[list[str], typer.Option("--domain", help="Domain name (repeatable).")]


def load(domain: str, data: str, strict: bool = False, shots: int | None = None) -> DomainData:
    """Load a domain by name, reporting skipped rows on stderr."""
    loaded = plugins.get("domain", domain)().load(data, strict=strict, shots=shots)
    if loaded.problems:
        typer.echo(f"fspo-bench: {domain}: skipped {len(loaded.problems)} bad row(s) or user(s); "
                   f"first: {loaded.problems[0]} (use --strict to fail)", err=True)
    return loaded


def stats(data: DomainData, embeddings: bool) -> dict:
    train, held_out = data.train_preferences(), data.eval_preferences()
    questions = {p.question_id for p in data.preferences}
    result = {
        "domain": data.domain, "source": data.source, "default_shots": data.default_shots,
        "users": len(data.users), "train_users": len(data.train_users),
        "eval_users": len(data.eval_users), "pairs": len(data.preferences),
        "train_pairs": len(train), "eval_pairs": len(held_out), "questions": len(questions),
        "eval_questions": len(data.eval_questions), "skipped": len(data.problems),
        "label_entropy_nats": round(label_entropy(data.preferences), 4),
    }
    if embeddings:
        result["mean_pairwise_similarity"] = round(mean_pairwise_similarity(data.preferences), 4)
    return result


def add_data_commands(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Inspect and export domain data.", no_args_is_help=True)
    app.add_typer(data_app, name="data")

    @data_app.command("stats")
    def stats_command(
        domain: DomainOption = None,
        data: DataOption = "builtin",
        strict: Annotated[bool, typer.Option(help="Fail on any bad row.")] = False,
        embeddings: Annotated[bool, typer.Option(
            help="Compute response diversity with the offline embedding model.")] = True,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Users, pairs and questions per split; label entropy and response diversity."""
        names = domain or plugins.names("domain")
        rows = [stats(load(name, data, strict), embeddings) for name in names]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        import pandas as pd

        typer.echo(pd.DataFrame(rows).set_index("domain").T.to_markdown())

    @data_app.command("export")
    def export_command(
        domain: Annotated[str, typer.Option("--domain", help="Domain name.")],
        out: Annotated[str, typer.Option("--out", help="File (.jsonl, .json, .parquet, .csv).")],
    ) -> None:
        """Write a domain's shipped data in its official columns (loadable with --data PATH)."""
        component = plugins.get("domain", domain)()
        if not hasattr(component, "builtin_rows"):
            raise FspoBenchError(f"domain {domain!r} has no shipped rows to export")
        path = write_rows(component.builtin_rows(), out)
        typer.echo(f"wrote {path}")
