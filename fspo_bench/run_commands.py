"""``fspo-bench run``, ``judge``, ``score`` and ``compare``."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from fspo_bench import plugins
from fspo_bench.cache import ResponseCache, default_cache_path
from fspo_bench.embedded import EMBEDDED, EMBEDDED_GENERATION_DEFAULTS, EMBEDDED_RUN_DEFAULTS
from fspo_bench.errors import FspoBenchError
from fspo_bench.options import parse_options
from fspo_bench.records import RunResult, RunSpec
from fspo_bench.rundir import PREFACC, claimed, read_json, read_judgments
from fspo_bench.runner import Runner, load_runner, plan
from fspo_bench.spec_checks import check_spec
from fspo_bench.stats import Outcome, method_difference, outcome, query_scores

JudgeOptions = Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
    help="KEY=VALUE option for the judge (repeatable), e.g. api_base=http://127.0.0.1:8000/v1.")]
CacheOption = Annotated[Optional[Path], typer.Option(  # noqa: UP045
    "--cache", help="SQLite cache file [default: $FSPO_BENCH_CACHE or ~/.cache/fspo-bench]")]


def _cache(path: Path | None) -> ResponseCache:
    return ResponseCache(path or default_cache_path())


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def print_result(result: RunResult, out: Path) -> None:
    typer.echo(f"\n{result.spec.method} vs {result.spec.reference} "
               f"(judge {result.spec.judge}, model {result.spec.model}): {out}")
    for r in result.results:
        typer.echo(f"  {r.domain:<10} winrate {_format(r.winrate):>5} "
                   f"[{_format(r.ci_low)}, {_format(r.ci_high)}]  "
                   f"W/L/T {r.n_wins}/{r.n_losses}/{r.n_ties}  invalid {r.n_invalid}  "
                   f"queries {r.extra['n_queries']}" + _failed_text(r.extra)
                   + _prefacc_text(r.extra))


def _prefacc_text(extra: dict) -> str:
    if extra.get("prefacc") is None:
        return ""
    text = f"  prefacc {_interval(extra, 'prefacc')} on {extra['prefacc_n']} pairs"
    if extra.get("specificity") is not None:
        text += f"  specificity {_interval(extra, 'specificity')}"
    return text


def _interval(extra: dict, key: str) -> str:
    return (f"{_format(extra[key])} [{_format(extra[f'{key}_ci_low'])}, "
            f"{_format(extra[f'{key}_ci_high'])}]")


def _failed_text(extra: dict) -> str:
    n = extra.get("n_failed")
    if not n:
        return ""
    return f"  FAILED {n} ({_format(extra['failed_share'])}%)"


def _methods(requested: list[str], model: str, checkpoint: str | None) -> list[str]:
    """The methods to run: as named, or with ``all`` every registered method that can run
    (those that need a checkpoint only where their plugin ships one for the model)."""
    if requested != ["all"]:
        for name in requested:
            plugins.get("method", name)
        return requested
    if checkpoint:
        raise FspoBenchError("--checkpoint serves one method: name it with --method, not 'all'")
    names = []
    for name in plugins.names("method"):
        cls = plugins.get("method", name)
        if cls.needs_checkpoint and not (model == EMBEDDED and cls.shipped_checkpoints):
            typer.echo(f"fspo-bench: skipping {name}: it needs a trained checkpoint "
                       f"(--method {name} --checkpoint DIR)", err=True)
            continue
        names.append(name)
    return names


def add_run_commands(app: typer.Typer) -> None:
    @app.command("run")
    def run_command(
        method: Annotated[list[str], typer.Option(
            "--method", help="Method name (repeatable), or 'all'.")],
        domain: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
            "--domain", help="Domain (repeatable) [default: all]")] = None,
        model: Annotated[str, typer.Option(help="Model: 'embedded', a folder or a hub id.")
                         ] = EMBEDDED,
        backend: Annotated[str, typer.Option(help="Backend plugin.")] = "hf",
        judge: Annotated[str, typer.Option(
            help="Judge plugin name, or a judge model for the pairwise judge "
                 "(e.g. openai/gpt-4o-2024-08-06).")] = "proxy",
        judge_option: JudgeOptions = None,
        backend_option: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
            help="KEY=VALUE option for the backend (repeatable), e.g. api_base=URL.")] = None,
        reference: Annotated[str, typer.Option(help="Reference method.")] = "base",
        data: Annotated[str, typer.Option(help="builtin, hub, or a file path.")] = "builtin",
        shots: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Shots per query [default: 2 on the embedded model, else the domain's].")
        ] = None,
        limit: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Queries per domain, a seeded sample [default: 8 on the embedded model, "
                 "else all].")] = None,
        prefacc: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Held-out pairs per domain scored for preference accuracy, 0 = none "
                 "[default: 64 on the embedded model, else 0].")] = None,
        specificity: Annotated[bool, typer.Option(
            "--specificity", help="Also score each preference-accuracy pair with an opposed "
                                  "user's shots (personalization specificity; twice the "
                                  "scoring).")] = False,
        seed: Annotated[int, typer.Option(help="Seed for shots, sampling and bootstrap.")] = 0,
        checkpoint: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="Trained checkpoint for methods that need one.")] = None,
        max_new_tokens: Annotated[int, typer.Option(help="Tokens per generation.")] = 128,
        temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
        repetition_penalty: Annotated[Optional[float], typer.Option(  # noqa: UP045
            help="[default: 1.2 for the embedded model, else 1.0]")] = None,
        out: Annotated[Optional[Path], typer.Option(  # noqa: UP045
            help="Run directory; with several methods, the folder of their run directories, "
                 "one per method [default: runs/METHOD-CONFIGHASH]")] = None,
        cache: CacheOption = None,
        strict: Annotated[bool, typer.Option(
            "--strict", help="Fail on any bad data row instead of skipping it.")] = False,
        overwrite: Annotated[bool, typer.Option(
            "--overwrite", help="Replace a run of another configuration in --out (else "
                                "refused).")] = False,
        dry_run: Annotated[bool, typer.Option(
            "--dry-run", help="Count model calls (and cost) without calling anything.")] = False,
        max_cost: Annotated[Optional[float], typer.Option(  # noqa: UP045
            help="Refuse to start if the estimated cost in USD is higher.")] = None,
    ) -> None:
        """Generate for held-out users, judge against the reference in both orders, score."""
        started = time.monotonic()
        if model == EMBEDDED:
            shots, limit, prefacc = (EMBEDDED_RUN_DEFAULTS[k] if v is None else v for k, v in
                                     (("shots", shots), ("limit", limit), ("prefacc", prefacc)))
        domains = domain or plugins.names("domain")
        for name in domains:
            plugins.get("domain", name)
        plugins.get("backend", backend)
        penalty = repetition_penalty if repetition_penalty is not None else (
            EMBEDDED_GENERATION_DEFAULTS["repetition_penalty"] if model == EMBEDDED else 1.0)
        generation = {"max_new_tokens": max_new_tokens, "temperature": temperature,
                      "repetition_penalty": penalty}
        judge_options = parse_options(judge_option or [])
        backend_options = parse_options(backend_option or [])
        names = _methods(method, model, checkpoint)
        specs = [RunSpec(method=name, domains=domains, model=model, backend=backend,
                         judge=judge, reference=reference, data=data, shots=shots,
                         limit=limit, seed=seed, checkpoint=checkpoint,
                         generation=generation, judge_options=judge_options,
                         backend_options=backend_options, prefacc=prefacc or 0,
                         specificity=specificity)
                 for name in names]
        for spec in specs:
            check_spec(spec)  # every option in range before any work
        with _cache(cache) as response_cache:
            for name, spec in zip(names, specs, strict=True):
                if out is None:
                    run_dir = Path("runs") / f"{name}-{spec.config_hash()}"
                else:
                    run_dir = out if len(names) == 1 else out / name
                runner = Runner(spec, run_dir, response_cache, strict=strict,
                                overwrite=overwrite)
                if dry_run or max_cost is not None:
                    estimate = plan(spec, response_cache, strict)
                    typer.echo(str(estimate))
                    if max_cost is not None and estimate.cost > max_cost:
                        raise FspoBenchError(
                            f"estimated cost ${estimate.cost:.2f} exceeds --max-cost "
                            f"${max_cost:.2f}; nothing was run")
                    if dry_run:
                        continue
                try:
                    result = runner.run()
                finally:
                    runner.progress.close()
                print_result(result, run_dir)
        typer.echo(f"done in {time.monotonic() - started:.1f} s", err=True)

    @app.command("judge")
    def judge_command(
        run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
        judge: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="Another judge [default: the run's].")] = None,
        judge_option: JudgeOptions = None,
        cache: CacheOption = None,
    ) -> None:
        """Re-judge a run's generations (never regenerates) and re-score it."""
        with _cache(cache) as response_cache:
            runner = load_runner(run_dir, response_cache)
            with claimed(run_dir):
                runner.judge(judge, parse_options(judge_option) if judge_option else None)
                print_result(runner.score(), run_dir)

    @app.command("score")
    def score_command(
        run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
        cache: CacheOption = None,
    ) -> None:
        """Recompute a run's statistics from its judgments (no model call)."""
        with _cache(cache) as response_cache:
            runner = load_runner(run_dir, response_cache)
            with claimed(run_dir):
                print_result(runner.score(), run_dir)

    @app.command("compare")
    def compare_command(
        run_a: Annotated[Path, typer.Argument(help="Run directory A.")],
        run_b: Annotated[Path, typer.Argument(help="Run directory B.")],
        seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    ) -> None:
        """A minus B per domain, paired on the same items with user-clustered bootstrap CIs:
        winrate over common judged queries; preference accuracy over common pairs, with an
        exact McNemar test."""
        a, b = _compare_items(run_a), _compare_items(run_b)
        lines = []
        for name in sorted(set(a) & set(b)):
            (scores_a, samples_a), (scores_b, samples_b) = a[name], b[name]
            diff = method_difference(scores_a, scores_b, samples_a, samples_b, seed=seed)
            lines.extend(f"{name:<10} {line}" for line in _compare_lines(diff))
        if not lines:
            raise FspoBenchError(f"{run_a} and {run_b} share no judged query and no labelled "
                                 "pair: nothing to compare")
        typer.echo("\n".join(lines))


def _compare_items(run_dir: Path) -> dict[str, tuple[dict[tuple[str, str], float], list[dict]]]:
    """Per domain of a run: its query scores (judgments.jsonl) and its preference-accuracy
    samples (preference_accuracy.json; none without one)."""
    outcomes: dict[str, list[Outcome]] = defaultdict(list)
    for j in read_judgments(run_dir):
        outcomes[j.meta["domain"]].append(outcome(j))
    report = read_json(run_dir / PREFACC) if (run_dir / PREFACC).exists() else {}
    return {name: (query_scores(outcomes.get(name, [])), report.get(name, {}).get("samples", []))
            for name in set(outcomes) | set(report)}


def _compare_lines(diff: dict) -> list[str]:
    lines = []
    if (w := diff["winrate"]) is not None:
        lines.append(f"winrate A - B = {w['difference']:+.1f} [{w['ci_low']:+.1f}, "
                     f"{w['ci_high']:+.1f}] over {w['n_queries']} queries of {w['n_users']} users")
    if (p := diff["prefacc"]) is not None:
        lines.append(f"prefacc A - B = {p['difference']:+.1f} [{p['ci_low']:+.1f}, "
                     f"{p['ci_high']:+.1f}] over {p['n_pairs']} pairs of {p['n_users']} users "
                     f"({p['kind']}); McNemar: A better on {p['n_a_better']}, B on "
                     f"{p['n_b_better']}, exact p = {p['p_value']:.3g}")
    return lines
