"""Render the leaderboard DataFrame: Markdown, CSV, JSON and a self-contained static HTML page.

The HTML page fetches nothing: CSS is inline, the plots are matplotlib SVGs inlined as
``data:`` image URIs (an SVG shown through ``<img>`` can run no script), and a Content Security
Policy forbids scripts and external loads altogether. Every piece of model or user text goes
through Jinja2 autoescaping; the template marks nothing from the data ``|safe``.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections import Counter
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from fspo_bench import __version__
from fspo_bench.errors import FspoBenchError

from .build import FAILED_LIMIT, LEAD_COLUMNS, TAIL_COLUMNS, VS_COLUMNS, records

RUN_COLOR = "#1f5fa8"
PAPER_COLOR = "#8a8a8a"


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def interval_text(value: Any, low: Any, high: Any, *, signed: bool = False,
                  missing: str = "") -> str:
    """``72.4 [65.1, 79.0]`` (``+12.3 [+4.0, +20.1]`` when ``signed``); just the value without
    an interval; ``missing`` without a value."""
    v, lo, hi = _num(value), _num(low), _num(high)
    if v is None:
        return missing
    spec = "+.1f" if signed else ".1f"
    if lo is None or hi is None:
        return f"{v:{spec}}"
    return f"{v:{spec}} [{lo:{spec}}, {hi:{spec}}]"


def winrate_text(winrate: Any, low: Any, high: Any) -> str:
    """A winrate with its interval; ``n/a`` without a winrate."""
    return interval_text(winrate, low, high, missing="n/a")


def _fmt(value: Any, digits: int = 1) -> str:
    v = _num(value)
    return "" if v is None else f"{v:.{digits}f}"


def _count(value: Any) -> str:
    v = _num(value)
    return "" if v is None else str(int(v))


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _day(value: Any) -> str:
    return _text(value)[:10]


def signed_text(value: Any, low: Any, high: Any) -> str:
    """A difference in points with its interval; empty without one."""
    return interval_text(value, low, high, signed=True)


#: Marks a row whose method failed more than FAILED_LIMIT percent of its answers.
FAILED_MARK = "\u26a0"
PREFACC_HEADER = "pref. acc. calibrated [95% CI]"
PREFACC_SUMMED_HEADER = "pref. acc. summed"
PREFACC_NORM_HEADER = "pref. acc. norm"
SPECIFICITY_HEADER = "specificity [95% CI]"
CANARY_HEADER = "judge canary pass %"
FAILED_HEADER = "failed answers"


def extra_columns(df) -> list[str]:
    return [c for c in df.columns
            if c not in LEAD_COLUMNS and c not in TAIL_COLUMNS and c not in VS_COLUMNS]


def lc_text(row: dict[str, Any]) -> str:
    """The length-controlled winrate, or ``unreliable`` where the run says it is."""
    if row.get("length_controlled_reliable") is False:
        return "unreliable"
    return _fmt(row["length_controlled_winrate"])


def failed_text(row: dict[str, Any]) -> str:
    """``3 (12.5%)``: the method's failed answers and their share of its answers."""
    if _num(row.get("n_failed")) is None:
        return ""
    share = _num(row.get("failed_share"))
    return _count(row["n_failed"]) + ("" if share is None else f" ({share:.1f}%)")


def prefacc_text(row: dict[str, Any]) -> str:
    """``61.5 [52.1, 70.8]``: calibrated preference accuracy (percent), or empty when the run
    did not measure it."""
    if _num(row.get("prefacc")) is None:
        return ""
    return winrate_text(row["prefacc"], row["prefacc_ci_low"], row["prefacc_ci_high"])


def vs_prefacc_parts(row: dict[str, Any]) -> tuple[str, str]:
    """The ``--vs`` preference-accuracy difference split for the page: ``+3.1 [-1.0, +7.2]``
    and its McNemar p (``0.12``, with ``, summed`` where a run predates calibrated accuracy);
    ``baseline`` on the baseline's own rows."""
    if row.get("vs") is None:
        return "", ""
    if row["method"] == row["vs"]:
        return "baseline", ""
    diff = signed_text(row.get("vs_prefacc_diff"), row.get("vs_prefacc_diff_ci_low"),
                       row.get("vs_prefacc_diff_ci_high"))
    p = _num(row.get("vs_prefacc_mcnemar_p"))
    if not diff or p is None:
        return diff, ""
    kind = "" if row.get("vs_prefacc_kind") == "calibrated" else f", {row['vs_prefacc_kind']}"
    return diff, f"{p:.2g}{kind}"


def vs_texts(row: dict[str, Any]) -> tuple[str, str]:
    """The ``--vs`` columns: paired winrate and preference-accuracy differences (``baseline``
    on the baseline's own rows)."""
    prefacc, p = vs_prefacc_parts(row)
    if row.get("vs") is None or row["method"] == row["vs"]:
        return prefacc, prefacc  # nothing, or "baseline" twice
    winrate = signed_text(row.get("vs_winrate_diff"), row.get("vs_winrate_diff_ci_low"),
                          row.get("vs_winrate_diff_ci_high"))
    return winrate, f"{prefacc} (p {p})" if p else prefacc


def display_rows(df) -> list[dict[str, Any]]:
    """Rows formatted for people (Markdown and HTML), in the DataFrame's order."""
    extras = extra_columns(df)
    out = []
    for row in records(df):
        wlt = (f"{_count(row['n_wins'])}/{_count(row['n_losses'])}/{_count(row['n_ties'])}/"
               f"{_count(row['n_invalid'])}") if row["n_wins"] is not None else ""
        vs_winrate, vs_prefacc = vs_texts(row)
        vs_prefacc_diff, vs_prefacc_p = vs_prefacc_parts(row)
        out.append({
            "source": row["source"],
            "method": row["method"],
            "method_label": row["method_label"],
            "domain": row["domain"],
            "subset": _text(row["subset"]),
            "shots": _count(row["shots"]),
            "model": _text(row["model"]),
            "backend": _text(row["backend"]),
            "judge_id": _text(row["judge_id"]),
            "template_hash": _text(row["template_hash"])[:12],
            "template_hash_full": _text(row["template_hash"]),
            "reference": _text(row["reference"]),
            "winrate": row["winrate"],
            "ci_low": row["ci_low"],
            "ci_high": row["ci_high"],
            "winrate_text": winrate_text(row["winrate"], row["ci_low"], row["ci_high"]),
            "wlti": wlt,
            "failed_text": failed_text(row),
            "failed_flag": bool(row["failed_over_10pct"]),
            "position_consistency": _fmt(row["position_consistency"], 2),
            "judge_canary_pass": _fmt(row["judge_canary_pass"]),
            "length_controlled_winrate": lc_text(row),
            "mean_length": _fmt(row["mean_length"]),
            "n_queries": _count(row["n_queries"]),
            "n_users": _count(row["n_users"]),
            "prefacc_text": prefacc_text(row),
            "prefacc": row["prefacc"],
            "prefacc_ci_low": row["prefacc_ci_low"],
            "prefacc_ci_high": row["prefacc_ci_high"],
            "prefacc_n": _count(row["prefacc_n"]),
            "prefacc_summed": _fmt(row["prefacc_summed"]),
            "prefacc_norm": _fmt(row["prefacc_norm"]),
            "specificity_text": signed_text(row["specificity"], row["specificity_ci_low"],
                                            row["specificity_ci_high"]),
            "vs_winrate_text": vs_winrate,
            "vs_prefacc_text": vs_prefacc,
            "vs_prefacc_diff_text": vs_prefacc_diff,
            "vs_prefacc_p_text": vs_prefacc_p,
            "is_baseline": row.get("vs") is not None and row["method"] == row["vs"],
            "extras": {k: _fmt(row[k], 3) for k in extras},
            "config_hash": _text(row["config_hash"]),
            "package_version": _text(row["package_version"]),
            "date": _day(row["date"]),
            "run_dir": _text(row["run_dir"]),
        })
    return out


#: Optional columns, shown in Markdown and HTML when some row has them: (display key, header).
OPTIONAL = {
    "failed": ("failed_text", FAILED_HEADER),
    "canary": ("judge_canary_pass", CANARY_HEADER),
    "prefacc": ("prefacc_text", PREFACC_HEADER),
    "prefacc_summed": ("prefacc_summed", PREFACC_SUMMED_HEADER),
    "prefacc_norm": ("prefacc_norm", PREFACC_NORM_HEADER),
    "specificity": ("specificity_text", SPECIFICITY_HEADER),
}


def shown(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """Which optional columns some row has a value for."""
    return {name: any(r[key] for r in rows) for name, (key, _) in OPTIONAL.items()}


def vs_method(df) -> str | None:
    """The ``--vs`` baseline method, if the leaderboard was built with one."""
    if "vs" not in df.columns:
        return None
    names = {v for v in df["vs"] if isinstance(v, str)}
    return names.pop() if names else None


def vs_headers(vs: str) -> tuple[str, str]:
    return (f"\u0394 winrate vs {vs} [95% CI]",
            f"\u0394 pref. acc. vs {vs} [95% CI] (McNemar p)")


# --------------------------------------------------------------------------- text formats


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(df, title: str) -> str:
    import pandas as pd

    rows = display_rows(df)
    extras = extra_columns(df)
    with_paper = any(r["source"] == "paper" for r in rows)
    with_subset = any(r["subset"] for r in rows)
    with_ = shown(rows)
    vs = vs_method(df)
    table = []
    for r in rows:
        item: dict[str, str] = {}
        if with_paper:
            item["source"] = r["source"]
        item["method"] = r["method"] if r["source"] == "run" else r["method_label"]
        item["domain"] = r["domain"]
        if with_subset:
            item["subset"] = r["subset"]
        item.update({
            "shots": r["shots"], "model": r["model"], "judge": r["judge_id"],
            "winrate [95% CI]": r["winrate_text"], "W/L/T/invalid": r["wlti"],
        })
        if with_["failed"]:
            item[FAILED_HEADER] = r["failed_text"] + (f" {FAILED_MARK}" if r["failed_flag"] else "")
        item["position consistency"] = r["position_consistency"]
        if with_["canary"]:
            item[CANARY_HEADER] = r["judge_canary_pass"]
        item.update({
            "LC winrate": r["length_controlled_winrate"], "mean length": r["mean_length"],
            "queries": r["n_queries"], "users": r["n_users"],
        })
        for name in ("prefacc", "prefacc_summed", "prefacc_norm", "specificity"):
            if with_[name]:
                key, header = OPTIONAL[name]
                item[header] = r[key]
        if vs is not None:
            item.update(zip(vs_headers(vs), (r["vs_winrate_text"], r["vs_prefacc_text"]),
                            strict=True))
        item.update(r["extras"])
        item.update({"config": r["config_hash"], "version": r["package_version"],
                     "date": r["date"]})
        table.append({k: _md_cell(v) for k, v in item.items()})
    body = pd.DataFrame(table).to_markdown(index=False) if table else "(no rows)"
    notes = [
        "Winrate: % of judged queries on which the judge preferred the method's response over "
        "the reference's (ties count 1/2; the reference scores 50 against itself); 95% CI from a "
        "bootstrap that resamples users. W/L/T/invalid count single-order verdicts.",
        "LC winrate: AlpacaEval's length-controlled winrate (GLM with a tanh length term, no "
        "instruction-difficulty term); `unreliable` where it falls outside AlpacaEval's sanity "
        "band around the winrate (docs/runs.md).",
    ]
    if with_paper:
        notes.append("Rows with source `paper` are the published numbers of the FSPO paper "
                     "(Llama-3.2-3B); they were judged by a different judge and prompt, so "
                     "compare them with care.")
    if with_["failed"]:
        notes.append(f"{FAILED_HEADER}: the method's answers that were empty or broke its "
                     "format, and their share of its answers; they lose without being judged. "
                     f"{FAILED_MARK} marks a method that failed more than {FAILED_LIMIT:g}% of "
                     "its answers in that domain (`failed_over_10pct` in the CSV and JSON).")
    if with_["canary"]:
        notes.append(f"{CANARY_HEADER}: how often the judge passed degenerate-answer canaries "
                     "(empty, echoed question, truncated, repeated token, another user's answer).")
    if with_["prefacc"]:
        notes.append(f"{PREFACC_HEADER}: % of held-out labelled pairs on which the method, "
                     "prompted as it generates, gives the user's chosen response the higher "
                     "calibrated score (its log-probability under the method's prompt minus its "
                     "log-probability under the run's reference method, base: the question "
                     "alone); no judge; 95% CI from a bootstrap that "
                     "resamples users (docs/runs.md).")
    if with_["prefacc_summed"] or with_["prefacc_norm"]:
        notes.append(f"{PREFACC_SUMMED_HEADER} / {PREFACC_NORM_HEADER}: the same test with "
                     "summed log-probabilities / log-probabilities per character (lm-eval's "
                     "acc_norm), uncalibrated: more a length test than a personalization one. "
                     "Runs from before calibrated accuracy have only these.")
    if with_["specificity"]:
        notes.append(f"{SPECIFICITY_HEADER}: how much the method's preference accuracy depends "
                     "on the user's own shots rather than another user's, in points "
                     "(docs/runs.md).")
    if vs is not None:
        notes.append(f"\u0394 vs {vs}: paired difference from the `{vs}` row of the same domain, "
                     "model and judge, in points: winrate over the common judged queries, "
                     "preference accuracy over the common pairs, each with a 95% CI from a "
                     "bootstrap that resamples users, and McNemar's exact p for preference "
                     "accuracy (`summed` where a run predates calibrated accuracy).")
    if extras:
        notes.append("Extra metric columns: " + ", ".join(f"`{e}`" for e in extras) + ".")
    return f"# {_md_cell(title)}\n\n{body}\n\n" + "\n\n".join(notes) + "\n"


def csv_text(df) -> str:
    return df.to_csv(index=False, lineterminator="\n")


def json_text(df) -> str:
    """leaderboard.json: the rows as a JSON array of records (``pandas.read_json`` reads it as
    the table in one call)."""
    return json.dumps(records(df), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def meta_json_text(df, title: str, generated: str) -> str:
    """leaderboard.meta.json: what the table is, beside it."""
    document = {
        "title": title,
        "generated": generated,
        "generator": f"fspo-bench {__version__}",
        "columns": list(df.columns),
        "scale": "shares (winrate, prefacc, failed_share, judge_canary_pass, ...) in percent "
                 "0-100; differences and specificity in percentage points",
        "recompute": "each row with source 'run' names its run directory (run_dir, relative "
                     "to this folder); its judgments.jsonl and generations.jsonl reproduce the "
                     "row (docs/runs.md)",
    }
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# --------------------------------------------------------------------------- plots


def _plot_label(row: dict[str, Any], vary_model: bool, vary_judge: bool) -> str:
    if row["source"] == "paper":
        shots = f"{row['shots']}-shot" if row["shots"] else ""
        if shots and row["method_label"].startswith(shots):
            shots = ""
        detail = ", ".join(x for x in (row["subset"], shots) if x)
        return f"paper: {row['method_label']}" + (f" ({detail})" if detail else "")
    label = row["method"]
    details = []
    if vary_model:
        details.append(row["model"])
    if vary_judge:
        details.append(row["judge_id"])
    return label + (f" ({'; '.join(details)})" if details else "")


def _interval_plot(items: list[dict[str, Any]], *, xlabel: str, line_label: str,
                   title: str, missing: str = "no value") -> str:
    """A horizontal dot plot on 0-100 (error bars = 95% CI; a dashed line at 50) as a
    ``data:image/svg+xml;base64,...`` URI. ``items``: label, value (None: the row's label
    is followed by ``missing``), low, high, paper."""
    try:
        import matplotlib
    except ImportError as exc:
        raise FspoBenchError("the leaderboard's plots need matplotlib: pip install matplotlib"
                             ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height = 0.9 + 0.36 * len(items)
    with plt.rc_context({"svg.hashsalt": "fspo-bench", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(6.4, height))
        try:
            ax.axvline(50, color="#444444", linestyle="--", linewidth=1, zorder=1)
            ax.text(50, -0.75, f" {line_label}", color="#444444", fontsize=8, va="bottom",
                    ha="left")
            for y, item in enumerate(items):
                w = _num(item["value"])
                paper = item["paper"]
                color = PAPER_COLOR if paper else RUN_COLOR
                if w is None:
                    ax.text(1, y, missing, va="center", ha="left", fontsize=8,
                            color=PAPER_COLOR, style="italic")
                    continue
                lo, hi = _num(item["low"]), _num(item["high"])
                if lo is not None and hi is not None:
                    ax.errorbar(w, y, xerr=[[max(w - lo, 0)], [max(hi - w, 0)]], fmt="none",
                                ecolor=color, elinewidth=1.5, capsize=4, zorder=2)
                ax.plot(w, y, marker="D" if paper else "o", markersize=6.5, color=color,
                        markerfacecolor="white" if paper else color, linestyle="none",
                        zorder=3)
                ax.annotate(f"{w:.1f}", (hi if hi is not None else w, y), xytext=(6, 0),
                            textcoords="offset points", va="center", fontsize=8, color=color,
                            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white",
                                  "edgecolor": "none"}, zorder=4)
            ax.set_yticks(range(len(items)), [item["label"] for item in items])
            ax.set_ylim(len(items) - 0.5, -1)
            ax.set_xlim(0, 100)
            ax.set_xlabel(xlabel)
            ax.grid(axis="x", color="#e4e4e4", linewidth=0.8, zorder=0)
            ax.set_axisbelow(True)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="svg", metadata={"Date": None, "Title": title})
        finally:
            plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _labels(rows: list[dict[str, Any]]) -> list[str]:
    runs = [r for r in rows if r["source"] == "run"]
    vary_model = len({r["model"] for r in runs}) > 1
    vary_judge = len({r["judge_id"] for r in runs}) > 1
    return [_plot_label(r, vary_model, vary_judge) for r in rows]


def plot_data_uri(rows: list[dict[str, Any]], domain: str) -> str | None:
    """A horizontal winrate plot for one domain (error bars = 95% CI; dashed line at 50 = the
    reference), as a ``data:image/svg+xml;base64,...`` URI; None if no row has a winrate."""
    rows = [r for r in rows if _num(r["winrate"]) is not None]
    if not rows:
        return None
    items = [{"label": label, "value": r["winrate"], "low": r["ci_low"], "high": r["ci_high"],
              "paper": r["source"] == "paper"} for label, r in zip(_labels(rows), rows,
                                                                   strict=True)]
    return _interval_plot(items, xlabel="winrate vs reference (%), 95% CI",
                          line_label="reference = 50", title=f"winrate on {domain}")


def prefacc_plot_data_uri(rows: list[dict[str, Any]], domain: str) -> str | None:
    """The calibrated preference accuracy of one domain's run rows (error bars = 95% CI;
    dashed line at 50 = chance), in the rows' order, rows without it marked so;
    None if no row has it."""
    rows = [r for r in rows if r["source"] == "run"]
    if not any(_num(r["prefacc"]) is not None for r in rows):
        return None
    items = [{"label": label, "value": r["prefacc"], "low": r["prefacc_ci_low"],
              "high": r["prefacc_ci_high"], "paper": False}
             for label, r in zip(_labels(rows), rows, strict=True)]
    return _interval_plot(items, xlabel="preference accuracy, calibrated (%), 95% CI",
                          line_label="chance = 50", missing="no calibrated value",
                          title=f"calibrated preference accuracy on {domain}")


# --------------------------------------------------------------------------- HTML


def _environment():
    try:
        import jinja2
    except ImportError as exc:
        raise FspoBenchError("the leaderboard's HTML page needs Jinja2: pip install jinja2"
                             ) from exc

    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def _one(values: list[Any]) -> Any:
    """The value every row shares, or None when they differ (or there are none)."""
    distinct = list(dict.fromkeys(values))
    return distinct[0] if len(distinct) == 1 else None


def domain_identity(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What a domain's run rows share, said once above its tables: the judge (id and template
    hash), the model, the reference and the shots. A value is None where the rows differ, and
    the table then gets a column for it. Paper rows (their judge unpublished) are left out when
    the domain has run rows."""
    runs = [r for r in rows if r["source"] == "run"] or rows
    judge_id, template_hash = _one([(r["judge_id"], r["template_hash_full"]) for r in runs]
                                   ) or (None, None)
    return {
        "judge_id": judge_id,
        "template_hash": template_hash,
        "model": _one([r["model"] for r in runs]),
        "reference": _one([r["reference"] for r in runs]),
        "shots": _one([r["shots"] for r in runs]),
        "n_runs": len(runs),
    }


def html(df, sample_sets: list[dict[str, Any]], *, title: str, generated: str,
         max_samples: int) -> str:
    rows = display_rows(df)
    extras = extra_columns(df)
    vs = vs_method(df)
    anchors: dict[tuple[str, str], str] = {}
    for number, s in enumerate(sample_sets):
        s["anchor"] = f"samples-{number}"
        anchors.setdefault((s["method"], s["domain"], s["config_hash"]), s["anchor"])
    domains = []
    for number, domain in enumerate(dict.fromkeys(r["domain"] for r in rows)):
        domain_rows = [r for r in rows if r["domain"] == domain]
        for r in domain_rows:
            r["samples_anchor"] = anchors.get((r["method"], r["domain"], r["config_hash"]))
        with_ = shown(domain_rows)
        identity = domain_identity(domain_rows)
        domains.append({
            "name": domain,
            "anchor": f"domain-{number}",
            "rows": domain_rows,
            "with_subset": any(r["subset"] for r in domain_rows),
            "with_paper": any(r["source"] == "paper" for r in domain_rows),
            "with_": with_,
            "with_prefacc_table": any(with_[name] for name in (
                "prefacc", "prefacc_summed", "prefacc_norm", "specificity")),
            "with_vs_p": any(r["vs_prefacc_p_text"] for r in domain_rows),
            "identity": identity,
            "plot": plot_data_uri(domain_rows, domain),
            "prefacc_plot": prefacc_plot_data_uri(domain_rows, domain),
        })
    for s in sample_sets:
        for q in s["samples"]:
            # Statuses and the reference's raw text come from build.samples where it gives them.
            for key in ("method_status", "reference_status", "reference_raw"):
                q.setdefault(key, None)
        statuses = Counter(q["method_status"] for q in s["samples"]
                           if q["method_status"] is not None)
        s["status_counts"] = sorted(statuses.items(), key=lambda kv: (kv[0] != "ok", kv[0]))
    template = (resources.files("fspo_bench.leaderboard") / "templates" / "index.html.j2")
    return _environment().from_string(template.read_text(encoding="utf-8")).render(
        title=title,
        generated=generated,
        generator=f"fspo-bench {__version__}",
        domains=domains,
        extras=extras,
        with_=shown(rows),
        headers={name: header for name, (_, header) in OPTIONAL.items()},
        vs=vs,
        vs_headers=vs_headers(vs) if vs else (),
        failed_mark=FAILED_MARK,
        failed_limit=f"{FAILED_LIMIT:g}",
        sample_sets=sample_sets,
        max_samples=max_samples,
        n_runs=len({r["run_dir"] for r in rows if r["source"] == "run"}),
    )


def render_all(df, sample_sets: list[dict[str, Any]], *, title: str,
               max_samples: int) -> dict[str, str]:
    """The output files, by name."""
    generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return {
        "leaderboard.md": markdown(df, title),
        "leaderboard.csv": csv_text(df),
        "leaderboard.json": json_text(df),
        "leaderboard.meta.json": meta_json_text(df, title, generated),
        "index.html": html(df, sample_sets, title=title, generated=generated,
                           max_samples=max_samples),
    }
