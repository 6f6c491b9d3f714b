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
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from fspo_bench import __version__
from fspo_bench.errors import FspoBenchError

from .build import LEAD_COLUMNS, TAIL_COLUMNS, records

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


def winrate_text(winrate: Any, low: Any, high: Any) -> str:
    """``72.4 [65.1, 79.0]``; just ``72.4`` without an interval; ``n/a`` without a winrate."""
    w, lo, hi = _num(winrate), _num(low), _num(high)
    if w is None:
        return "n/a"
    if lo is None or hi is None:
        return f"{w:.1f}"
    return f"{w:.1f} [{lo:.1f}, {hi:.1f}]"


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


#: A run's preference accuracy (``--prefacc``) shows as one column, in percent with its interval.
PREFACC_KEYS = ("prefacc", "prefacc_ci_low", "prefacc_ci_high", "prefacc_n")
PREFACC_HEADER = "pref. acc. [95% CI]"


def extra_columns(df) -> list[str]:
    return [c for c in df.columns
            if c not in LEAD_COLUMNS and c not in TAIL_COLUMNS and c not in PREFACC_KEYS]


def _percent(value: Any) -> float | None:
    number = _num(value)
    return None if number is None else 100 * number


def prefacc_text(row: dict[str, Any]) -> str:
    """``61.5 [52.1, 70.8]`` (percent) or empty when the run did not measure it."""
    if _num(row.get("prefacc")) is None:
        return ""
    return winrate_text(*(_percent(row.get(k)) for k in PREFACC_KEYS[:3]))


def display_rows(df) -> list[dict[str, Any]]:
    """Rows formatted for people (Markdown and HTML), in the DataFrame's order."""
    extras = extra_columns(df)
    out = []
    for row in records(df):
        wlt = (f"{_count(row['n_wins'])}/{_count(row['n_losses'])}/{_count(row['n_ties'])}/"
               f"{_count(row['n_invalid'])}") if row["n_wins"] is not None else ""
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
            "winrate": row["winrate"],
            "ci_low": row["ci_low"],
            "ci_high": row["ci_high"],
            "winrate_text": winrate_text(row["winrate"], row["ci_low"], row["ci_high"]),
            "wlti": wlt,
            "position_consistency": _fmt(row["position_consistency"], 2),
            "length_controlled_winrate": _fmt(row["length_controlled_winrate"]),
            "mean_length": _fmt(row["mean_length"]),
            "n_queries": _count(row["n_queries"]),
            "n_users": _count(row["n_users"]),
            "prefacc_text": prefacc_text(row),
            "extras": {k: _fmt(row[k], 3) for k in extras},
            "config_hash": _text(row["config_hash"]),
            "package_version": _text(row["package_version"]),
            "date": _day(row["date"]),
            "run_dir": _text(row["run_dir"]),
        })
    return out


# --------------------------------------------------------------------------- text formats


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(df, title: str) -> str:
    import pandas as pd

    rows = display_rows(df)
    extras = extra_columns(df)
    with_paper = any(r["source"] == "paper" for r in rows)
    with_subset = any(r["subset"] for r in rows)
    with_prefacc = any(r["prefacc_text"] for r in rows)
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
            "position consistency": r["position_consistency"],
            "LC winrate": r["length_controlled_winrate"], "mean length": r["mean_length"],
            "queries": r["n_queries"], "users": r["n_users"],
        })
        if with_prefacc:
            item[PREFACC_HEADER] = r["prefacc_text"]
        item.update(r["extras"])
        item.update({"config": r["config_hash"], "version": r["package_version"],
                     "date": r["date"]})
        table.append({k: _md_cell(v) for k, v in item.items()})
    body = pd.DataFrame(table).to_markdown(index=False) if table else "(no rows)"
    notes = [
        "Winrate: % of judged queries on which the judge preferred the method's response over "
        "the reference's (ties count 1/2; the reference scores 50 against itself); 95% CI from a "
        "bootstrap that resamples users. W/L/T/invalid count single-order verdicts.",
    ]
    if with_paper:
        notes.append("Rows with source `paper` are the published numbers of the FSPO paper "
                     "(Llama-3.2-3B); they were judged by a different judge and prompt, so "
                     "compare them with care.")
    if with_prefacc:
        notes.append(f"{PREFACC_HEADER}: % of held-out labelled pairs on which the method, "
                     "prompted as it generates, gives the user's chosen response a higher "
                     "summed log-probability than the rejected one (no judge; 95% CI from a "
                     "bootstrap that resamples users; docs/runs.md).")
    if extras:
        notes.append("Extra metric columns: " + ", ".join(f"`{e}`" for e in extras) + ".")
    return f"# {_md_cell(title)}\n\n{body}\n\n" + "\n\n".join(notes) + "\n"


def csv_text(df) -> str:
    return df.to_csv(index=False, lineterminator="\n")


def json_text(df, title: str, generated: str) -> str:
    document = {
        "title": title,
        "generated": generated,
        "generator": f"fspo-bench {__version__}",
        "columns": list(df.columns),
        "recompute": "each row with source 'run' names its run directory (run_dir); its "
                     "judgments.jsonl and generations.jsonl reproduce the row (docs/runs.md)",
        "rows": records(df),
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


def plot_data_uri(rows: list[dict[str, Any]], domain: str) -> str | None:
    """A horizontal winrate plot for one domain (error bars = 95% CI; dashed line at 50 = the
    reference), as a ``data:image/svg+xml;base64,...`` URI; None if no row has a winrate."""
    rows = [r for r in rows if _num(r["winrate"]) is not None]
    if not rows:
        return None
    try:
        import matplotlib
    except ImportError as exc:
        raise FspoBenchError("the leaderboard's plots need matplotlib: pip install matplotlib"
                             ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in rows if r["source"] == "run"]
    vary_model = len({r["model"] for r in runs}) > 1
    vary_judge = len({r["judge_id"] for r in runs}) > 1
    labels = [_plot_label(r, vary_model, vary_judge) for r in rows]
    height = 0.9 + 0.36 * len(rows)
    with plt.rc_context({"svg.hashsalt": "fspo-bench", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(7.5, height))
        try:
            ax.axvline(50, color="#444444", linestyle="--", linewidth=1, zorder=1)
            ax.text(50, -0.75, " base = 50", color="#444444", fontsize=8, va="bottom",
                    ha="left")
            for y, row in enumerate(rows):
                w = _num(row["winrate"])
                lo, hi = _num(row["ci_low"]), _num(row["ci_high"])
                paper = row["source"] == "paper"
                color = PAPER_COLOR if paper else RUN_COLOR
                if lo is not None and hi is not None:
                    ax.errorbar(w, y, xerr=[[max(w - lo, 0)], [max(hi - w, 0)]], fmt="none",
                                ecolor=color, elinewidth=1.5, capsize=4, zorder=2)
                ax.plot(w, y, marker="D" if paper else "o", markersize=6.5, color=color,
                        markerfacecolor="white" if paper else color, linestyle="none",
                        zorder=3)
                ax.annotate(f"{w:.1f}", (hi if hi is not None else w, y), xytext=(6, 0),
                            textcoords="offset points", va="center", fontsize=8, color=color)
            ax.set_yticks(range(len(rows)), labels)
            ax.set_ylim(len(rows) - 0.5, -1)
            ax.set_xlim(0, 100)
            ax.set_xlabel("winrate vs reference (%), 95% CI")
            ax.grid(axis="x", color="#e4e4e4", linewidth=0.8, zorder=0)
            ax.set_axisbelow(True)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="svg",
                        metadata={"Date": None, "Title": f"winrate on {domain}"})
        finally:
            plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- HTML


def _environment():
    try:
        import jinja2
    except ImportError as exc:
        raise FspoBenchError("the leaderboard's HTML page needs Jinja2: pip install jinja2"
                             ) from exc

    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def html(df, sample_sets: list[dict[str, Any]], *, title: str, generated: str,
         max_samples: int) -> str:
    rows = display_rows(df)
    extras = extra_columns(df)
    anchors: dict[tuple[str, str], str] = {}
    for number, s in enumerate(sample_sets):
        s["anchor"] = f"samples-{number}"
        anchors.setdefault((s["method"], s["domain"], s["config_hash"]), s["anchor"])
    domains = []
    for number, domain in enumerate(dict.fromkeys(r["domain"] for r in rows)):
        domain_rows = [r for r in rows if r["domain"] == domain]
        for r in domain_rows:
            r["samples_anchor"] = anchors.get((r["method"], r["domain"], r["config_hash"]))
        domains.append({
            "name": domain,
            "anchor": f"domain-{number}",
            "rows": domain_rows,
            "with_subset": any(r["subset"] for r in domain_rows),
            "with_paper": any(r["source"] == "paper" for r in domain_rows),
            "plot": plot_data_uri(domain_rows, domain),
        })
    template = (resources.files("fspo_bench.leaderboard") / "templates" / "index.html.j2")
    return _environment().from_string(template.read_text(encoding="utf-8")).render(
        title=title,
        generated=generated,
        generator=f"fspo-bench {__version__}",
        domains=domains,
        extras=extras,
        with_prefacc=any(r["prefacc_text"] for r in rows),
        prefacc_header=PREFACC_HEADER,
        sample_sets=sample_sets,
        max_samples=max_samples,
        n_runs=len({r["run_dir"] for r in rows if r["source"] == "run"}),
    )


def render_all(df, sample_sets: list[dict[str, Any]], *, title: str,
               max_samples: int) -> dict[str, str]:
    """The four output files, by name."""
    generated = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return {
        "leaderboard.md": markdown(df, title),
        "leaderboard.csv": csv_text(df),
        "leaderboard.json": json_text(df, title, generated),
        "index.html": html(df, sample_sets, title=title, generated=generated,
                           max_samples=max_samples),
    }
