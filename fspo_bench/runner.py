"""The evaluation runner: queries -> generations -> judgments -> statistics (docs/runs.md).

Each stage reads what the previous one wrote, so ``judge`` and ``score`` can be re-run alone on a
run directory. Every model call goes through the response cache, one committed item at a time:
a killed run resumes where it stopped, and a finished run re-run makes no model call.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

from fspo_bench import __version__, plugins
from fspo_bench.backend import Backend, GenerationParams, GenerationRequest
from fspo_bench.cache import ResponseCache
from fspo_bench.dataset import DomainData
from fspo_bench.embedded import EMBEDDED
from fspo_bench.errors import FspoBenchError
from fspo_bench.judge import Comparison, Judge
from fspo_bench.method import Method, checkpoint_for
from fspo_bench.method_prefacc import method_preference_accuracy
from fspo_bench.prefacc import LoglikCount
from fspo_bench.progress import StageProgress
from fspo_bench.records import DomainResult, Generation, Judgment, Query, RunResult, RunSpec
from fspo_bench.rundir import (
    CONFIG,
    GENERATIONS,
    JUDGMENTS,
    PREFACC,
    RESULTS,
    read_generations,
    read_json,
    read_judgments,
    write_json,
    write_records,
)
from fspo_bench.stats import METHOD_FIRST, domain_result

REFERENCE_FIRST = "reference_first"


@dataclass
class StageCount:
    """How many items of a stage came from the cache and how many were computed now."""

    stage: str
    cached: int = 0
    new: int = 0

    def __str__(self) -> str:
        return f"{self.stage}: cached {self.cached} / new {self.new}"


Progress = Callable[..., None]  # (stage, done, total, status="")


def make_backend(spec: RunSpec) -> Backend:
    return plugins.get("backend", spec.backend)(spec.model, **spec.backend_options)


def make_method(spec: RunSpec, name: str, domain: str) -> Method:
    """Method ``name`` as it runs on ``domain``: the run's method gets the run's checkpoint, or,
    on the embedded model, the checkpoints its plugin ships; a folder of per-domain
    checkpoints serves the domain's own (:func:`fspo_bench.method.checkpoint_for`)."""
    cls = plugins.get("method", name)
    checkpoint = spec.checkpoint if name == spec.method else None
    if (checkpoint is None and cls.needs_checkpoint and cls.shipped_checkpoints is not None
            and spec.model == EMBEDDED):
        checkpoint = str(cls.shipped_checkpoints)
    return cls(checkpoint=checkpoint_for(checkpoint, domain))


def resolve_judge_name(name: str) -> tuple[str, str | None]:
    """(judge plugin, judge model). A registered judge name stands for itself; a string that
    names a model (``provider/model``, ``hf:FOLDER``, a folder, ``embedded``) is a judge model
    for the ``pairwise`` judge; anything else is the one-line unknown-judge error."""
    if name in plugins.names("judge"):
        return name, None
    if "/" in name or ":" in name or name == "embedded" or Path(name).exists():
        return "pairwise", name
    plugins.get("judge", name)  # raises the one-line error listing the valid judges
    raise AssertionError("unreachable")


def make_judge(name: str, options: dict[str, Any]) -> Judge:
    """The judge ``name`` stands for (see :func:`resolve_judge_name`), built with ``options``."""
    plugin, model = resolve_judge_name(name)
    return plugins.get("judge", plugin)(**options, **({"model": model} if model else {}))


def params_of(spec: RunSpec) -> GenerationParams:
    return GenerationParams(**{**spec.generation, "seed": spec.seed})


def generation_key(backend: Backend, request: GenerationRequest) -> dict[str, Any]:
    key = {"kind": "generate", **backend.identity(), "request": request.to_dict()}
    if request.adapter:
        key["adapter_revision"] = backend.adapter_revision(request.adapter)
    return key


def judgment_key(judge: Judge, comparison: Comparison) -> dict[str, Any]:
    return {"kind": "judge", "judge": judge.identity(), "comparison": comparison.to_dict()}


def cached_map(cache: ResponseCache, keys: Sequence[dict[str, Any]], items: Sequence[Any],
               compute: Callable[[list[Any]], list[Any]], batch_size: int, count: StageCount,
               progress: Progress, label: str, status: Callable[[list[Any]], str]) -> list[Any]:
    """Values for the items, from the cache or ``compute`` (called a batch at a time); each
    value is committed to the cache as soon as its batch returns."""
    found = cache.get_many(keys)
    todo = [i for i, value in enumerate(found) if value is None]
    count.cached += len(items) - len(todo)
    count.new += len(todo)
    done = len(items) - len(todo)
    progress(label, done, len(items))
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        for i, value in zip(batch, compute([items[i] for i in batch]), strict=True):
            found[i] = value
            cache.put(keys[i], value)
        done += len(batch)
        progress(label, done, len(items), status(found))
    return found


def cached_generate(backend: Backend, requests: Sequence[GenerationRequest], cache: ResponseCache,
                    count: StageCount, progress: Progress, label: str | None = None) -> list[str]:
    """Texts for the requests, from the cache or the backend."""
    found = cached_map(cache, [generation_key(backend, r) for r in requests], requests,
                       lambda batch: [{"text": t} for t in backend.generate(batch)],
                       backend.batch_size, count, progress, label or count.stage,
                       lambda _: backend.status())
    return [value["text"] for value in found]


def generate(method: Method, role: str, domain: str, queries: Sequence[Query],
             backend: Backend, params: GenerationParams, cache: ResponseCache,
             count: StageCount, progress: Progress) -> list[Generation]:
    requests = [method.build_request(q, params) for q in queries]
    raws = cached_generate(backend, requests, cache, count, progress, f"{count.stage} [{domain}]")
    generations = []
    for query, raw in zip(queries, raws, strict=True):
        parsed = method.parse(raw)
        meta = {"domain": domain, "role": role, "question_id": query.question_id}
        if parsed.description is not None:
            meta["description"] = parsed.description
        generations.append(Generation(method.name, query, parsed.response, raw, meta))
    return generations


def comparisons_for(method_gen: Generation, reference_gen: Generation
                    ) -> list[tuple[str, Comparison]]:
    """Both orders of one query's comparison, each tagged with its order."""
    query, meta = method_gen.query, {"domain": method_gen.meta["domain"]}
    m, r = method_gen.text, reference_gen.text
    return [(METHOD_FIRST, Comparison(query.user, query.question, m, r, meta)),
            (REFERENCE_FIRST, Comparison(query.user, query.question, r, m, meta))]


def cached_judge(judge: Judge, comparisons: Sequence[Comparison], cache: ResponseCache,
                 count: StageCount, progress: Progress) -> list[Judgment]:
    """Judgments of the comparisons, from the cache or the judge."""

    def status(found: list[Any]) -> str:
        invalid = sum(1 for value in found if value is not None and not value["valid"])
        return ", ".join(filter(None, [f"invalid {invalid}", judge.status()]))

    found = cached_map(cache, [judgment_key(judge, c) for c in comparisons], comparisons,
                       lambda batch: [j.to_dict() for j in judge.judge(batch)],
                       judge.batch_size, count, progress, count.stage, status)
    return [Judgment.from_dict(value) for value in found]


def pair_generations(generations: Sequence[Generation]) -> list[tuple[Generation, Generation]]:
    """(method, reference) generation pairs of the same domain, user and question."""
    references = {(g.meta["domain"], g.query.user.id, g.meta["question_id"]): g
                  for g in generations if g.meta["role"] == "reference"}
    pairs = []
    for g in generations:
        if g.meta["role"] == "method":
            key = (g.meta["domain"], g.query.user.id, g.meta["question_id"])
            if key not in references:
                raise FspoBenchError(f"no reference generation for {key}")
            pairs.append((g, references[key]))
    return pairs


def judge_identity_id(judge: Judge) -> str:
    identity = judge.identity()
    return " ".join(f"{k}={v}" for k, v in identity.items() if v is not None)


class Runner:
    """One run of one method (against its reference) over one or more domains."""

    def __init__(self, spec: RunSpec, out: Path, cache: ResponseCache,
                 progress: Progress | None = None, log: Callable[[str], None] | None = None,
                 strict: bool = False):
        self.spec, self.out, self.cache, self.strict = spec, Path(out), cache, strict
        self.progress = progress or StageProgress()
        self.log = log or (lambda message: print(f"fspo-bench: {message}", file=sys.stderr))

    def run(self) -> RunResult:
        """All stages: generate, judge, preference accuracy, score."""
        self.generate()
        self.judge()
        self.preference_accuracy()
        return self.score()

    @cached_property
    def backend(self) -> Backend:
        """The run's backend, made once for generation and preference accuracy."""
        return make_backend(self.spec)

    def generate(self) -> list[Generation]:
        spec = self.spec
        backend = self.backend
        backend.check()
        params = params_of(spec)
        queries = build_queries(spec, strict=self.strict, log=self.log)
        methods = {(role, domain): make_method(spec, name, domain)
                   for role, name in (("method", spec.method), ("reference", spec.reference))
                   for domain in queries}
        revisions = {domain: backend.adapter_revision(m.checkpoint)
                     for (role, domain), m in methods.items() if role == "method" and m.checkpoint}
        self._write_config(backend=backend.identity(), checkpoint_revisions=revisions)
        generations = []
        for role, name in (("method", spec.method), ("reference", spec.reference)):
            count = StageCount(f"generate {role} ({name})")
            for domain, qs in queries.items():
                generations += generate(methods[role, domain], role, domain, qs, backend, params,
                                        self.cache, count, self.progress)
            self.log(str(count))
        write_records(self.out / GENERATIONS, generations)
        return generations

    def preference_accuracy(self) -> dict[str, Any]:
        """The method's preference accuracy on ``spec.prefacc`` held-out pairs per domain
        (:mod:`fspo_bench.method_prefacc`), written to preference_accuracy.json; nothing when
        ``spec.prefacc`` is 0."""
        spec = self.spec
        if not spec.prefacc:
            return {}
        count = LoglikCount()
        report = {}
        for name, data in load_domains(spec, strict=self.strict).items():
            result = method_preference_accuracy(
                make_method(spec, spec.method, name), self.backend, data, shots=spec.shots,
                seed=spec.seed, limit=spec.prefacc, params=params_of(spec), cache=self.cache,
                count=count, progress=self.progress)
            report[name] = result
        self.log(f"preference accuracy: {count}")
        write_json(self.out / PREFACC, report)
        return report

    def judge(self, judge_name: str | None = None,
              judge_options: dict[str, Any] | None = None) -> list[Judgment]:
        """Judge the run's generations in both orders (optionally with another judge)."""
        if judge_name is not None:
            self.spec = replace(self.spec, judge=judge_name, judge_options=judge_options or {})
        name = self.spec.judge
        judge = make_judge(name, self.spec.judge_options)
        judge.check()
        pairs = pair_generations(read_generations(self.out))
        tagged = [t for m, r in pairs for t in comparisons_for(m, r)]
        count = StageCount(f"judge ({name})")
        judgments = cached_judge(judge, [c for _, c in tagged], self.cache, count, self.progress)
        self.log(str(count))
        judge_id = judge_identity_id(judge)
        out = []
        for (order, _), (m, r), judgment in zip(tagged, [p for p in pairs for _ in (0, 1)],
                                                judgments, strict=True):
            meta = {**judgment.meta, "domain": m.meta["domain"],
                    "question_id": m.meta["question_id"], "method": m.method,
                    "reference": r.method, "order": order, "judge_id": judge_id}
            out.append(Judgment(judgment.judge, judgment.user, judgment.question, judgment.a,
                                judgment.b, judgment.winner, judgment.raw, judgment.valid, meta))
        write_records(self.out / JUDGMENTS, out)
        self._write_config(judge=judge.identity())
        return out

    def score(self) -> RunResult:
        """Statistics from the run's files alone."""
        generations = read_generations(self.out)
        judgments = read_judgments(self.out)
        results = [domain_result(domain,
                                 [j for j in judgments if j.meta["domain"] == domain],
                                 [g for g in generations if g.meta["domain"] == domain],
                                 seed=self.spec.seed)
                   for domain in self.spec.domains]
        results = _with_preference_accuracy(self.out / PREFACC, results)
        results = _keep_attached_columns(self.out / RESULTS, results)
        config = read_json(self.out / CONFIG)
        result = RunResult(self.spec, results, self.spec.config_hash(), __version__,
                           config["created"], {"versions": config.get("versions", {})})
        write_json(self.out / RESULTS, result.to_dict())
        return result

    def _write_config(self, **identities: Any) -> None:
        """config.json: the spec, provenance and the identities of backend and judge. The
        creation time of a run with the same configuration is kept, so re-runs write the same
        files."""
        path = self.out / CONFIG
        config = read_json(path) if path.exists() else {}
        if config.get("config_hash") != self.spec.config_hash():
            config["created"] = _now()
        config.update(spec=self.spec.to_dict(), config_hash=self.spec.config_hash(),
                      package_version=__version__, versions=package_versions(), **identities)
        write_json(path, config)


def load_domains(spec: RunSpec, *, strict: bool = False,
                 log: Callable[[str], None] | None = None) -> dict[str, DomainData]:
    """Domain name -> its data as the run loads it. Bad rows are skipped and counted in one
    ``log`` line per domain; ``strict`` makes them fatal."""
    loaded = {}
    for name in spec.domains:
        data = plugins.get("domain", name)().load(spec.data, strict=strict, shots=spec.shots)
        if data.problems and log:
            log(f"{name}: skipped {len(data.problems)} bad row(s) or user(s); first: "
                f"{data.problems[0]} (--strict to fail)")
        loaded[name] = data
    return loaded


def build_queries(spec: RunSpec, *, strict: bool = False,
                  log: Callable[[str], None] | None = None) -> dict[str, list[Query]]:
    """Domain name -> the held-out queries of the run (seeded shots, seeded ``limit`` sample)."""
    return {name: data.queries(shots=spec.shots, seed=spec.seed, limit=spec.limit)
            for name, data in load_domains(spec, strict=strict, log=log).items()}


@dataclass
class Plan:
    """What a run would cost: model calls already cached, calls to make, estimated USD."""

    method: str
    queries: int
    generations: StageCount
    judgments: StageCount
    cost: float

    def __str__(self) -> str:
        return (f"{self.method}: {self.queries} queries; {self.generations}; {self.judgments}; "
                f"estimated cost ${self.cost:.2f}")


def plan(spec: RunSpec, cache: ResponseCache, strict: bool = False) -> Plan:
    """Count the model calls a run needs without making any (``--dry-run``).

    Judgments can only be looked up once both generations of a query are known; until then
    every comparison counts as new (an upper bound).
    """
    backend, judge = make_backend(spec), make_judge(spec.judge, spec.judge_options)
    params = params_of(spec)
    tagged = [(d, q) for d, qs in build_queries(spec, strict=strict).items() for q in qs]
    queries = [q for _, q in tagged]
    methods = {(name, d): make_method(spec, name, d)
               for name in (spec.method, spec.reference) for d in spec.domains}
    method, reference = (methods[name, spec.domains[0]] for name in (spec.method, spec.reference))
    requests = [methods[name, d].build_request(q, params)
                for name in (spec.method, spec.reference) for d, q in tagged]
    found = cache.get_many([generation_key(backend, r) for r in requests])
    missing = [r for r, value in zip(requests, found, strict=True) if value is None]
    generations = StageCount("generate", len(requests) - len(missing), len(missing))
    judgments = StageCount("judge", 0, 2 * len(queries))
    if not missing:
        texts = [method.parse(v["text"]).response for v in found[:len(queries)]]
        ref_texts = [reference.parse(v["text"]).response for v in found[len(queries):]]
        comparisons = [Comparison(q.user, q.question, a, b, {"domain": d})
                       for (d, q), m, r in zip(tagged, texts, ref_texts, strict=True)
                       for a, b in ((m, r), (r, m))]
        hits = sum(v is not None for v in cache.get_many(
            [judgment_key(judge, c) for c in comparisons]))
        judgments = StageCount("judge", hits, len(comparisons) - hits)
    cost = backend.estimate_cost(missing) + judge.estimate_cost(judgments.new)
    return Plan(spec.method, len(queries), generations, judgments, cost)


def _with_preference_accuracy(path: Path, results: list[DomainResult]) -> list[DomainResult]:
    """Results with ``prefacc`` (0-1), its 95% interval, ``prefacc_n`` (pairs) and
    ``prefacc_norm`` (the same with log-probabilities per character) in ``extra``, from the
    run's preference_accuracy.json when the run has one."""
    if not path.exists():
        return results
    report = read_json(path)
    out = []
    for r in results:
        p = report.get(r.domain)
        if p is not None:
            r = replace(r, extra={**r.extra, "prefacc": p["acc"], "prefacc_ci_low": p["acc_ci_low"],
                                  "prefacc_ci_high": p["acc_ci_high"], "prefacc_n": p["n_docs"],
                                  "prefacc_norm": p["acc_norm"]})
        out.append(r)
    return out


def _keep_attached_columns(path: Path, results: list[DomainResult]) -> list[DomainResult]:
    """Re-scoring keeps the per-domain numbers other commands attached to results.json (for
    example ``prefacc --attach``): extra keys that the statistics do not compute."""
    if not path.exists():
        return results
    old = {r.domain: r.extra for r in RunResult.from_dict(read_json(path)).results}
    return [replace(r, extra={**{k: v for k, v in old.get(r.domain, {}).items()
                                 if k not in r.extra}, **r.extra}) for r in results]


def package_versions() -> dict[str, str]:
    """Versions of Python and of the installed packages that can change a run's outputs."""
    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "litellm", "vllm", "lm-eval"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_runner(run_dir: Path, cache: ResponseCache, **kwargs: Any) -> Runner:
    """A runner for an existing run directory (re-judge or re-score)."""
    spec = RunSpec.from_dict(read_json(Path(run_dir) / CONFIG)["spec"])
    return Runner(spec, Path(run_dir), cache, **kwargs)
