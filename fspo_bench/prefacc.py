"""Preference accuracy: does the model, given a user's shots, prefer that user's chosen response?

One **doc** per labelled pair of a held-out user on a held-out question
(:meth:`DomainData.eval_preferences`). Its context is the official few-shot prompt
(:func:`fspo_bench.prompts.few_shot_prompt`) with N shots of the same user, drawn exactly as
generation runs draw them (:func:`fspo_bench.sampling.sample_shots`, seeded by seed, user and
question, never a held-out question); its two choices are the chosen and the rejected response
in the official completion format (``## Preferred Response \\n<text>\\n``, no EOS), in an order
fixed by a hash of the pair (``gold`` is the chosen one's index), so that a tie in the scores is
not silently counted as a success. Docs come in a seeded order; ``limit`` keeps the first
``limit`` (lm-eval's ``--limit`` does the same, so both see the same docs).

Two engines compute the same numbers on the same docs (docs/prefacc.md):

- lm-evaluation-harness: the task configs in ``tasks/lm_eval/`` (``fspo_<domain>_prefacc``,
  tag ``fspo_prefacc``) build their dataset with :func:`lmeval_dataset`, which calls our domain
  loaders and writes the docs to a JSONL file in the cache folder;
  :func:`lmeval_preference_accuracy` runs them through lm-eval's Python API
  (``TaskManager(include_path=..., include_defaults=False)``, ``simple_evaluate``, ``HFLM``).
- any fspo-bench backend with ``loglikelihood``: :func:`preference_accuracy`. It scores the
  requests lm-eval makes (:func:`request_pairs`): lm-eval moves the context's trailing newline
  to the start of each continuation, which adds the same term to both choices.

``acc`` = share of docs whose higher-scoring choice is the chosen one (``argmax``, first index on
a tie, as lm-eval); ``acc_norm`` = the same after dividing each score by its choice's length in
characters (lm-eval's ``acc_norm``). Intervals: 95% percentile bootstrap resampling users.

Also here: the implicit-reward accuracy of a trained checkpoint
(:func:`implicit_reward_accuracy`) and shot-robustness curves (:func:`shot_curve`).

Importing this module imports neither torch nor lm_eval (lm-eval imports it to build docs).
"""

from __future__ import annotations

import csv
import inspect
import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from fspo_bench.dataset import DomainData
from fspo_bench.errors import FspoBenchError, UnknownNameError
from fspo_bench.hashing import stable_hash
from fspo_bench.prompts import completion, few_shot_prompt
from fspo_bench.records import Preference
from fspo_bench.sampling import rng_for, sample_shots
from fspo_bench.stats import bootstrap_mean_ci

#: What the ``lmeval`` extra pins; the task configs and the API calls are checked against it.
LMEVAL_REQUIREMENT = "lm-eval>=0.4.13,<0.5"
LMEVAL_MIN = (0, 4, 13)
LMEVAL_BELOW = (0, 5)
#: Set to 1 to try an lm-eval outside the supported range (its API is still checked).
ANY_LMEVAL_ENV = "FSPO_BENCH_ANY_LMEVAL"

#: Domains with shipped lm-eval task configs, and the tag that names them all.
DOMAINS = ("elix", "reviews", "roleplay")
TAG = "fspo_prefacc"
#: lm-eval puts this between context and choice (the task configs set it; keep them in sync).
TARGET_DELIMITER = ""
#: Shot-robustness variants (docs/prefacc.md).
VARIANTS = ("standard", "shuffled", "contradicting", "other_user")
DEFAULT_BETA = 0.01

Progress = Callable[[str, int, int], None]


def task_name(domain: str) -> str:
    return f"fspo_{domain}_prefacc"


def task_names() -> list[str]:
    return [task_name(d) for d in DOMAINS]


def domain_of(name: str) -> str:
    """The domain of a domain or task name (``elix`` or ``fspo_elix_prefacc``); unknown names
    raise an error that lists our tasks."""
    for domain in DOMAINS:
        if name in (domain, task_name(domain)):
            return domain
    if name == TAG:
        raise FspoBenchError(f"{TAG!r} is the tag of all our tasks; name one domain or task")
    raise UnknownNameError("lm-eval task", name, [*DOMAINS, *task_names()])


def lmeval_path() -> Path:
    """The folder of our lm-eval task configs: lm-eval's ``--include_path``."""
    return Path(str(resources.files("fspo_bench.tasks") / "lm_eval"))


# --------------------------------------------------------------------------- docs


def load_domain(domain: str, data: str = "builtin", shots: int | None = None) -> DomainData:
    """Load a domain's data as runs do (users with too few rows for ``shots`` are dropped)."""
    from fspo_bench import plugins

    return plugins.get("domain", domain)().load(data, shots=shots)


def ordered_preferences(data: DomainData, seed: int = 0) -> list[Preference]:
    """The held-out labelled pairs in the seeded doc order, stratified over users: each user's
    pairs are shuffled (canonical sort first), the users are shuffled, and the order takes one
    pair of each user in turn, so that the first ``limit`` pairs spread evenly over users."""
    by_user: dict[str, list[Preference]] = defaultdict(list)
    for pref in sorted(data.eval_preferences(),
                       key=lambda p: (p.user_id, p.question_id, p.chosen, p.rejected)):
        by_user[pref.user_id].append(pref)
    for user, prefs in by_user.items():
        rng_for("prefacc-docs", data.domain, user, seed).shuffle(prefs)
    users = sorted(by_user)
    rng_for("prefacc-users", data.domain, seed).shuffle(users)
    rounds = max((len(v) for v in by_user.values()), default=0)
    return [by_user[u][k] for k in range(rounds) for u in users if k < len(by_user[u])]


def doc_id(domain: str, pref: Preference) -> str:
    return stable_hash([domain, pref.user_id, pref.question_id, pref.chosen, pref.rejected])[:16]


def choice_order(domain: str, pref: Preference) -> int:
    """The index of the chosen response among a doc's two choices, fixed by a hash of the pair
    so that a tie is not silently a success."""
    return int(stable_hash(["prefacc-order", domain, pref.user_id, pref.question_id,
                            pref.chosen, pref.rejected]), 16) % 2


def make_doc(domain: str, pref: Preference, shots: Sequence[Preference], *,
             variant: str = "standard", shot_user: str | None = None) -> dict[str, Any]:
    """One doc: the few-shot context and both completions, chosen at index ``gold``."""
    chosen, rejected = completion(pref.chosen), completion(pref.rejected)
    swap = choice_order(domain, pref)
    return {
        "id": doc_id(domain, pref),
        "domain": domain,
        "user_id": pref.user_id,
        "question_id": pref.question_id,
        "variant": variant,
        "n_shots": len(shots),
        "shot_user": pref.user_id if shot_user is None else shot_user,
        "shot_question_ids": [s.question_id for s in shots],
        "context": few_shot_prompt(shots, pref.question),
        "choices": [rejected, chosen] if swap else [chosen, rejected],
        "gold": swap,
    }


def shots_for(data: DomainData, pref: Preference, n: int, seed: int) -> list[Preference]:
    """The ``n`` shots of a pair's user, drawn as generation runs draw them."""
    return sample_shots(data.shot_pool(pref.user_id), n, seed=seed, user_id=pref.user_id,
                        question_id=pref.question_id, exclude_question_ids=data.eval_questions)


def build_docs(data: DomainData, *, shots: int | None = None, seed: int = 0,
               limit: int | None = None) -> list[dict[str, Any]]:
    """The docs of one domain: every held-out pair in the seeded order, the first ``limit``."""
    n = data.default_shots if shots is None else shots
    prefs = ordered_preferences(data, seed)
    if limit is not None:
        prefs = prefs[:max(limit, 0)]
    return [make_doc(data.domain, p, shots_for(data, p, n, seed)) for p in prefs]


def request_pairs(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (context, continuation) pairs lm-eval scores for a doc, one per choice.

    lm-eval asks for ``(context, target_delimiter + choice)`` and its HF model then moves the
    context's trailing whitespace (here the newline that ends the question line) to the front
    of the continuation; we do the same so that both engines score identical strings.
    """
    context = doc["context"]
    stripped = context.rstrip()
    moved = context[len(stripped):]
    return [(stripped, moved + TARGET_DELIMITER + choice) for choice in doc["choices"]]


# --------------------------------------------------------------------------- scoring


@dataclass
class LoglikCount:
    """How many log-likelihoods came from the cache and how many were computed."""

    cached: int = 0
    new: int = 0

    def __str__(self) -> str:
        return f"log-likelihoods: cached {self.cached} / new {self.new}"


def loglik_key(backend: Any, adapter_revision: str | None, context: str,
               continuation: str) -> dict[str, Any]:
    """The response-cache key of one summed log-likelihood."""
    return {"kind": "loglik", **backend.identity(), "adapter_revision": adapter_revision,
            "context": context, "continuation": continuation}


def cached_loglikelihood(backend: Any, pairs: Sequence[tuple[str, str]], *,
                         adapter: str | None = None, cache: Any = None,
                         count: LoglikCount | None = None, progress: Progress | None = None,
                         label: str = "loglikelihood", chunk: int = 64) -> list[float]:
    """``backend.loglikelihood`` for the pairs, each distinct pair once, through ``cache``
    (a :class:`fspo_bench.cache.ResponseCache`, or None) when given."""
    unique = list(dict.fromkeys((str(c), str(x)) for c, x in pairs))
    count = count if count is not None else LoglikCount()
    values: list[float | None] = [None] * len(unique)
    keys: list[dict[str, Any]] = []
    if cache is not None and unique:
        revision = backend.adapter_revision(adapter) if adapter is not None else None
        keys = [loglik_key(backend, revision, c, x) for c, x in unique]
        for i, found in enumerate(cache.get_many(keys)):
            if found is not None:
                values[i] = float(found["loglik"])
    todo = [i for i, v in enumerate(values) if v is None]
    count.cached += len(unique) - len(todo)
    count.new += len(todo)
    done = len(unique) - len(todo)
    if progress is not None:
        progress(label, done, len(unique))
    for start in range(0, len(todo), chunk):
        batch = todo[start:start + chunk]
        scores = backend.loglikelihood([unique[i] for i in batch], adapter=adapter)
        for i, score in zip(batch, scores, strict=True):
            values[i] = float(score)
            if cache is not None:
                cache.put(keys[i], {"loglik": float(score)})
        done += len(batch)
        if progress is not None:
            progress(label, done, len(unique))
    index = dict(zip(unique, values, strict=True))
    return [index[(str(c), str(x))] for c, x in pairs]  # type: ignore[misc]


def _argmax(values: Sequence[float]) -> int:
    """Index of the largest value, the first on a tie (as numpy.argmax, which lm-eval uses)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def score_doc(doc: Mapping[str, Any], lls: Sequence[float]) -> dict[str, Any]:
    """lm-eval's multiple-choice metrics of one doc from its choices' log-likelihoods."""
    norm = [ll / len(choice) for ll, choice in zip(lls, doc["choices"], strict=True)]
    pred, pred_norm = _argmax(lls), _argmax(norm)
    return {"id": doc["id"], "domain": doc["domain"], "user_id": doc["user_id"],
            "question_id": doc["question_id"], "variant": doc.get("variant", "standard"),
            "n_shots": doc["n_shots"], "gold": doc["gold"], "lls": [float(x) for x in lls],
            "acc": float(pred == doc["gold"]), "acc_norm": float(pred_norm == doc["gold"])}


def user_ci(samples: Iterable[Mapping[str, Any]], key: str, seed: int
            ) -> tuple[float | None, ...]:
    """95% bootstrap interval of the mean of ``key`` over samples, resampling their users
    (``(None, None)`` without samples)."""
    by_user: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        by_user[s["user_id"]].append(float(s[key]))
    ci = bootstrap_mean_ci(by_user, seed=seed)
    return (None, None) if ci is None else ci


def summarize(samples: Sequence[Mapping[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """acc, acc_norm and their user-clustered bootstrap intervals over scored docs."""
    n = len(samples)
    acc_ci, norm_ci = user_ci(samples, "acc", seed), user_ci(samples, "acc_norm", seed)
    return {
        "n_docs": n,
        "n_users": len({s["user_id"] for s in samples}),
        "acc": sum(s["acc"] for s in samples) / n if n else None,
        "acc_ci_low": acc_ci[0], "acc_ci_high": acc_ci[1],
        "acc_norm": sum(s["acc_norm"] for s in samples) / n if n else None,
        "acc_norm_ci_low": norm_ci[0], "acc_norm_ci_high": norm_ci[1],
    }


def score_docs(backend: Any, docs: Sequence[Mapping[str, Any]], *, adapter: str | None = None,
               cache: Any = None, count: LoglikCount | None = None,
               progress: Progress | None = None, label: str = "prefacc") -> list[dict[str, Any]]:
    """Score every doc's choices with ``backend`` (lm-eval's requests) and apply the metrics."""
    pairs = [p for d in docs for p in request_pairs(d)]
    lls = cached_loglikelihood(backend, pairs, adapter=adapter, cache=cache, count=count,
                               progress=progress, label=label)
    out, k = [], 0
    for d in docs:
        m = len(d["choices"])
        out.append(score_doc(d, lls[k:k + m]))
        k += m
    return out


def preference_accuracy(backend: Any, data: DomainData, shots: int | None = None, seed: int = 0,
                        limit: int | None = None, adapter: str | None = None, *,
                        cache: Any = None, count: LoglikCount | None = None,
                        progress: Progress | None = None) -> dict[str, Any]:
    """Preference accuracy of ``backend`` (optionally with ``adapter``) on one domain.

    The same docs and requests as the lm-eval task ``fspo_<domain>_prefacc`` with the same
    ``shots``, ``seed`` and ``limit``; returns the summary (:func:`summarize`) with
    ``domain``, ``task``, ``engine``, ``shots``, ``seed`` and per-doc ``samples``.
    """
    n = data.default_shots if shots is None else shots
    docs = build_docs(data, shots=n, seed=seed, limit=limit)
    samples = score_docs(backend, docs, adapter=adapter, cache=cache, count=count,
                         progress=progress, label=f"prefacc [{data.domain}]")
    return {"domain": data.domain, "task": task_name(data.domain), "engine": "backend",
            "shots": n, "seed": seed, "limit": limit, **summarize(samples, seed=seed),
            "samples": samples}


def implicit_reward_accuracy(backend: Any, data: DomainData, shots: int | None = None,
                             seed: int = 0, limit: int | None = None, *, adapter: str,
                             reference: str | None = None, beta: float = DEFAULT_BETA,
                             cache: Any = None, count: LoglikCount | None = None,
                             progress: Progress | None = None) -> dict[str, Any]:
    """Share of docs where the implicit reward of the chosen response beats the rejected one's.

    ``reward(y) = beta * [log pi(y|x) - log ref(y|x)]`` with pi = the backend with ``adapter``
    and ref = the backend with ``reference`` (None: the base model), summed log-probs of the
    completion after the official prompt (the trainer's boundary: the prompt keeps its final
    newline). A tie counts as a miss and is reported in ``n_ties``. ``beta`` scales the rewards
    and the margin, not the accuracy.
    """
    if adapter is None:
        raise FspoBenchError("the implicit reward needs a trained checkpoint (--checkpoint)")
    n = data.default_shots if shots is None else shots
    docs = build_docs(data, shots=n, seed=seed, limit=limit)
    pairs = [(d["context"], c) for d in docs for c in d["choices"]]
    label = f"implicit reward [{data.domain}]"
    policy = cached_loglikelihood(backend, pairs, adapter=adapter, cache=cache, count=count,
                                  progress=progress, label=f"{label} policy")
    ref = cached_loglikelihood(backend, pairs, adapter=reference, cache=cache, count=count,
                               progress=progress, label=f"{label} reference")
    samples, k, ties, margins = [], 0, 0, []
    for d in docs:
        rewards = [beta * (policy[k + i] - ref[k + i]) for i in range(len(d["choices"]))]
        k += len(d["choices"])
        gold = d["gold"]
        margin = rewards[gold] - rewards[1 - gold]
        ties += margin == 0
        margins.append(margin)
        samples.append({"id": d["id"], "user_id": d["user_id"], "question_id": d["question_id"],
                        "gold": gold, "rewards": rewards, "acc": float(margin > 0)})
    ci = user_ci(samples, "acc", seed)
    return {"domain": data.domain, "engine": "backend", "shots": n, "seed": seed,
            "limit": limit, "beta": beta, "reference": reference or "base",
            "n_docs": len(samples), "n_users": len({s["user_id"] for s in samples}),
            "acc": sum(s["acc"] for s in samples) / len(samples) if samples else None,
            "acc_ci_low": ci[0], "acc_ci_high": ci[1], "n_ties": ties,
            "mean_margin": sum(margins) / len(margins) if margins else None,
            "samples": samples}


# --------------------------------------------------------------------------- shot curves


def _shuffled(shots: list[Preference], rng: Any) -> list[Preference]:
    order = list(range(len(shots)))
    rng.shuffle(order)
    if len(order) > 1 and order == sorted(order):  # a shuffle must change the order
        order = order[1:] + order[:1]
    return [shots[i] for i in order]


def _other_user(data: DomainData, pref: Preference, n: int, seed: int) -> tuple[str, list]:
    candidates = []
    for user in sorted(data.users):
        if user == pref.user_id:
            continue
        eligible = [p for p in data.shot_pool(user) if p.question_id != pref.question_id]
        if len(eligible) >= n:
            candidates.append(user)
    if not candidates:
        return "", []
    other = rng_for("prefacc-other-user", seed, pref.user_id, pref.question_id).choice(
        candidates)
    shots = sample_shots(data.shot_pool(other), n, seed=seed, user_id=other,
                         question_id=pref.question_id, exclude_question_ids=data.eval_questions)
    return other, shots


def curve_docs(data: DomainData, *, max_shots: int | None = None, seed: int = 0,
               limit: int | None = None,
               variants: Sequence[str] = VARIANTS) -> list[dict[str, Any]]:
    """Docs for shot-robustness curves, for k = 0..max_shots and every variant.

    The k shots of a doc are the first k of its max_shots-shot draw (nested: the curve shows
    what adding a shot does, not what redrawing does; at k = max_shots the standard docs are
    :func:`build_docs`'s). ``shuffled``: the same k shots in a seeded other order.
    ``contradicting``: the same k shots with chosen and rejected swapped in one (seeded) shot.
    ``other_user``: the first k of a max_shots draw from another user's shot pool (a seeded
    choice among the domain's other users; a negative control). At k = 0 every variant is the
    zero-shot prompt.
    """
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise UnknownNameError("curve variant", unknown[0], list(VARIANTS))
    n = data.default_shots if max_shots is None else max_shots
    prefs = ordered_preferences(data, seed)
    if limit is not None:
        prefs = prefs[:max(limit, 0)]
    docs = []
    for p in prefs:
        full = shots_for(data, p, n, seed)
        other, other_shots = (_other_user(data, p, n, seed) if "other_user" in variants
                              else ("", []))
        for k in range(n + 1):
            shots = full[:k]
            for variant in variants:
                shot_user = None
                if variant == "standard":
                    picked = shots
                elif variant == "shuffled":
                    picked = _shuffled(shots, rng_for("prefacc-shuffle", seed, p.user_id,
                                                      p.question_id, k))
                elif variant == "contradicting":
                    picked = list(shots)
                    if k:
                        i = rng_for("prefacc-contradict", seed, p.user_id, p.question_id,
                                    k).randrange(k)
                        picked[i] = replace(shots[i], chosen=shots[i].rejected,
                                            rejected=shots[i].chosen)
                else:  # other_user
                    if not other:
                        continue
                    picked, shot_user = other_shots[:k], (other if k else None)
                docs.append(make_doc(data.domain, p, picked, variant=variant,
                                     shot_user=shot_user))
    return docs


CURVE_COLUMNS = ("domain", "variant", "shots", "acc", "acc_ci_low", "acc_ci_high", "acc_norm",
                 "n_docs", "n_users")


def shot_curve(backend: Any, data: DomainData, *, max_shots: int | None = None, seed: int = 0,
               limit: int | None = None, adapter: str | None = None,
               variants: Sequence[str] = VARIANTS, cache: Any = None,
               count: LoglikCount | None = None,
               progress: Progress | None = None) -> list[dict[str, Any]]:
    """Preference accuracy per (variant, k shots) with our backend: rows in
    :data:`CURVE_COLUMNS`. Identical requests (k = 0, one shot shuffled) are scored once."""
    docs = curve_docs(data, max_shots=max_shots, seed=seed, limit=limit, variants=variants)
    samples = score_docs(backend, docs, adapter=adapter, cache=cache, count=count,
                         progress=progress, label=f"curve [{data.domain}]")
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for s in samples:
        groups[(s["variant"], s["n_shots"])].append(s)
    rows = []
    for variant in variants:
        for k in sorted(k for v, k in groups if v == variant):
            summary = summarize(groups[(variant, k)], seed=seed)
            rows.append({"domain": data.domain, "variant": variant, "shots": k,
                         **{c: summary[c] for c in CURVE_COLUMNS[3:]}})
    return rows


def write_curve(rows: Sequence[Mapping[str, Any]], csv_path: Path, png_path: Path) -> None:
    """The curve table as CSV and a plot (one panel per domain; matplotlib, Agg backend)."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CURVE_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c) for c in CURVE_COLUMNS})
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    domains = list(dict.fromkeys(r["domain"] for r in rows)) or ["(none)"]
    fig, axes = plt.subplots(1, len(domains), figsize=(4.2 * len(domains), 3.6), squeeze=False)
    markers = {"standard": "o", "shuffled": "s", "contradicting": "^", "other_user": "x"}
    for ax, domain in zip(axes[0], domains, strict=True):
        for j, variant in enumerate(VARIANTS):
            points = [r for r in rows if r["domain"] == domain and r["variant"] == variant
                      and r["acc"] is not None]
            if not points:
                continue
            # Dodge the variants a little so that overlapping lines stay visible.
            xs = [r["shots"] + (j - 1.5) * 0.06 for r in points]
            ys = [r["acc"] for r in points]
            errors = None
            if all(r["acc_ci_low"] is not None and r["acc_ci_high"] is not None
                   for r in points):
                errors = [[y - r["acc_ci_low"] for y, r in zip(ys, points, strict=True)],
                          [r["acc_ci_high"] - y for y, r in zip(ys, points, strict=True)]]
            ax.errorbar(xs, ys, yerr=errors, marker=markers[variant], capsize=2, linewidth=1.2,
                        elinewidth=0.7, label=variant.replace("_", " "))
        ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
        shots = sorted({r["shots"] for r in rows if r["domain"] == domain})
        if shots:
            ax.set_xticks(shots)
        ax.set_title(domain)
        ax.set_xlabel("shots")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("preference accuracy (95% CI)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- lm-eval


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def check_lm_eval() -> str:
    """The installed lm-eval version, or one clear FspoBenchError: missing, outside the
    supported range (:data:`LMEVAL_REQUIREMENT`), or without the API we call."""
    try:
        version = metadata.version("lm_eval")
    except metadata.PackageNotFoundError:
        raise FspoBenchError(
            f"preference accuracy through lm-eval needs {LMEVAL_REQUIREMENT}: "
            f"pip install '{LMEVAL_REQUIREMENT}' (or 'fspo-bench[lmeval]'); "
            f"--engine backend computes the same numbers without it") from None
    supported = LMEVAL_MIN <= _version_tuple(version) < LMEVAL_BELOW
    if not supported and os.environ.get(ANY_LMEVAL_ENV) != "1":
        raise FspoBenchError(
            f"lm-eval {version} is installed, but fspo-bench's lm-eval tasks support "
            f"{LMEVAL_REQUIREMENT} (the task and model API differs outside it): "
            f"pip install '{LMEVAL_REQUIREMENT}' (set {ANY_LMEVAL_ENV}=1 to try anyway)")
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager

        wanted = {TaskManager: {"include_path", "include_defaults", "metadata"},
                  simple_evaluate: {"model", "tasks", "limit", "task_manager", "log_samples"},
                  HFLM: {"pretrained", "tokenizer", "batch_size", "add_bos_token"}}
        for target, names in wanted.items():
            missing = names - set(inspect.signature(target).parameters)
            if missing:
                raise AttributeError(f"{getattr(target, '__name__', target)} has no parameter "
                                     f"{', '.join(sorted(missing))}")
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise FspoBenchError(
            f"lm-eval {version} does not have the API fspo-bench calls ({detail}); "
            f"supported: {LMEVAL_REQUIREMENT}: pip install '{LMEVAL_REQUIREMENT}'") from None
    return version


def _data_tag(data: str) -> str:
    if data in ("builtin", "hub"):
        return data
    return "file-" + stable_hash(str(Path(data).expanduser().resolve()))[:10]


def docs_path(domain: str, data: str = "builtin", shots: int | None = None,
              seed: int = 0) -> Path:
    """Where the docs of one configuration are written: ``$FSPO_BENCH_HOME/lm_eval/``."""
    from fspo_bench import plugins
    from fspo_bench.embedded import fspo_bench_home

    domain = domain_of(domain)
    n = int(plugins.get("domain", domain).default_shots) if shots is None else int(shots)
    return (fspo_bench_home() / "lm_eval" /
            f"{task_name(domain)}-{_data_tag(data)}-shots{n}-seed{int(seed)}.jsonl")


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise FspoBenchError(f"cannot write {path}: {exc.strerror or exc} "
                             f"(set FSPO_BENCH_HOME to a writable folder)") from None


def materialize_docs(domain: str, data: str = "builtin", shots: int | None = None,
                     seed: int = 0) -> tuple[Path, list[dict[str, Any]]]:
    """Build a domain's docs from our loader and write them (JSONL) where lm-eval reads them.

    When the loader fails (the Hub unreachable, say) and an earlier build of the same
    configuration is on disk, that file is used, with a warning.
    """
    from fspo_bench import plugins
    from fspo_bench.datafiles import DataError

    domain = domain_of(domain)
    if shots is None:
        shots = int(plugins.get("domain", domain).default_shots)
    path = docs_path(domain, data, shots, seed)
    try:
        docs = build_docs(load_domain(domain, data, shots), shots=shots, seed=seed)
    except (DataError, OSError) as exc:
        if not path.is_file():
            raise
        logging.getLogger("fspo_bench").warning(
            "fspo-bench: %s; using the docs built earlier in %s", exc, path)
        lines = path.read_text(encoding="utf-8").splitlines()
        return path, [json.loads(line) for line in lines if line.strip()]
    text = "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n" for d in docs)
    _write_if_changed(path, text)
    return path, docs


def _optional_int(value: Any, name: str) -> int | None:
    if value is None or value == "" or value == "None":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FspoBenchError(f"lm-eval metadata {name!r} must be an integer, "
                             f"got {value!r}") from None


def lmeval_dataset(domain: str, data: str = "builtin", shots: Any = None, seed: Any = 0,
                   **_ignored: Any) -> Any:
    """lm-eval's ``custom_dataset`` hook (tasks/lm_eval/*.yaml): ``{"test": Dataset}``.

    ``domain`` comes from the task's ``dataset_kwargs``; ``data`` (builtin, hub or a file),
    ``shots`` and ``seed`` from lm-eval's metadata (``--metadata '{"shots": 4}'`` on its CLI,
    ``TaskManager(metadata=...)`` from Python). Other metadata keys (model arguments, the
    config's version) are ignored.
    """
    import datasets

    _, docs = materialize_docs(domain, str(data), _optional_int(shots, "shots"),
                               _optional_int(seed, "seed") or 0)
    return {"test": datasets.Dataset.from_list(docs)}


class _DropNoise(logging.Filter):
    """Hide lm-eval's warnings that do not apply when fspo-bench drives it."""

    NOISE = ("Custom kwargs can be passed", "is not of type `str`", "--limit SHOULD ONLY",
             "appears to be an instruct or chat variant", "Passed an already-initialized model")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self.NOISE)


def _on_cuda(device: str | None) -> bool:
    import torch

    return torch.cuda.is_available() and not str(device or "").startswith("cpu")


def lmeval_preference_accuracy(model: Any, *, tokenizer: Any = None,
                               domains: Sequence[str] = DOMAINS, shots: int | None = None,
                               seed: int = 0, limit: int | None = None, data: str = "builtin",
                               batch_size: int = 8, device: str | None = None,
                               dtype: str | None = None, max_length: int | None = None,
                               quiet: bool = True) -> list[dict[str, Any]]:
    """Preference accuracy through lm-eval's Python API, one result per domain.

    ``model`` is an ``HFLM``, a model folder or hub id (loaded by ``HFLM`` without a BOS
    token, the official format, and in our backend's dtype unless ``dtype`` is given), or an
    in-memory transformers or PEFT model (``tokenizer`` required): a just-trained adapter is
    scored without saving it. ``max_length`` overrides lm-eval's context window (it
    left-truncates longer requests; default: the model config's).
    Returns, per domain, what :func:`preference_accuracy` returns, computed from lm-eval's
    per-doc log-likelihoods (``samples``), plus lm-eval's own aggregates ``lmeval_acc`` and
    ``lmeval_acc_norm`` (the same numbers; kept as a check).
    """
    version = check_lm_eval()
    wanted = [domain_of(d) for d in domains]
    from lm_eval import simple_evaluate
    from lm_eval.api.model import LM
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    noise = _DropNoise()
    loggers = [logging.getLogger(n) for n in ("lm_eval", "lm_eval.api.task",
                                              "lm_eval.models.huggingface", "lm_eval.evaluator")]
    for lg in loggers:
        lg.addFilter(noise)
    root = logging.getLogger("lm_eval")
    level = root.level
    if quiet:
        root.setLevel(logging.WARNING)
    try:
        if isinstance(model, LM):
            lm = model
        elif isinstance(model, (str, os.PathLike)):
            if str(model) == "embedded":
                from fspo_bench.embedded import embedded_model_path

                model = embedded_model_path()
            kwargs: dict[str, Any] = {"add_bos_token": False, "batch_size": batch_size}
            if device:
                kwargs["device"] = device
            # as our backend: bf16 on CUDA, fp32 elsewhere (lm-eval's "auto" takes the config's)
            kwargs["dtype"] = dtype or ("bfloat16" if _on_cuda(device) else "float32")
            if max_length:
                kwargs["max_length"] = max_length
            lm = HFLM(pretrained=str(model), tokenizer=tokenizer, **kwargs)
        else:
            if tokenizer is None:
                raise FspoBenchError("an in-memory model needs its tokenizer (tokenizer=...)")
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                      add_bos_token=False, max_length=max_length)
        meta: dict[str, Any] = {"data": data, "seed": seed}
        if shots is not None:
            meta["shots"] = shots
        manager = TaskManager(include_path=str(lmeval_path()), include_defaults=False,
                              metadata=meta)
        missing = [task_name(d) for d in wanted if task_name(d) not in manager.all_tasks]
        if missing:
            raise FspoBenchError(f"lm-eval found no task {', '.join(missing)} in "
                                 f"{lmeval_path()}; our tasks: {', '.join(task_names())}")
        # No global seeding (nothing here is random in lm-eval: the shots are in the docs).
        out = simple_evaluate(model=lm, tasks=[task_name(d) for d in wanted],
                              task_manager=manager, limit=limit, log_samples=True,
                              bootstrap_iters=0, random_seed=None, numpy_random_seed=None,
                              torch_random_seed=None)
    finally:
        for lg in loggers:
            lg.removeFilter(noise)
        root.setLevel(level)
    results = []
    for domain in wanted:
        task = task_name(domain)
        metrics = out["results"][task]
        samples = []
        for s in sorted(out["samples"][task], key=lambda s: s["doc_id"]):
            lls = [float(r[0]) for r in s["filtered_resps"]]
            samples.append(score_doc(s["doc"], lls) | {
                "lmeval_acc": float(s["acc"]), "lmeval_acc_norm": float(s["acc_norm"])})
        summary = summarize(samples, seed=seed)
        n = shots if shots is not None else (samples[0]["n_shots"] if samples else None)
        results.append({
            "domain": domain, "task": task, "engine": "lm-eval", "lm_eval_version": version,
            "shots": n, "seed": seed, "limit": limit, **summary,
            # lm-eval's own numbers (identical to ours by construction; kept as a check)
            "lmeval_acc": metrics.get("acc,none"),
            "lmeval_acc_norm": metrics.get("acc_norm,none"),
            "samples": samples,
        })
    return results


def load_hf_model(model: str, checkpoint: str | None = None, *, device: str | None = None,
                  dtype: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) in memory, as the ``hf`` backend loads them, for ``HFLM``.

    ``model``: ``embedded``, a folder or a hub id. ``checkpoint``: a PEFT adapter folder
    (applied on top) or a full model folder (used instead, with its own tokenizer if it has
    one). Safetensors only; ``dtype`` ``auto`` is bf16 on CUDA and fp32 elsewhere.
    """
    import warnings

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fspo_bench.backends.hf import DTYPES, refuse_pickle_only

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = DTYPES.get(str(dtype).lower())
    if name is None:
        raise FspoBenchError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    if name == "auto":
        name = "bfloat16" if device.startswith("cuda") else "float32"
    torch_dtype = getattr(torch, name)

    def load(source: str, what: str, tokenizer_source: str | None) -> tuple[Any, Any]:
        path = Path(source).expanduser()
        if path.is_dir():
            refuse_pickle_only(path, what)
            source = str(path.resolve())
        try:
            tok = AutoTokenizer.from_pretrained(tokenizer_source or source)
            loaded = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype,
                                                          use_safetensors=True)
        except Exception as exc:
            raise FspoBenchError(f"cannot load {what} {source}: {_one_line(exc)}") from exc
        return loaded, tok

    if model == "embedded":
        from fspo_bench.embedded import embedded_model_path

        model = str(embedded_model_path())
    loaded, tokenizer = load(model, "model", None)
    if checkpoint:
        folder = Path(checkpoint).expanduser()
        if not folder.is_dir():
            raise FspoBenchError(f"cannot load checkpoint {checkpoint}: no such folder")
        refuse_pickle_only(folder, "checkpoint")
        if (folder / "adapter_config.json").is_file():
            from peft import PeftModel

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    loaded = PeftModel.from_pretrained(loaded, str(folder), is_trainable=False)
            except Exception as exc:
                raise FspoBenchError(
                    f"cannot load checkpoint {checkpoint}: {_one_line(exc)}") from exc
        elif (folder / "config.json").is_file():
            own = any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
            loaded, tok = load(str(folder), "checkpoint", None if own else model)
            tokenizer = tok
        else:
            raise FspoBenchError(
                f"cannot load checkpoint {checkpoint}: the folder has neither "
                f"adapter_config.json (a PEFT adapter) nor config.json (a full model)")
    return loaded.to(device).eval(), tokenizer


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
