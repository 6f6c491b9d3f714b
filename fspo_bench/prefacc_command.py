"""``fspo-bench prefacc`` and ``fspo-bench lmeval-path`` (docs/prefacc.md).

The engine is :mod:`fspo_bench.prefacc`; this module turns options into calls and files.
torch, transformers and lm_eval are imported inside the commands only.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from fspo_bench.embedded import EMBEDDED

ENGINES = ("lm-eval", "backend")
JSON_NAME, SAMPLES_NAME = "prefacc.json", "prefacc_samples.jsonl"
CURVE_CSV, CURVE_PNG = "prefacc_curve.csv", "prefacc_curve.png"
#: What ``--attach`` adds to each domain's ``extra`` in a run's results.json (percent): the
#: few-shot prompt's summed-log-probability accuracies, under their own names so that they never
#: stand for a run's calibrated ``prefacc``.
ATTACH_KEYS = {"prefacc_fewshot_summed": "acc", "prefacc_fewshot_norm": "acc_norm"}


def _log(message: str) -> None:
    typer.echo(f"fspo-bench: {message}", err=True)


def output_paths(out: Path) -> dict[str, Path]:
    """Where the files go: a ``.json`` path names the JSON file (the other files sit next to
    it, named after it); anything else is a folder (a run directory, say)."""
    if out.suffix.lower() == ".json":
        stem = out.with_suffix("")
        return {"json": out, "samples": Path(f"{stem}.samples.jsonl"),
                "curve_csv": Path(f"{stem}.curve.csv"), "curve_png": Path(f"{stem}.curve.png")}
    return {"json": out / JSON_NAME, "samples": out / SAMPLES_NAME,
            "curve_csv": out / CURVE_CSV, "curve_png": out / CURVE_PNG}


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and (path / "results.json").is_file()


def _same_model(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a == b
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return a == b


def attach_to_run(run_dir: Path, results: list[dict[str, Any]], *, model: str,
                  checkpoint: str | None) -> list[str]:
    """Add ``prefacc_fewshot_summed``, ``prefacc_fewshot_norm`` (and ``prefacc_implicit``), in
    percent, to the ``extra`` of each
    domain of a run's results.json, which the leaderboard shows as columns. Refused when the
    run used another model or checkpoint. Returns the domains updated."""
    from fspo_bench.errors import FspoBenchError
    from fspo_bench.rundir import RESULTS, read_result, write_json

    result = read_result(run_dir)
    spec = result.spec
    if not _same_model(spec.model, model) or not _same_model(spec.checkpoint, checkpoint):
        raise FspoBenchError(
            f"--attach: {run_dir} was run with model {spec.model!r} and checkpoint "
            f"{spec.checkpoint!r}, not {model!r} and {checkpoint!r}; its leaderboard row would "
            f"carry another model's preference accuracy")
    by_domain = {r["domain"]: r for r in results}
    updated = []
    for domain_result in result.results:
        r = by_domain.get(domain_result.domain)
        if r is None:
            continue
        for key, source in ATTACH_KEYS.items():
            domain_result.extra[key] = _percent(r.get(source))
        implicit = r.get("implicit_reward")
        if implicit:
            domain_result.extra["prefacc_implicit"] = _percent(implicit.get("acc"))
        updated.append(domain_result.domain)
    write_json(run_dir / RESULTS, result.to_dict())
    return updated


def _percent(share: float | None) -> float | None:
    return None if share is None else 100 * share


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def print_table(report: dict[str, Any], out: Path) -> None:
    config = report["config"]
    engine = config["engine"] + (f" {config['lm_eval_version']}"
                                 if config.get("lm_eval_version") else "")
    model = config["model"] + (f" + {config['checkpoint']}" if config.get("checkpoint") else "")
    typer.echo(f"\npreference accuracy via {engine} (model {model}, data {config['data']}, "
               f"seed {config['seed']}): {out}")
    header = f"  {'domain':<10} {'shots':>5} {'docs':>5} {'users':>5}  {'acc':<21}  acc_norm"
    implicit = any(r.get("implicit_reward") for r in report["results"])
    typer.echo(header + ("  implicit reward" if implicit else ""))
    for r in report["results"]:
        line = (f"  {r['domain']:<10} {r['shots']!s:>5} {r['n_docs']:>5} {r['n_users']:>5}  "
                f"{_fmt(r['acc'])} [{_fmt(r['acc_ci_low'])}, {_fmt(r['acc_ci_high'])}]  "
                f"{_fmt(r['acc_norm'])}")
        ir = r.get("implicit_reward")
        if ir:
            line += (f"     {_fmt(ir['acc'])} [{_fmt(ir['acc_ci_low'])}, "
                     f"{_fmt(ir['acc_ci_high'])}]")
        typer.echo(line)
    if report.get("curve"):
        typer.echo(f"  curve (our backend): {report['files']['curve_csv']}, "
                   f"{report['files']['curve_png']}")


def _write_samples(path: Path, results: list[dict[str, Any]]) -> None:
    """Per-doc scores, one JSON object a line (written whole, then renamed into place)."""
    from fspo_bench.errors import FspoBenchError

    lines = []
    for r in results:
        for s in r.get("samples", []):
            lines.append(json.dumps({"metric": "prefacc", **s}, sort_keys=True))
        for s in (r.get("implicit_reward") or {}).get("samples", []):
            lines.append(json.dumps({"metric": "implicit_reward", "domain": r["domain"], **s},
                                    sort_keys=True))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise FspoBenchError(f"cannot write {path}: {exc.strerror or exc}") from None


def _strip_samples(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k != "samples"}
    if out.get("implicit_reward"):
        out["implicit_reward"] = {k: v for k, v in out["implicit_reward"].items()
                                  if k != "samples"}
    return out


def add_prefacc_commands(app: typer.Typer) -> None:
    """Add ``prefacc`` and ``lmeval-path`` to a ``typer.Typer`` app."""

    @app.command("lmeval-path")
    def lmeval_path_command(
        domain: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
            "--domain", help="Domain (repeatable) [default: elix, reviews, roleplay]")] = None,
        data: Annotated[str, typer.Option(help="builtin, hub, or a file path.")] = "builtin",
        shots: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Shots per doc [default: the domain's].")] = None,
        seed: Annotated[int, typer.Option(help="Seed for shots and doc order.")] = 0,
    ) -> None:
        """Print the include path of our lm-eval tasks, after writing their docs files.

        lm_eval --model hf --model_args pretrained=PATH,add_bos_token=False
        --include_path $(fspo-bench lmeval-path) --tasks fspo_elix_prefacc
        """
        from fspo_bench import prefacc
        from fspo_bench.errors import FspoBenchError

        folder = prefacc.lmeval_path()
        if not folder.is_dir() or not any(folder.glob("*.yaml")):
            raise FspoBenchError(f"the lm-eval task configs are missing from this installation "
                                 f"(looked in {folder}); reinstall fspo-bench")
        for name in domain or prefacc.DOMAINS:
            path, docs = prefacc.materialize_docs(name, data, shots, seed)
            _log(f"{prefacc.task_name(prefacc.domain_of(name))}: {len(docs)} docs in {path}")
        if shots is not None or seed != 0 or data != "builtin":
            meta = {"data": data, "seed": seed, **({"shots": shots} if shots is not None else {})}
            _log(f"pass the same options to lm_eval: --metadata '{json.dumps(meta)}'")
        typer.echo(str(folder))

    @app.command("prefacc")
    def prefacc_command(
        model: Annotated[str, typer.Option(help="Model: 'embedded', a folder or a hub id.")
                         ] = EMBEDDED,
        checkpoint: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="Trained checkpoint: a PEFT adapter or a full model folder.")] = None,
        domain: Annotated[Optional[list[str]], typer.Option(  # noqa: UP045
            "--domain", help="Domain or task name (repeatable) [default: all three]")] = None,
        shots: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Shots per doc (the curve's largest) [default: the domain's].")] = None,
        limit: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="Docs per domain: the first N of the seeded order.")] = None,
        seed: Annotated[int, typer.Option(help="Seed for shots, doc order and bootstrap.")] = 0,
        data: Annotated[str, typer.Option(help="builtin, hub, or a file path.")] = "builtin",
        out: Annotated[Optional[Path], typer.Option(  # noqa: UP045
            help="A .json file, or a folder (e.g. a run directory) for prefacc.json "
                 "[default: runs/prefacc-CONFIGHASH]")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report.")] = False,
        engine: Annotated[str, typer.Option(
            help="lm-eval (its Python API and HF model class) or backend (our hf backend).")
                          ] = "lm-eval",
        implicit_reward: Annotated[bool, typer.Option(
            "--implicit-reward", help="Also the implicit-reward accuracy of --checkpoint "
                                      "against the reference (our backend).")] = False,
        reference: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="Reference checkpoint for the implicit reward [default: the base model].")
                             ] = None,
        beta: Annotated[float, typer.Option(help="Implicit reward scale.")] = 0.01,
        curve: Annotated[bool, typer.Option(
            "--curve", help="Shot-robustness curves 0..N shots (our backend): CSV and PNG next "
                            "to --out.")] = False,
        attach: Annotated[bool, typer.Option(
            "--attach", help="--out is a run directory: add prefacc to its results.json extra "
                             "(leaderboard columns).")] = False,
        batch_size: Annotated[int, typer.Option(help="Batch size.")] = 8,
        device: Annotated[Optional[str], typer.Option(  # noqa: UP045
            help="cpu, cuda, ... [default: cuda if available]")] = None,
        dtype: Annotated[str, typer.Option(
            help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16.")] = "auto",
        max_length: Annotated[Optional[int], typer.Option(  # noqa: UP045
            help="lm-eval's context window [default: the model config's]; longer requests "
                 "are left-truncated by lm-eval.")] = None,
        cache: Annotated[Optional[Path], typer.Option(  # noqa: UP045
            "--cache", help="SQLite cache for our backend's log-likelihoods [default: "
                            "$FSPO_BENCH_CACHE or ~/.cache/fspo-bench]")] = None,
    ) -> None:
        """Preference accuracy: does the model, given a user's shots, put more likelihood on
        that user's chosen response than on the rejected one? Through lm-eval by default."""
        from fspo_bench import __version__, prefacc
        from fspo_bench.cache import ResponseCache, default_cache_path
        from fspo_bench.errors import FspoBenchError, UnknownNameError
        from fspo_bench.hashing import stable_hash
        from fspo_bench.progress import StageProgress
        from fspo_bench.rundir import write_json

        started = time.monotonic()
        if engine not in ENGINES:
            raise UnknownNameError("engine", engine, list(ENGINES))
        domains = list(dict.fromkeys(prefacc.domain_of(d) for d in (domain or prefacc.DOMAINS)))
        if implicit_reward and not checkpoint:
            raise FspoBenchError("--implicit-reward needs --checkpoint (the trained policy)")
        if attach and (out is None or not is_run_dir(out)):
            raise FspoBenchError("--attach needs --out RUN_DIR (a run directory with "
                                 "config.json and results.json)")
        if limit is not None and limit < 1:
            raise FspoBenchError(f"--limit must be >= 1, not {limit}")
        if shots is not None and shots < 0:
            raise FspoBenchError(f"--shots must be >= 0, not {shots}")
        lm_eval_version = prefacc.check_lm_eval() if engine == "lm-eval" else None
        config = {"model": model, "checkpoint": checkpoint, "domains": domains, "data": data,
                  "shots": shots, "limit": limit, "seed": seed, "engine": engine,
                  "lm_eval_version": lm_eval_version, "dtype": dtype, "max_length": max_length,
                  "implicit_reward": implicit_reward, "reference": reference, "beta": beta,
                  "curve": curve}
        config_hash = stable_hash(config)[:12]
        out = out if out is not None else Path("runs") / f"prefacc-{config_hash}"
        paths = output_paths(out)

        # Load every domain first: bad data fails before any model is loaded.
        datas = {d: prefacc.load_domain(d, data, shots) for d in domains}
        progress = StageProgress()
        count = prefacc.LoglikCount()
        results: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        try:
            if engine == "lm-eval":
                lm_model, tokenizer = prefacc.load_hf_model(model, checkpoint, device=device,
                                                            dtype=dtype)
                results = prefacc.lmeval_preference_accuracy(
                    lm_model, tokenizer=tokenizer, domains=domains, shots=shots, seed=seed,
                    limit=limit, data=data, batch_size=batch_size, max_length=max_length)
                del lm_model, tokenizer
                gc.collect()
            needs_backend = engine == "backend" or implicit_reward or curve
            if needs_backend:
                from fspo_bench.backends.hf import HFBackend

                options: dict[str, Any] = {"dtype": dtype, "batch_size": batch_size}
                if device:
                    options["device"] = device
                backend = HFBackend(model, **options)
                with ResponseCache(cache or default_cache_path()) as response_cache:
                    for d in domains:
                        kwargs = {"cache": response_cache, "count": count,
                                  "progress": progress}
                        if engine == "backend":
                            results.append(prefacc.preference_accuracy(
                                backend, datas[d], shots, seed, limit, checkpoint, **kwargs))
                        if implicit_reward:
                            ir = prefacc.implicit_reward_accuracy(
                                backend, datas[d], shots, seed, limit, adapter=checkpoint,
                                reference=reference, beta=beta, **kwargs)
                            next(r for r in results if r["domain"] == d)["implicit_reward"] = ir
                        if curve:
                            rows += prefacc.shot_curve(backend, datas[d], max_shots=shots,
                                                       seed=seed, limit=limit,
                                                       adapter=checkpoint, **kwargs)
                _log(str(count))
        finally:
            progress.close()
        files = {"json": str(paths["json"]), "samples": str(paths["samples"])}
        if curve:
            prefacc.write_curve(rows, paths["curve_csv"], paths["curve_png"])
            files.update(curve_csv=str(paths["curve_csv"]), curve_png=str(paths["curve_png"]))
        report = {
            "kind": "fspo-bench prefacc",
            "package_version": __version__,
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": config,
            "config_hash": config_hash,
            "results": [_strip_samples(r) for r in results],
            "curve": rows,
            "files": files,
        }
        _write_samples(paths["samples"], results)
        write_json(paths["json"], report)
        if attach:
            updated = attach_to_run(out, results, model=model, checkpoint=checkpoint)
            _log(f"attached prefacc to {out / 'results.json'} ({', '.join(updated) or 'no'} "
                 f"domain of the run)")
        if as_json:
            typer.echo(json.dumps(report, indent=2, sort_keys=True))
        else:
            print_table(report, paths["json"])
        typer.echo(f"done in {time.monotonic() - started:.1f} s", err=True)
        sys.stdout.flush()
