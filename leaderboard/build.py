"""Read run directories (docs/runs.md), check them, and turn them into leaderboard rows.

Nothing here recomputes a statistic that ``results.json`` gives: the numbers in a row are the
run's own (an older run's preference accuracy is only put on today's percent scale, see
:func:`current_extra`). What is checked is that the four files agree with each other (the same
spec and config hash; per domain, as many single-order verdicts of each kind in
``judgments.jsonl`` as ``results.json`` counts), so that every row can be recomputed from the
run's published judgments. The one thing computed here is what no single run can give: with
``--vs METHOD``, each row's paired difference from that method's row (:func:`add_differences`,
with :func:`fspo_bench.stats.method_difference` on the runs' judgments and pair samples).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fspo_bench.errors import FspoBenchError
from fspo_bench.records import Generation, Judgment, Record, RunResult, RunSpec
from fspo_bench.rundir import check_files
from fspo_bench.stats import method_difference, outcome, query_scores

RUN_FILES = ("config.json", "generations.jsonl", "judgments.jsonl", "results.json")
OUTPUT_FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.meta.json",
                "index.html")

PAPER_JUDGE = "paper (judge model and prompt unpublished)"
PAPER_MODEL = "Llama-3.2-3B-Instruct"
PAPER_FILES = ("roleplay.csv", "elix.csv", "reviews.csv")
PAPER_SOURCE = "FSPO (arXiv 2502.19312, ICLR 2026), winrate vs the base model"

METHOD_FIRST = "method_first"

# Statistics every DomainResult carries in ``extra`` (docs/runs.md); other numeric keys that
# metric plugins add become extra columns after these. Runs from before a key existed leave it
# empty.
KNOWN_EXTRA = (
    "position_consistency",
    "length_controlled_winrate",
    "length_controlled_reliable",
    "mean_length",
    "mean_length_reference",
    "n_queries",
    "n_users",
    "n_failed",
    "n_failed_reference",
    "failed_share",
    "judge_canary_pass",
    "prefacc",
    "prefacc_ci_low",
    "prefacc_ci_high",
    "prefacc_n",
    "prefacc_summed",
    "prefacc_norm",
    "specificity",
    "specificity_ci_low",
    "specificity_ci_high",
)
#: A row whose method failed more than this share (percent) of its answers in a domain is
#: marked (``failed_over_10pct``).
FAILED_LIMIT = 10.0
LEAD_COLUMNS = (
    "source", "method", "method_label", "domain", "subset", "shots", "model", "backend",
    "judge_id", "template_hash", "reference",
    "winrate", "ci_low", "ci_high", "n_wins", "n_losses", "n_ties", "n_invalid",
    *KNOWN_EXTRA, "failed_over_10pct",
)
#: With ``--vs METHOD``: the row's paired difference from METHOD's row (percentage points).
VS_COLUMNS = (
    "vs", "vs_winrate_diff", "vs_winrate_diff_ci_low", "vs_winrate_diff_ci_high", "vs_winrate_n",
    "vs_prefacc_diff", "vs_prefacc_diff_ci_low", "vs_prefacc_diff_ci_high", "vs_prefacc_n",
    "vs_prefacc_mcnemar_p", "vs_prefacc_kind",
)
TAIL_COLUMNS = ("config_hash", "package_version", "date", "run_dir")
INTEGER_COLUMNS = ("shots", "n_wins", "n_losses", "n_ties", "n_invalid", "n_queries", "n_users",
                   "n_failed", "n_failed_reference", "prefacc_n", "vs_winrate_n", "vs_prefacc_n")
BOOLEAN_COLUMNS = ("length_controlled_reliable", "failed_over_10pct")
TEXT_COLUMNS = ("subset", "template_hash", "vs", "vs_prefacc_kind", "config_hash",
                "package_version", "date", "run_dir")
PREFACC_FILE = "preference_accuracy.json"


class RunDirError(FspoBenchError):
    """A run directory that is missing a file, has bad JSON or disagrees with itself."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _fail(path: Path | str, problem: object) -> RunDirError:
    return RunDirError(f"{path}: {_one_line(problem)}")


# --------------------------------------------------------------------------- reading


@dataclass
class Run:
    """One run directory, read and checked."""

    path: Path
    config: dict[str, Any]
    spec: RunSpec
    generations: list[Generation]
    judgments: list[Judgment]
    result: RunResult

    @property
    def domains(self) -> list[str]:
        return [r.domain for r in self.result.results]

    def domain_of(self, meta: dict[str, Any]) -> str | None:
        """The domain a generation or judgment belongs to (``meta.domain``; the only domain of
        a one-domain run if it is missing)."""
        domain = meta.get("domain")
        if domain is None and len(self.domains) == 1:
            return self.domains[0]
        return domain


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise _fail(path, f"missing (a run directory holds {', '.join(RUN_FILES)}; see "
                          "docs/runs.md)")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot read: {exc}") from exc


def _read_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"bad JSON: {exc}") from exc


def _record(path: Path | str, cls: type[Record], data: Any) -> Any:
    try:
        return cls.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise _fail(path, f"not a {cls.__name__} record: {exc}") from exc


def _read_jsonl(path: Path, cls: type[Record]) -> list[Any]:
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _fail(f"{path} line {number}", f"bad JSON: {exc}") from exc
        records.append(_record(f"{path} line {number}", cls, data))
    return records


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_result_types(path: Path, result: RunResult) -> None:
    seen = set()
    for r in result.results:
        if r.domain in seen:
            raise _fail(path, f"domain {r.domain!r} appears twice")
        seen.add(r.domain)
        for name in ("winrate", "ci_low", "ci_high"):
            value = getattr(r, name)
            if value is not None and not _is_number(value):
                raise _fail(path, f"domain {r.domain!r}: {name} is {value!r}, not a number")
        for name in ("n_wins", "n_losses", "n_ties", "n_invalid"):
            value = getattr(r, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _fail(path, f"domain {r.domain!r}: {name} is {value!r}, not a count")


def read_run(path: Path) -> Run:
    """Read and check one run directory; any problem is one :class:`RunDirError` line."""
    if not path.is_dir():
        raise _fail(path, "not a run directory (no such folder)")
    for name in RUN_FILES:  # report a missing file before reading anything large
        if not (path / name).is_file():
            raise _fail(path / name, f"missing (a run directory holds {', '.join(RUN_FILES)}; "
                                     "see docs/runs.md)")
    config = _read_json(path / "config.json")
    if not isinstance(config, dict) or "spec" not in config:
        raise _fail(path / "config.json", 'not a run config (an object with "spec", '
                                          '"config_hash", "backend", "judge", ...)')
    spec = _record(path / "config.json", RunSpec, config["spec"])
    result = _record(path / "results.json", RunResult, _read_json(path / "results.json"))
    _check_result_types(path / "results.json", result)
    generations = _read_jsonl(path / "generations.jsonl", Generation)
    judgments = _read_jsonl(path / "judgments.jsonl", Judgment)
    run = Run(path, config, spec, generations, judgments, result)
    verify(run)
    return run


def read_runs(paths: Iterable[Path]) -> list[Run]:
    runs, seen = [], set()
    for path in paths:
        key = os.path.realpath(path)
        if key in seen:
            continue
        seen.add(key)
        runs.append(read_run(Path(path)))
    return runs


# --------------------------------------------------------------------------- consistency


def verdict_score(judgment: Judgment) -> float | None:
    """The method's score for one single-order verdict (docs/runs.md): 1, 0.5, 0 or None."""
    if not judgment.valid or judgment.winner is None:
        return None
    if judgment.winner == "tie":
        return 0.5
    return 1.0 if (judgment.winner == "a") == (judgment.meta.get("order") == METHOD_FIRST) else 0.0


def verify(run: Run) -> None:
    """Check that config.json, results.json and judgments.jsonl describe the same run, and
    that every file config.json records is the one the run wrote."""
    try:
        check_files(run.path, run.config)
    except FspoBenchError as exc:
        raise RunDirError(str(exc)) from None
    results_path = run.path / "results.json"
    config_hash = run.config.get("config_hash")
    if config_hash is not None and config_hash != run.result.config_hash:
        raise _fail(results_path, f"config_hash {run.result.config_hash!r} differs from "
                                  f"config.json's {config_hash!r}: files of different runs?")
    if run.result.spec.to_dict() != run.spec.to_dict():
        raise _fail(results_path, "spec differs from config.json's: files of different runs?")
    by_domain: dict[str | None, list[Judgment]] = defaultdict(list)
    for j in run.judgments:
        by_domain[run.domain_of(j.meta)].append(j)
    for r in run.result.results:
        judgments = by_domain.get(r.domain, [])
        if by_domain.get(None):
            # Judgments without a domain in a several-domain run: only the total can be checked.
            continue
        scores = [verdict_score(j) for j in judgments]
        have_order = all(j.meta.get("order") is not None for j in judgments)
        counted = (r.n_wins, r.n_losses, r.n_ties, r.n_invalid)
        found = (sum(s == 1.0 for s in scores), sum(s == 0.0 for s in scores),
                 sum(s == 0.5 for s in scores), sum(s is None for s in scores))
        mismatch = (counted != found) if have_order else (
            sum(counted) != len(judgments) or r.n_invalid != found[3])
        if mismatch:
            raise _fail(results_path,
                        f"domain {r.domain!r} counts {r.n_wins} wins, {r.n_losses} losses, "
                        f"{r.n_ties} ties, {r.n_invalid} invalid, but judgments.jsonl has "
                        f"{found[0]}, {found[1]}, {found[2]}, {found[3]} "
                        f"({len(judgments)} verdicts): the row could not be recomputed")


# --------------------------------------------------------------------------- rows


def judge_identity(identity: Any, fallback: str) -> tuple[str, str | None]:
    """(judge id "name:model" or "name vVERSION", template hash or None) from config.json's
    judge identity; a judge without a template gives the hash of what its verdicts follow
    instead (the proxy's lexicon)."""
    if isinstance(identity, str) and identity:
        return identity, None
    if not isinstance(identity, dict):
        return fallback, None
    name = identity.get("name") or identity.get("judge") or fallback
    model = identity.get("model")
    version = identity.get("version")
    judge_id = f"{name}:{model}" if model else f"{name} v{version}" if version else str(name)
    template_hash = None
    for key in ("template_hash", "template_sha256", "template_sha", "prompt_hash"):
        if identity.get(key):
            template_hash = str(identity[key])
            break
    else:
        for key, value in identity.items():
            lowered = key.lower()
            if value and "template" in lowered and ("hash" in lowered or "sha" in lowered):
                template_hash = str(value)
                break
        else:
            digests = [str(v) for k, v in sorted(identity.items()) if k.endswith("_sha256") and v]
            template_hash = digests[0] if digests else None
    return judge_id, template_hash


def _observed_shots(run: Run, domain: str) -> int | None:
    counts = Counter(len(g.query.shots) for g in run.generations
                     if run.domain_of(g.meta) == domain and _role(run, g) == "method")
    if counts:
        return counts.most_common(1)[0][0]
    return run.spec.shots


def current_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """A DomainResult's ``extra`` on today's scales. A run from before calibrated preference
    accuracy (``prefacc`` without ``prefacc_summed``) gives ``prefacc`` and ``prefacc_norm`` as
    0-1 fractions of the summed and per-character log-probability accuracies: they become
    ``prefacc_summed`` and ``prefacc_norm`` in percent, the calibrated columns stay empty (that
    run never measured it) and the old interval, which was the summed one's, is left out."""
    if not _is_number(extra.get("prefacc")) or "prefacc_summed" in extra:
        return extra
    out = {k: v for k, v in extra.items() if not k.startswith("prefacc")}
    norm = extra.get("prefacc_norm")
    return {**out, "prefacc_summed": 100 * extra["prefacc"], "prefacc_n": extra.get("prefacc_n"),
            "prefacc_norm": 100 * norm if _is_number(norm) else None}


def _known(key: str, value: Any) -> Any:
    if key in BOOLEAN_COLUMNS:
        return value if isinstance(value, bool) else None
    return value if _is_number(value) else None


def portable_path(path: Path, out: Path) -> str:
    """``path`` relative to the leaderboard folder ``out`` (POSIX separators), so that a copy
    of the leaderboard and its runs moved elsewhere still points at them."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(out))).as_posix()


def run_rows(run: Run, out: Path) -> list[dict[str, Any]]:
    """One row per domain of a run, with the numbers exactly as results.json gives them (on
    today's scales: :func:`current_extra`); ``run_dir`` relative to the leaderboard ``out``."""
    backend = run.config.get("backend")
    backend = backend if isinstance(backend, dict) else {}
    judge_id, template_hash = judge_identity(run.config.get("judge"), run.spec.judge)
    rows = []
    for r in run.result.results:
        row: dict[str, Any] = {
            "source": "run",
            "method": run.spec.method,
            "method_label": run.spec.method,
            "domain": r.domain,
            "subset": "",
            "shots": _observed_shots(run, r.domain),
            "model": backend.get("model") or run.spec.model,
            "backend": backend.get("backend") or run.spec.backend,
            "judge_id": judge_id,
            "template_hash": template_hash,
            "reference": run.spec.reference,
            "winrate": r.winrate,
            "ci_low": r.ci_low,
            "ci_high": r.ci_high,
            "n_wins": r.n_wins,
            "n_losses": r.n_losses,
            "n_ties": r.n_ties,
            "n_invalid": r.n_invalid,
        }
        extra = current_extra(r.extra)
        for key in KNOWN_EXTRA:
            row[key] = _known(key, extra.get(key))
        share = row["failed_share"]
        row["failed_over_10pct"] = None if share is None else share > FAILED_LIMIT
        for key, value in sorted(extra.items()):
            if key not in row and key not in TAIL_COLUMNS and _is_number(value):
                row[key] = value
        row["config_hash"] = run.result.config_hash
        row["package_version"] = run.result.package_version
        row["date"] = run.result.created or run.config.get("created")
        row["run_dir"] = portable_path(run.path, out)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- paired differences


def _paired_items(run: Run, domain: str) -> tuple[dict[tuple[str, str], float], list[Any]]:
    """One run's query scores on one domain (its judgments that name their order and question)
    and its preference-accuracy samples there (none without preference_accuracy.json)."""
    outcomes = [outcome(j) for j in run.judgments if run.domain_of(j.meta) == domain
                and j.meta.get("order") is not None and j.meta.get("question_id") is not None]
    path = run.path / PREFACC_FILE
    report = _read_json(path) if path.is_file() else {}
    samples = report.get(domain, {}).get("samples", []) if isinstance(report, dict) else []
    return query_scores(outcomes), samples


def _difference_columns(diff: dict[str, Any]) -> dict[str, Any]:
    w, p = diff["winrate"] or {}, diff["prefacc"] or {}
    return {
        "vs_winrate_diff": w.get("difference"), "vs_winrate_diff_ci_low": w.get("ci_low"),
        "vs_winrate_diff_ci_high": w.get("ci_high"), "vs_winrate_n": w.get("n_queries"),
        "vs_prefacc_diff": p.get("difference"), "vs_prefacc_diff_ci_low": p.get("ci_low"),
        "vs_prefacc_diff_ci_high": p.get("ci_high"), "vs_prefacc_n": p.get("n_pairs"),
        "vs_prefacc_mcnemar_p": p.get("p_value"), "vs_prefacc_kind": p.get("kind"),
    }


def add_differences(runs: Sequence[Run], rows: list[dict[str, Any]], vs: str, out: Path, *,
                    seed: int = 0) -> None:
    """Give every run row its paired difference from the row of method ``vs`` with the same
    domain, model and judge (:data:`VS_COLUMNS`): winrate over their common judged queries,
    preference accuracy over their common pairs with the exact McNemar p-value. Rows without
    such a baseline row, and the baseline rows themselves, have only ``vs``."""
    by_dir = {portable_path(run.path, out): run for run in runs}
    baselines: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["domain"], row["model"], row["judge_id"])
        if row["method"] == vs:
            if key in baselines:
                raise FspoBenchError(
                    f"--vs {vs}: two runs of {vs} on {key[0]} with model {key[1]} and judge "
                    f"{key[2]} ({baselines[key]['run_dir']}, {row['run_dir']}): pass one")
            baselines[key] = row
    if not baselines:
        methods = ", ".join(sorted({row["method"] for row in rows}))
        raise FspoBenchError(f"--vs {vs}: no run of method {vs!r} (the runs are of {methods})")
    items = functools.cache(lambda run_dir, domain: _paired_items(by_dir[run_dir], domain))
    for row in rows:
        row["vs"] = vs
        base = baselines.get((row["domain"], row["model"], row["judge_id"]))
        if base is None or base is row:
            continue
        scores_a, samples_a = items(row["run_dir"], row["domain"])
        scores_b, samples_b = items(base["run_dir"], base["domain"])
        try:
            diff = method_difference(scores_a, scores_b, samples_a, samples_b, seed=seed)
        except (KeyError, TypeError, ValueError) as exc:
            raise FspoBenchError(
                f"{row['run_dir']} vs {base['run_dir']}: {PREFACC_FILE} samples are not as "
                f"docs/runs.md describes them ({exc!r})") from exc
        row.update(_difference_columns(diff))


def paper_rows() -> list[dict[str, Any]]:
    """The paper's published winrates (leaderboard/paper/*.csv) as reference rows."""
    folder = resources.files("fspo_bench.leaderboard") / "paper"
    rows = []
    for name in PAPER_FILES:
        text = (folder / name).read_text(encoding="utf-8")
        for item in csv.DictReader(io.StringIO(text)):
            rows.append({
                "source": "paper",
                "method": item["method"],
                "method_label": item["label"],
                "domain": item["domain"],
                "subset": item["subset"],
                "shots": int(item["shots"]) if item["shots"] else None,
                "model": PAPER_MODEL,
                "backend": "paper",
                "judge_id": PAPER_JUDGE,
                "template_hash": None,
                "reference": "base",
                "winrate": float(item["winrate"]),
            })
    return rows


def frame(rows: Sequence[dict[str, Any]]):
    """The leaderboard DataFrame: fixed columns first, ``--vs`` differences if any, extra
    metrics, provenance last; sorted by domain, then winrate (highest first)."""
    import pandas as pd

    present = {k for row in rows for k in row}
    vs = [c for c in VS_COLUMNS if c in present]
    extra = sorted(present - set(LEAD_COLUMNS) - set(VS_COLUMNS) - set(TAIL_COLUMNS))
    columns = [*LEAD_COLUMNS, *vs, *extra, *TAIL_COLUMNS]
    df = pd.DataFrame(list(rows), columns=columns)
    for column in columns:
        if column in INTEGER_COLUMNS:
            df[column] = pd.array([None if _missing(v) else int(v) for v in df[column]],
                                  dtype="Int64")
        elif column in BOOLEAN_COLUMNS:
            df[column] = pd.array([None if _missing(v) else bool(v) for v in df[column]],
                                  dtype="boolean")
        elif column in TEXT_COLUMNS:
            df[column] = df[column].astype("object")
        elif column in ("winrate", "ci_low", "ci_high", *KNOWN_EXTRA, *vs, *extra):
            df[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
    df = df.sort_values(["domain", "winrate", "source", "method"],
                        ascending=[True, False, False, True], na_position="last", kind="stable")
    return df.reset_index(drop=True)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def plain(value: Any) -> Any:
    """A DataFrame cell as plain JSON data (NaN and <NA> become None, numpy scalars Python)."""
    if _missing(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(df) -> list[dict[str, Any]]:
    return [{k: plain(v) for k, v in row.items()} for row in df.to_dict("records")]


# --------------------------------------------------------------------------- samples


def _role(run: Run, generation: Generation) -> str | None:
    role = generation.meta.get("role")
    if role in ("method", "reference"):
        return role
    if generation.method == run.spec.method != run.spec.reference:
        return "method"
    if generation.method == run.spec.reference != run.spec.method:
        return "reference"
    return None


def _question_key(meta: dict[str, Any], question_id: str, question: str) -> str:
    return str(meta.get("question_id") or question_id or question)


def _verdict(judgment: Judgment) -> dict[str, Any]:
    method_first = judgment.meta.get("order") == METHOD_FIRST
    score = verdict_score(judgment)
    if score is None:
        label = "invalid"
    elif score == 0.5:
        label = "tie"
    else:
        label = "method" if score == 1.0 else "reference"
    return {
        "order": "method first (A = method)" if method_first else "reference first (A = reference)",
        "winner": judgment.winner,
        "preferred": label,
        "valid": judgment.valid,
        "attempts": judgment.meta.get("attempts"),
        "judge": judgment.meta.get("judge_id") or judgment.judge,
        "raw": judgment.raw,
    }


def _outcome(verdicts: Sequence[dict[str, Any]]) -> str:
    labels = [v["preferred"] for v in verdicts if v["preferred"] != "invalid"]
    if not labels:
        return "invalid" if verdicts else "not judged"
    if all(label == labels[0] for label in labels):
        return {"method": "method wins", "reference": "reference wins"}.get(labels[0], "tie")
    return "split"


def samples(run: Run, domain: str, max_samples: int) -> tuple[list[dict[str, Any]], int]:
    """Up to ``max_samples`` judged queries of one run on one domain, taken in turn from each
    user (so a few users do not fill the page), and the number of queries there are."""
    method: dict[tuple[str, str], Generation] = {}
    reference: dict[tuple[str, str], Generation] = {}
    for g in run.generations:
        if run.domain_of(g.meta) != domain:
            continue
        key = (g.query.user.id, _question_key(g.meta, g.query.question_id, g.query.question))
        role = _role(run, g)
        if role == "method":
            method.setdefault(key, g)
        elif role == "reference":
            reference.setdefault(key, g)
    verdicts: dict[tuple[str, str], list[Judgment]] = defaultdict(list)
    for j in run.judgments:
        if run.domain_of(j.meta) == domain:
            verdicts[(j.user, _question_key(j.meta, "", j.question))].append(j)
    per_user: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in method:
        per_user[key[0]].append(key)
    chosen: list[tuple[str, str]] = []
    queues = [list(keys) for keys in per_user.values()]
    while len(chosen) < max_samples and any(queues):
        for queue in queues:
            if queue and len(chosen) < max_samples:
                chosen.append(queue.pop(0))
    out = []
    for number, key in enumerate(chosen, start=1):
        g = method[key]
        ref = reference.get(key)
        judged = sorted(verdicts.get(key, []),
                        key=lambda j: (j.meta.get("order") != METHOD_FIRST, j.meta.get("order")))
        shown = [_verdict(j) for j in judged]
        out.append({
            "number": number,
            "user_id": g.query.user.id,
            "user_description": g.query.user.description,
            "shots": [{"question": s.question, "chosen": s.chosen, "rejected": s.rejected}
                      for s in g.query.shots],
            "question": g.query.question,
            "question_id": key[1],
            "method_text": g.text,
            "method_raw": g.raw if g.raw != g.text else None,
            "method_status": g.status,
            "method_description": g.meta.get("description"),
            "method_words": len(g.text.split()),
            "reference_method": ref.method if ref else run.spec.reference,
            "reference_text": ref.text if ref else None,
            "reference_raw": ref.raw if ref and ref.raw != ref.text else None,
            "reference_status": ref.status if ref else None,
            "reference_words": len(ref.text.split()) if ref else None,
            "verdicts": shown,
            "outcome": _outcome(shown),
        })
    return out, len(method)


# --------------------------------------------------------------------------- output


def write_atomically(out: Path, files: dict[str, str]) -> None:
    """Write ``files`` into ``out``: first into a temporary folder beside it, then each file is
    renamed into place (a new ``out`` is one rename). Other files in ``out`` are left alone."""
    if out.exists() and not out.is_dir():
        raise FspoBenchError(f"{out}: exists and is not a folder")
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        if out.is_dir():
            for name in files:
                os.replace(tmp / name, out / name)
        else:
            os.chmod(tmp, 0o755)
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build(run_dirs: Sequence[Path], out: Path, *, title: str, max_samples: int = 50,
          with_paper: bool = False, vs: str | None = None) -> dict[str, Any]:
    """Read the runs, render the four files and write them into ``out``; returns a summary.
    With ``vs``, rows carry their paired difference from that method's rows."""
    from fspo_bench.leaderboard import render

    if max_samples < 0:
        raise FspoBenchError("--max-samples must be 0 or more")
    runs = read_runs(run_dirs)
    rows = [row for run in runs for row in run_rows(run, out)]
    if vs is not None:
        add_differences(runs, rows, vs, out)
    n_paper = 0
    if with_paper:
        extra = paper_rows()
        n_paper = len(extra)
        rows.extend(extra)
    df = frame(rows)
    sample_sets = []
    for run in runs:
        judge_id, _ = judge_identity(run.config.get("judge"), run.spec.judge)
        for domain in run.domains:
            shown, total = samples(run, domain, max_samples)
            sample_sets.append({
                "method": run.spec.method, "domain": domain, "model": run.spec.model,
                "judge_id": judge_id, "config_hash": run.result.config_hash,
                "reference": run.spec.reference, "run_dir": portable_path(run.path, out),
                "samples": shown, "total": total,
            })
    files = render.render_all(df, sample_sets, title=title, max_samples=max_samples)
    write_atomically(out, files)
    return {"runs": len(runs), "rows": len(df), "paper_rows": n_paper,
            "files": list(files), "out": str(out)}
