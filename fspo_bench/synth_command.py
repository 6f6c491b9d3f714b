"""``fspo-bench synth``: make synthetic preference data the paper's way (docs/synth.md).

The engine is :mod:`fspo_bench.synth`; this module only turns options into its configuration,
backends and judge, imported lazily so that ``fspo-bench --help`` stays fast.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fspo_bench.embedded import EMBEDDED


def _models(value: str) -> list[str]:
    from fspo_bench.errors import FspoBenchError

    models = [m.strip() for m in value.split(",") if m.strip()]
    if not models:
        raise FspoBenchError("--model needs at least one model name")
    return models


def _init_parameters(cls: type) -> set[str]:
    try:
        return set(inspect.signature(cls.__init__).parameters) - {"self"}
    except (TypeError, ValueError):
        return set()


def build_judge(name: str, judge_model: str | None, judge_backend: str | None,
                options: dict[str, Any], backend_name: str, model: str, backend_object: Any
                ) -> Any:
    """The judge plugin ``name``. A judge that takes a ``model`` runs the first generation model
    unless ``judge_model`` is given; when that is the same model on the same backend and the
    judge accepts ``backend_instance``, it shares the loaded backend (the model is loaded once)."""
    from fspo_bench import plugins
    from fspo_bench.runner import resolve_judge_name

    if judge_model is None:
        name, judge_model = resolve_judge_name(name)  # as `fspo-bench run --judge` takes it
    cls = plugins.get("judge", name)
    accepted = _init_parameters(cls)
    kwargs: dict[str, Any] = dict(options)
    if judge_model is None and "model" in accepted:
        judge_model, judge_backend = model, judge_backend or backend_name
    if judge_model is not None:
        kwargs["model"] = judge_model
    if judge_backend is not None:
        kwargs["backend"] = judge_backend
    same = judge_model == model and judge_backend in (None, backend_name)
    if same and "backend_instance" in accepted and set(options) <= accepted:
        kwargs["backend"] = backend_name
        kwargs["backend_instance"] = backend_object
    return cls(**kwargs)


def add_synth_command(app: typer.Typer) -> None:
    """Add ``synth`` to a ``typer.Typer`` app."""

    @app.command("synth")
    def synth_command(
        domain: Annotated[str, typer.Option(
            "--domain", help="Domain whose users seed the personas and whose questions seed "
                             "the questions.")],
        out: Annotated[Path, typer.Option(
            "--out", help="Output file (.jsonl, .json, .parquet, .csv), in the Roleplay "
                          "layout: load it with --domain roleplay --data PATH.")],
        backend: Annotated[str, typer.Option("--backend", help="Backend plugin.")] = "hf",
        model: Annotated[str, typer.Option(
            "--model", help="Model, or a comma-separated ensemble: the first writes personas, "
                            "questions, views and refinements; responses cycle through all.")
        ] = EMBEDDED,
        judge: Annotated[str, typer.Option(
            "--judge", help="Judge plugin, or a judge model for the pairwise judge.")
        ] = "pairwise",
        judge_model: Annotated[Optional[str], typer.Option(  # noqa: UP045
            "--judge-model", help="Judge model [default: the first --model].")] = None,
        judge_backend: Annotated[Optional[str], typer.Option(  # noqa: UP045
            "--judge-backend", help="Backend of the judge model [default: --backend when the "
                                    "judge model is the default].")] = None,
        judge_option: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
            "--judge-option", help="KEY=VALUE for the judge (e.g. max_new_tokens=64, "
                                   "max_retries=0, api_base=...); repeatable.")] = None,
        personas: Annotated[int, typer.Option("--personas", help="Personas (N).")] = 4,
        questions: Annotated[int, typer.Option("--questions", help="Questions (M).")] = 4,
        views: Annotated[int, typer.Option("--views", help="Views per question (K).")] = 4,
        rounds: Annotated[int, typer.Option("--rounds", help="Refinement rounds (R).")] = 1,
        temperature: Annotated[float, typer.Option(
            "--temperature", help="Sampling temperature of every generation (0 = greedy).")
        ] = 1.0,
        seed: Annotated[int, typer.Option("--seed", help="Seed for sampling and choices.")] = 0,
        max_new_tokens: Annotated[int, typer.Option(
            "--max-new-tokens", help="Tokens per generation.")] = 256,
        repetition_penalty: Annotated[Optional[float], typer.Option(  # noqa: UP045
            "--repetition-penalty",
            help="[default: 1.2 if an embedded model is used, else 1.0]")] = None,
        questions_from: Annotated[str, typer.Option(
            "--questions-from", help="generate (written by the model) or builtin (the "
                                     "domain's shipped questions).")] = "generate",
        seed_data: Annotated[str, typer.Option(
            "--seed-data", help="Where the seed users and questions come from: builtin, hub "
                                "or a file.")] = "builtin",
        diversity: Annotated[bool, typer.Option(
            "--diversity/--no-diversity",
            help="Compute the response diversity with the offline embedding model.")] = True,
        cache: Annotated[Optional[Path], typer.Option(  # noqa: UP045
            "--cache", help="SQLite cache file [default: $FSPO_BENCH_CACHE or "
                            "~/.cache/fspo-bench]")] = None,
    ) -> None:
        """Synthetic preferences: personas, questions, views and view-conditioned responses,
        labels judged in both orders (inconsistent ones dropped), persona refinement, and the
        paper's two data metrics. Resumable through the cache."""
        from fspo_bench import plugins
        from fspo_bench.cache import ResponseCache, default_cache_path
        from fspo_bench.datafiles import SUFFIXES, DataError
        from fspo_bench.embedded import EMBEDDED_GENERATION_DEFAULTS
        from fspo_bench.options import parse_options
        from fspo_bench.progress import StageProgress
        from fspo_bench.synth import SynthConfig, synthesize, write_synth

        started = time.monotonic()
        models = _models(model)
        penalty = repetition_penalty if repetition_penalty is not None else (
            EMBEDDED_GENERATION_DEFAULTS["repetition_penalty"] if EMBEDDED in models else 1.0)
        config = SynthConfig(domain=domain, personas=personas, questions=questions, views=views,
                             rounds=rounds, temperature=float(temperature), seed=seed,
                             max_new_tokens=max_new_tokens, repetition_penalty=float(penalty),
                             questions_from=questions_from, seed_data=seed_data,
                             diversity=diversity)
        config.check()
        if out.suffix.lower() not in SUFFIXES:
            raise DataError(f"{out}: unsupported file type {out.suffix!r}, expected "
                            f"{', '.join(SUFFIXES)}")
        plugins.get("domain", domain)
        backend_cls = plugins.get("backend", backend)
        backends = [backend_cls(m) for m in models]
        for b in backends:
            b.check()
        judge_object = build_judge(judge, judge_model, judge_backend,
                                   parse_options(judge_option or []), backend, models[0],
                                   backends[0])
        judge_object.check()

        def log(line: str) -> None:
            typer.echo(line, err=True)

        with ResponseCache(cache or default_cache_path()) as response_cache:
            progress = StageProgress()
            try:
                result = synthesize(config, backends, judge_object, response_cache, progress,
                                    log=log)
            finally:
                progress.close()
        rows_path, sidecar = write_synth(result, out)
        counts, metrics = result.stats["counts"], result.stats["metrics"]
        similarity = metrics["mean_pairwise_similarity"]
        typer.echo(
            f"wrote {counts['rows']} labelled rows to {rows_path} "
            f"({counts['personas']} personas x {counts['questions']} questions x "
            f"{config.views} views; {counts['pairs_labelled']} pairs judged in both orders, "
            f"{counts['dropped_inconsistent']} dropped as order-inconsistent, "
            f"{counts['decided_by_refinement']} decided by refinement)")
        typer.echo(
            f"label entropy {metrics['label_entropy_before_nats']:.4f} -> "
            f"{metrics['label_entropy_after_nats']:.4f} nats; mean pairwise similarity "
            f"{'n/a' if similarity is None else f'{similarity:.4f}'}; stats: {sidecar}")
        for warning in result.stats["warnings"]:
            typer.echo(f"fspo-bench: warning: {warning}", err=True)
        if counts["rows"]:
            typer.echo(f"load it with: --domain roleplay --data {rows_path}")
        typer.echo(f"done in {time.monotonic() - started:.1f} s", err=True)
