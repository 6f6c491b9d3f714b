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
from fspo_bench.answer_health import answer_status, failed_verdict, health_columns
from fspo_bench.backend import Backend, GenerationParams, GenerationRequest
from fspo_bench.cache import ResponseCache
from fspo_bench.calls import drive
from fspo_bench.canaries import GATED_KINDS, build_canaries, canary_report
from fspo_bench.dataset import DomainData
from fspo_bench.embedded import EMBEDDED
from fspo_bench.errors import FspoBenchError
from fspo_bench.judge import Comparison, Judge
from fspo_bench.method import Method, checkpoint_for
from fspo_bench.method_prefacc import Scorer, method_preference_accuracy
from fspo_bench.prefacc import LoglikCount
from fspo_bench.progress import StageProgress
from fspo_bench.records import (
    FAILED_STATUSES,
    DomainResult,
    Generation,
    Judgment,
    Query,
    RunResult,
    RunSpec,
)
from fspo_bench.rundir import (
    CANARIES,
    CONFIG,
    GENERATIONS,
    JUDGMENTS,
    PREFACC,
    RECORDED,
    RESULTS,
    check_files,
    claimed,
    file_digest,
    read_generations,
    read_json,
    read_judgments,
    write_json,
    write_records,
)
from fspo_bench.spec_checks import check_spec
from fspo_bench.stats import METHOD_FIRST, domain_result

REFERENCE_FIRST = "reference_first"
#: Held-out pairs per domain whose degenerate variants test a run's judge.
CANARY_PAIRS = 4


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
               progress: Progress, label: str, status: Callable[[list[Any]], str],
               check: Callable[[], None] | None = None) -> list[Any]:
    """Values for the items, from the cache or ``compute`` (called a batch at a time); each
    value is committed to the cache as soon as its batch returns. ``check`` runs before the
    first computation, never when every item is cached (a finished run needs no server)."""
    found = cache.get_many(keys)
    todo = [i for i, value in enumerate(found) if value is None]
    if todo and check is not None:
        check()
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
                    count: StageCount, progress: Progress, label: str | None = None,
                    check: Callable[[], None] | None = None) -> list[str]:
    """Texts for the requests, from the cache or the backend (``check`` as in cached_map)."""
    found = cached_map(cache, [generation_key(backend, r) for r in requests], requests,
                       lambda batch: [{"text": t} for t in backend.generate(batch)],
                       backend.batch_size, count, progress, label or count.stage,
                       lambda _: backend.status(), check)
    return [value["text"] for value in found]


def generate(method: Method, role: str, domain: str, queries: Sequence[Query],
             backend: Backend, params: GenerationParams, cache: ResponseCache,
             count: StageCount, progress: Progress,
             check: Callable[[], None] | None = None) -> list[Generation]:
    """The method's answers to the queries, each call through the cache, with their health
    (:mod:`fspo_bench.answer_health`). A method sees the user's profile only when it declares
    ``sees_user_profile``; the generations keep the whole query for the judges."""
    last: dict[int, tuple[GenerationRequest, str]] = {}
    raws = drive([method.calls(method.visible(q), params) for q in queries],
                 lambda requests: cached_generate(backend, requests, cache, count, progress,
                                                  f"{count.stage} [{domain}]", check),
                 on_text=lambda i, request, text: last.__setitem__(i, (request, text)))
    generations = []
    for i, (query, raw) in enumerate(zip(queries, raws, strict=True)):
        parsed = method.parse(raw)
        meta = {"domain": domain, "role": role, "question_id": query.question_id}
        if parsed.description is not None:
            meta["description"] = parsed.description
        status = answer_status(parsed, truncated=i in last and _hit_limit(backend, *last[i]))
        generations.append(Generation(method.name, query, parsed.response, raw, meta, status))
    return generations


def _hit_limit(backend: Backend, request: GenerationRequest, text: str) -> bool:
    """Whether the text of a call filled its ``max_new_tokens`` (False when unknown)."""
    tokens = backend.token_count(text) if text else 0
    return tokens is not None and tokens >= request.params.max_new_tokens


def comparisons_for(method_gen: Generation, reference_gen: Generation
                    ) -> list[tuple[str, Comparison]]:
    """Both orders of one query's comparison, each tagged with its order."""
    query, meta = method_gen.query, {"domain": method_gen.meta["domain"]}
    m, r = method_gen.text, reference_gen.text
    return [(METHOD_FIRST, Comparison(query.user, query.question, m, r, meta)),
            (REFERENCE_FIRST, Comparison(query.user, query.question, r, m, meta))]


def cached_judge(judge: Judge, comparisons: Sequence[Comparison], cache: ResponseCache,
                 count: StageCount, progress: Progress,
                 check: Callable[[], None] | None = None) -> list[Judgment]:
    """Judgments of the comparisons, from the cache or the judge (``check`` as in
    cached_map)."""

    def status(found: list[Any]) -> str:
        invalid = sum(1 for value in found if value is not None and not value["valid"])
        return ", ".join(filter(None, [f"invalid {invalid}", judge.status()]))

    found = cached_map(cache, [judgment_key(judge, c) for c in comparisons], comparisons,
                       lambda batch: [j.to_dict() for j in judge.judge(batch)],
                       judge.batch_size, count, progress, count.stage, status, check)
    return [Judgment.from_dict(value) for value in found]


def once(check: Callable[[], None]) -> Callable[[], None]:
    """``check`` made to run at most once (a component's preflight before its first call)."""
    done: list[bool] = []

    def run() -> None:
        if not done:
            check()
            done.append(True)

    return run


def _failed_note(n: int) -> str:
    return f"; {n} comparison(s) of failed answers scored without the judge" if n else ""


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
                 strict: bool = False, overwrite: bool = False):
        """``overwrite`` lets a run replace a run of another configuration in ``out`` (else
        refused before any file is written)."""
        self.spec, self.out, self.cache, self.strict = spec, Path(out), cache, strict
        self.overwrite = overwrite
        self.progress = progress or StageProgress()
        self.log = log or (lambda message: print(f"fspo-bench: {message}", file=sys.stderr))

    def run(self) -> RunResult:
        """All stages: generate, judge, preference accuracy, score, holding the run
        directory's lock."""
        check_spec(self.spec)
        with claimed(self.out):
            self.generate()
            self.judge()
            self.preference_accuracy()
            return self.score()

    @cached_property
    def data(self) -> dict[str, DomainData]:
        """The domains' data, loaded once for queries, canaries and preference accuracy (bad
        rows logged once)."""
        return load_domains(self.spec, strict=self.strict, log=self.log)

    @cached_property
    def backend(self) -> Backend:
        """The run's backend, made once for generation and preference accuracy."""
        return make_backend(self.spec)

    def generate(self) -> list[Generation]:
        spec = self.spec
        backend = self.backend
        params = params_of(spec)
        check = once(lambda: backend.check(params))  # only before a call the cache cannot answer
        queries = build_queries(spec, self.data)
        methods = {(role, domain): make_method(spec, name, domain)
                   for role, name in (("method", spec.method), ("reference", spec.reference))
                   for domain in queries}
        revisions = {domain: backend.adapter_revision(m.checkpoint)
                     for (role, domain), m in methods.items() if role == "method" and m.checkpoint}
        self._replace_other_run()
        self._write_config(backend=backend.identity(), checkpoint_revisions=revisions)
        generations = []
        for role, name in (("method", spec.method), ("reference", spec.reference)):
            count = StageCount(f"generate {role} ({name})")
            for domain, qs in queries.items():
                generations += generate(methods[role, domain], role, domain, qs, backend, params,
                                        self.cache, count, self.progress, check)
            self.log(str(count))
        self._write_recorded(GENERATIONS, lambda path: write_records(path, generations))
        return generations

    def preference_accuracy(self) -> dict[str, Any]:
        """The method's preference accuracy on ``spec.prefacc`` held-out pairs per domain
        (:mod:`fspo_bench.method_prefacc`: calibrated against the reference method, with
        specificity when ``spec.specificity``), written to preference_accuracy.json; nothing
        when ``spec.prefacc`` is 0."""
        spec = self.spec
        if not spec.prefacc:
            return {}
        count, calls = LoglikCount(), StageCount("prefacc calls")
        report = {}
        for name, data in self.data.items():
            scorer = Scorer(self.backend, lambda requests: cached_generate(
                self.backend, requests, self.cache, calls, self.progress), params_of(spec),
                cache=self.cache, count=count, progress=self.progress)
            report[name] = method_preference_accuracy(
                make_method(spec, spec.method, name), make_method(spec, spec.reference, name),
                data, scorer=scorer, shots=spec.shots, seed=spec.seed, limit=spec.prefacc,
                specificity=spec.specificity)
        self.log(f"preference accuracy: {count}" + (f"; {calls}" if calls.cached + calls.new
                                                      else ""))
        self._write_recorded(PREFACC, lambda path: write_json(path, report))
        return report

    def judge(self, judge_name: str | None = None,
              judge_options: dict[str, Any] | None = None) -> list[Judgment]:
        """Judge the run's generations in both orders (optionally with another judge)."""
        if judge_name is not None:
            self.spec = replace(self.spec, judge=judge_name, judge_options=judge_options or {})
        name = self.spec.judge
        judge = make_judge(name, self.spec.judge_options)
        check = once(judge.check)  # only before a verdict the cache cannot give
        check_files(self.out, read_json(self.out / CONFIG))
        pairs = pair_generations(read_generations(self.out))
        tagged = [(order, c, (m, r)) for m, r in pairs for order, c in comparisons_for(m, r)]
        shown = [(c, m, r) if order == METHOD_FIRST else (c, r, m) for order, c, (m, r) in tagged]
        to_judge = [c for c, a, b in shown if not (a.failed or b.failed)]
        count = StageCount(f"judge ({name})")
        judged = iter(cached_judge(judge, to_judge, self.cache, count, self.progress, check))
        self.log(str(count) + _failed_note(len(shown) - len(to_judge)))
        judge_id = judge_identity_id(judge)
        out = []
        for (order, _, (m, r)), (c, a, b) in zip(tagged, shown, strict=True):
            judgment = (failed_verdict(c, name, a, b) if a.failed or b.failed
                        else next(judged))
            meta = {**judgment.meta, "domain": m.meta["domain"],
                    "question_id": m.meta["question_id"], "method": m.method,
                    "reference": r.method, "order": order, "judge_id": judge_id}
            out.append(replace(judgment, meta=meta))
        self._write_recorded(JUDGMENTS, lambda path: write_records(path, out))
        self._judge_canaries(judge, check)
        self._write_config(judge=judge.identity())
        return out

    def _judge_canaries(self, judge: Judge, check: Callable[[], None]) -> None:
        """The judge's verdicts on degenerate-answer canaries of each domain
        (:mod:`fspo_bench.canaries`), through the cache, into judge_canaries.json; one
        warning line per domain where it fails any gated canary."""
        count = StageCount(f"judge canaries ({self.spec.judge})")
        report = {}
        for name, data in self.data.items():
            canaries = build_canaries(data, n=CANARY_PAIRS, seed=self.spec.seed)
            verdicts = cached_judge(judge, [c.comparison for c in canaries], self.cache, count,
                                    self.progress, check)
            report[name] = canary_report(canaries, verdicts)
        self.log(str(count))
        for name, result in report.items():
            gated = [result["by_kind"][k] for k in GATED_KINDS if k in result["by_kind"]]
            if gated and all(k["invalid"] == k["n"] for k in gated):
                result["pass_rate"] = None  # a judge of labels only, as the oracle: not tested
                self.log(f"judge {self.spec.judge} gives no valid verdict on the canaries of "
                         f"{name}: it cannot judge generated text")
            elif result["pass_rate"] is not None and result["pass_rate"] < 100:
                self.log(f"warning: judge {self.spec.judge} passes {result['pass_rate']:.1f}% of "
                         f"the empty/echo/truncation canaries on {name}: its verdicts can favour "
                         f"degenerate answers ({CANARIES})")
        self._write_recorded(CANARIES, lambda path: write_json(path, report))

    def score(self) -> RunResult:
        """Statistics from the run's files alone (refused when they are not all this run's)."""
        check_files(self.out, read_json(self.out / CONFIG))
        generations = read_generations(self.out)
        judgments = read_judgments(self.out)
        results = []
        for domain in self.spec.domains:
            mine = [g for g in generations if g.meta["domain"] == domain]
            result = domain_result(domain, [j for j in judgments if j.meta["domain"] == domain],
                                   mine, seed=self.spec.seed)
            results.append(replace(result, extra={**result.extra, **health_columns(mine)}))
        results = _with_preference_accuracy(self.out / PREFACC, results)
        results = _with_canaries(self.out / CANARIES, results)
        results = _keep_attached_columns(self.out / RESULTS, results)
        config = read_json(self.out / CONFIG)
        result = RunResult(self.spec, results, self.spec.config_hash(), __version__,
                           config["created"], {"versions": config.get("versions", {})})
        write_json(self.out / RESULTS, result.to_dict())
        return result

    def _replace_other_run(self) -> None:
        """A run of another configuration in the run directory is refused in one line; with
        ``overwrite`` its files are removed first, so the directory never mixes two runs."""
        path = self.out / CONFIG
        if not path.exists():
            return
        old = read_json(path).get("config_hash")
        if old == self.spec.config_hash():
            return
        if not self.overwrite:
            raise FspoBenchError(
                f"{self.out} holds a run of another configuration (config {old}, this run "
                f"{self.spec.config_hash()}); use another --out, or --overwrite to replace it")
        for name in (*RECORDED, RESULTS, CONFIG):
            (self.out / name).unlink(missing_ok=True)

    def _write_recorded(self, name: str, write: Callable[[Path], None]) -> None:
        """Write one of the run's files and record its digest in config.json."""
        write(self.out / name)
        path = self.out / CONFIG
        config = read_json(path)
        config.setdefault("files", {})[name] = file_digest(self.out / name)
        write_json(path, config)

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


def build_queries(spec: RunSpec, data: dict[str, DomainData]) -> dict[str, list[Query]]:
    """Domain name -> the held-out queries of the run (seeded shots, seeded ``limit`` sample)."""
    return {name: d.queries(shots=spec.shots, seed=spec.seed, limit=spec.limit)
            for name, d in data.items()}


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

    Each method's calls are walked with the cached texts; a call that is not cached counts as
    new and is answered with an empty text, so the calls that may follow it (a forced RAT
    answer) count too (an upper bound). Judgments can only be looked up once both generations
    of a query are known; until then every comparison counts as new (an upper bound), except
    those of failed answers, which no judge sees. The judge's canaries count with them.
    Preference accuracy, which makes no generation or judge call except a RAT description,
    is not counted.
    """
    backend, judge = make_backend(spec), make_judge(spec.judge, spec.judge_options)
    params = params_of(spec)
    data = load_domains(spec, strict=strict)
    tagged = [(d, q) for d, qs in build_queries(spec, data).items() for q in qs]
    generations, missing = StageCount("generate"), []

    def lookup(requests: list[GenerationRequest]) -> list[str]:
        found = cache.get_many([generation_key(backend, r) for r in requests])
        missing.extend(r for r, value in zip(requests, found, strict=True) if value is None)
        generations.cached += sum(value is not None for value in found)
        generations.new = len(missing)
        return ["" if value is None else value["text"] for value in found]

    answers = {}
    for name in (spec.method, spec.reference):
        methods = [make_method(spec, name, d) for d, _ in tagged]
        raws = drive([m.calls(m.visible(q), params) for m, (_, q) in zip(methods, tagged,
                                                                       strict=True)], lookup)
        answers[name] = [m.parse(raw) for m, raw in zip(methods, raws, strict=True)]
    canaries = [c.comparison for dd in data.values()
                for c in build_canaries(dd, n=CANARY_PAIRS, seed=spec.seed)]
    hits = sum(value is not None for value in cache.get_many(
        [judgment_key(judge, c) for c in canaries]))
    if missing:  # answers unknown: every comparison may need the judge
        judgments = StageCount("judge", hits, 2 * len(tagged) + len(canaries) - hits)
    else:
        comparisons = [
            Comparison(q.user, q.question, a, b, {"domain": d})
            for (d, q), m, r in zip(tagged, answers[spec.method], answers[spec.reference],
                                    strict=True)
            if FAILED_STATUSES.isdisjoint({answer_status(x, truncated=False) for x in (m, r)})
            for a, b in ((m.response, r.response), (r.response, m.response))]
        hits += sum(value is not None for value in cache.get_many(
            [judgment_key(judge, c) for c in comparisons]))
        judgments = StageCount("judge", hits, len(comparisons) + len(canaries) - hits)
    cost = backend.estimate_cost(missing) + judge.estimate_cost(judgments.new)
    return Plan(spec.method, len(tagged), generations, judgments, cost)


#: results.json columns from preference_accuracy.json: (column, key of the domain's report).
PREFACC_COLUMNS = (
    ("prefacc", "acc"), ("prefacc_ci_low", "acc_ci_low"), ("prefacc_ci_high", "acc_ci_high"),
    ("prefacc_n", "acc_n"), ("prefacc_summed", "acc_summed"), ("prefacc_norm", "acc_norm"),
    ("specificity", "specificity"), ("specificity_ci_low", "specificity_ci_low"),
    ("specificity_ci_high", "specificity_ci_high"), ("specificity_n", "specificity_n"),
)


def _with_preference_accuracy(path: Path, results: list[DomainResult]) -> list[DomainResult]:
    """Results with the calibrated preference accuracy (percent) and its interval, the summed
    and per-character variants, specificity and the accuracy per user group in ``extra``, from
    the run's preference_accuracy.json when the run has one (docs/runs.md)."""
    if not path.exists():
        return results
    report = read_json(path)
    out = []
    for r in results:
        p = report.get(r.domain)
        if p is not None and "acc_summed" not in p:  # written before calibration: as it was
            r = replace(r, extra={**r.extra, "prefacc": p["acc"], "prefacc_n": p["n_docs"],
                                  "prefacc_ci_low": p["acc_ci_low"],
                                  "prefacc_ci_high": p["acc_ci_high"],
                                  "prefacc_norm": p["acc_norm"]})
        elif p is not None:
            columns = {column: p.get(key) for column, key in PREFACC_COLUMNS}
            if not columns["specificity_n"]:
                columns = {k: v for k, v in columns.items() if not k.startswith("specificity")}
            groups = {f"prefacc_{group}": g["acc"] for group, g in p.get("by_group", {}).items()}
            r = replace(r, extra={**r.extra, **columns, **groups})
        out.append(r)
    return out


def _with_canaries(path: Path, results: list[DomainResult]) -> list[DomainResult]:
    """Results with ``judge_canary_pass`` (percent of gated canaries the judge passed) and
    ``judge_canary_n``, from the run's judge_canaries.json when it has one."""
    if not path.exists():
        return results
    report = read_json(path)
    return [replace(r, extra={**r.extra, "judge_canary_pass": report[r.domain]["pass_rate"],
                              "judge_canary_n": report[r.domain]["n"]})
            if r.domain in report else r for r in results]


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
