"""Markdown reports and plots for stages and runs (pure functions; the Prefect layer publishes them).

* ``stage_markdown``: one stage's manifest as a table (documents in/out, each drop reason with its share,
  tokens, throughput, time, skipped?).
* ``loss_curve_png`` / ``eval_delta_png``: the training loss (learning rate on a twin axis) and base vs trained
  bars, drawn with matplotlib's object API on an Agg canvas: no pyplot global state, no display needed, safe
  in worker threads.
* ``run_markdown``: the final report of a run: per-stage table, base vs trained with deltas, the promotion
  decision and its reasons, warnings, and the images by relative path (they sit next to the report).
* ``write_report``: atomic write, so a reader (or the Prefect UI) never sees half a report.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from cpt_core.io import atomic_write_text

logger = logging.getLogger(__name__)

LOSS_PNG = "loss_curve.png"
EVAL_PNG = "eval_delta.png"


# --------------------------------------------------------------------------------------------- formatting


def fmt(value) -> str:
    """Numbers for humans: thousands separators for ints, 4 significant digits for floats."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.2f}%"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _rate_keys(summary: dict) -> list[str]:
    return [k for k in summary if k.endswith(("_per_s", "_per_second")) or k in ("rate", "throughput")]


# --------------------------------------------------------------------------------------------- stages


def stage_markdown(title: str, manifest: dict) -> str:
    """One stage's report: its summary counts as a table, then its log line and identity."""
    summary = manifest.get("summary") or {}
    rows: list[list[str]] = []
    docs_in = summary.get("docs_in")
    for key in ("docs_in", "docs_out"):
        if key in summary:
            rows.append([key.replace("_", " "), fmt(summary[key]), ""])
    dropped = summary.get("dropped") or {}
    for reason, count in sorted(dropped.items(), key=lambda kv: -kv[1]):
        share = f"{100 * count / docs_in:.1f}%" if docs_in else ""
        rows.append([f"dropped: {reason}", fmt(count), share])
    shown = {"docs_in", "docs_out", "dropped", "log_line", "seconds"}
    rates = _rate_keys(summary)
    for key in sorted(k for k in summary if "token" in k and k not in shown):
        rows.append([key.replace("_", " "), fmt(summary[key]), ""])
        shown.add(key)
    for key in rates:
        rows.append([key.replace("_", " "), fmt(summary[key]), ""])
        shown.add(key)
    for key, value in summary.items():
        if key in shown or isinstance(value, (dict, list)):
            continue
        rows.append([key.replace("_", " "), fmt(value), ""])
    seconds = summary.get("seconds", manifest.get("seconds"))
    rows.append(["seconds", fmt(seconds), ""])
    rows.append(["skipped (output was up to date)", fmt(bool(manifest.get("skipped"))), ""])
    parts = [f"## {title}", "", _table(["", "count", "share"], rows)]
    if summary.get("log_line"):
        parts += ["", summary["log_line"]]
    ident = [f"{k} `{manifest[k]}`" for k in ("key", "config_hash", "code_version") if manifest.get(k)]
    if ident:
        parts += ["", "<sub>" + ", ".join(ident) + "</sub>"]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------- plots


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: Path) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.stem}.{os.getpid()}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, format="png")
    os.replace(tmp, out_png)
    return out_png


def read_metrics(metrics_jsonl: Path) -> tuple[list[dict], int]:
    """Rows of a training ``metrics.jsonl`` that carry a loss, and the count of unreadable lines (a line
    being written when we read is expected; it is counted, not fatal)."""
    rows, bad = [], 0
    with open(metrics_jsonl, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            loss = row.get("loss", row.get("train_loss")) if isinstance(row, dict) else None
            if isinstance(loss, (int, float)):
                rows.append({**row, "loss": float(loss)})
    return rows, bad


def loss_curve_png(metrics_jsonl: Path, out_png: Path) -> Path:
    """Training loss against step, learning rate on a twin axis. Rows need ``loss`` (or ``train_loss``),
    and ``step`` (else their order); ``lr`` is optional."""
    metrics_jsonl = Path(metrics_jsonl)
    if not metrics_jsonl.exists():
        raise FileNotFoundError(f"training metrics {metrics_jsonl} do not exist")
    rows, bad = read_metrics(metrics_jsonl)
    fig = _figure(7, 4)
    ax = fig.add_subplot(1, 1, 1)
    title = "training loss"
    if bad:
        title += f" ({bad} unreadable lines skipped)"
        logger.warning("%s: %d unreadable lines skipped", metrics_jsonl, bad)
    if not rows:
        logger.warning("%s holds no loss values: the loss curve is empty", metrics_jsonl)
        ax.text(0.5, 0.5, f"no loss values in {metrics_jsonl.name}", ha="center", va="center")
    else:
        steps = [r.get("step", i) for i, r in enumerate(rows)]
        ax.plot(steps, [r["loss"] for r in rows], color="tab:blue", label="loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss", color="tab:blue")
        lrs = [
            (s, r["lr"]) for s, r in zip(steps, rows, strict=True) if isinstance(r.get("lr"), (int, float))
        ]
        if lrs:
            twin = ax.twinx()
            twin.plot([s for s, _ in lrs], [lr for _, lr in lrs], color="tab:orange", linestyle="--")
            twin.set_ylabel("learning rate", color="tab:orange")
            twin.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.grid(alpha=0.3)
    ax.set_title(title)
    return _save(fig, out_png)


def eval_delta_png(results: dict, out_png: Path) -> Path:
    """Bars of base vs trained for domain bpb, general bpb and (when it ran) fact-probe accuracy."""
    base, trained = results.get("base") or {}, results.get("trained") or {}
    delta = results.get("delta") or {}
    points = delta.get("probe_acc_points")
    panels = [
        (f"domain bits/byte {_pct(delta.get('domain_bpb_rel'))}\n(lower is better)", "domain_bpb"),
        (f"general bits/byte {_pct(delta.get('general_bpb_rel'))}\n(lower is better)", "general_bpb"),
    ]
    if base.get("probe_acc") is not None and trained.get("probe_acc") is not None:
        change = "" if points is None else f"{100 * points:+.1f} points"
        panels.append((f"fact-probe accuracy {change}\n(higher is better)", "probe_acc"))
    fig = _figure(3.6 * len(panels), 3.8)
    for i, (title, key) in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), i)
        values = [base.get(key), trained.get(key)]
        heights = [v if isinstance(v, (int, float)) and not math.isnan(v) else 0.0 for v in values]
        bars = ax.bar(["base", "trained"], heights, color=["tab:gray", "tab:green"])
        for bar, value in zip(bars, values, strict=True):
            ax.annotate(
                fmt(value),
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=9,
            )
        if key == "probe_acc":
            ax.set_ylim(0, 1.1)
        else:
            ax.set_ylim(0, max(heights + [1e-9]) * 1.15)
        ax.set_title(title, fontsize=9)
    return _save(fig, out_png)


# --------------------------------------------------------------------------------------------- run report


def _stage_row(name: str, manifest: dict) -> list[str]:
    summary = manifest.get("summary") or {}
    if "docs_in" in summary or "docs_out" in summary:
        into, out = fmt(summary.get("docs_in")) + " docs", fmt(summary.get("docs_out")) + " docs"
    else:
        # Token stages name their count differently (tokens, train_tokens, tokens_seen): take the first.
        key = next((k for k in ("tokens", "train_tokens", "tokens_out") if k in summary), None)
        key = key or next((k for k in summary if "tokens" in k and isinstance(summary[k], int)), None)
        if key is not None:
            into, out = "—", fmt(summary[key]) + " tokens"
        elif isinstance(summary.get("steps"), int):
            into, out = "—", fmt(summary["steps"]) + " steps"
        else:
            into, out = "—", "—"
    seconds = summary.get("seconds", manifest.get("seconds"))
    status = "skipped (up to date)" if manifest.get("skipped") else "ran"
    note = summary.get("log_line", "")
    return [name, into, out, fmt(seconds) + " s" if seconds is not None else "—", status, fmt(note)]


def _f(value, digits: int) -> str:
    """Fixed decimals, so a column of bits/byte lines up (``fmt`` would print 1.0 as ``1``)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return "—"
    return f"{value:.{digits}f}"


def _eval_rows(results: dict) -> list[list[str]]:
    base, trained = results.get("base") or {}, results.get("trained") or {}
    delta = results.get("delta") or {}
    rows = [
        [
            "domain bits/byte",
            _f(base.get("domain_bpb"), 4),
            _f(trained.get("domain_bpb"), 4),
            _pct(delta.get("domain_bpb_rel")),
        ],
        [
            "general bits/byte",
            _f(base.get("general_bpb"), 4),
            _f(trained.get("general_bpb"), 4),
            _pct(delta.get("general_bpb_rel")),
        ],
    ]
    by_base = (base.get("domain") or {}).get("by_language") or {}
    by_trained = (trained.get("domain") or {}).get("by_language") or {}
    for language in sorted(set(by_base) & set(by_trained)):
        b, t = by_base[language]["bpb"], by_trained[language]["bpb"]
        rows.append([f"domain bits/byte [{language}]", _f(b, 4), _f(t, 4), _pct((t - b) / b if b else None)])
    if base.get("probe_acc") is not None or trained.get("probe_acc") is not None:
        points = delta.get("probe_acc_points")
        rows.append(
            [
                "fact-probe accuracy",
                _f(base.get("probe_acc"), 3),
                _f(trained.get("probe_acc"), 3),
                "—" if points is None else f"{100 * points:+.1f} points",
            ]
        )
    for task in sorted(set(base.get("tasks") or {}) & set(trained.get("tasks") or {})):
        for metric, value in sorted(trained["tasks"][task].items()):
            old = base["tasks"][task].get(metric)
            change = f"{value - old:+.4f}" if isinstance(old, (int, float)) else "—"
            rows.append([f"{task} {metric}", _f(old, 4), _f(value, 4), change])
    return rows


def _probe_changes(results: dict) -> list[str]:
    base = ((results.get("base") or {}).get("probe") or {}).get("per_item") or []
    trained = ((results.get("trained") or {}).get("probe") or {}).get("per_item") or []
    before = {item["id"]: item["correct"] for item in base}
    learned = [i["id"] for i in trained if i["correct"] and not before.get(i["id"], False)]
    lost = [i["id"] for i in trained if not i["correct"] and before.get(i["id"], False)]
    if not trained:
        return []

    def listed(ids: list[str]) -> str:
        return ", ".join(f"`{i}`" for i in ids[:30]) + (f" and {len(ids) - 30} more" if len(ids) > 30 else "")

    lines = [f"- answered right by the trained model: {sum(i['correct'] for i in trained)} of {len(trained)}"]
    if learned:
        lines.append(f"- learned ({len(learned)}): {listed(learned)}")
    if lost:
        lines.append(f"- forgotten ({len(lost)}): {listed(lost)}")
    return lines


def run_markdown(
    run_id: str,
    stages: dict[str, dict],
    results: dict,
    decision: dict,
    base_model: str,
    notes: list[str],
    images: dict[str, str] | None = None,
) -> str:
    """The final report of a run.

    ``images`` maps a caption to a path relative to the report; by default the loss curve is linked when a
    ``train`` stage is listed and the eval bars when there are results (``write_run_report`` draws both
    next to the report under these names).
    """
    if images is None:
        images = {}
        if "train" in stages:
            images["Training loss"] = LOSS_PNG
        if results:
            images["Base vs trained"] = EVAL_PNG
    parts = [f"# Run `{run_id}`", "", f"Started from: `{base_model}`", ""]
    if notes:
        parts += ["## Warnings", ""] + [f"- **Warning:** {note}" for note in notes] + [""]
    parts += ["## Stages", ""]
    parts.append(
        _table(
            ["stage", "in", "out", "time", "status", "summary"],
            [_stage_row(name, m) for name, m in stages.items()],
        )
    )
    parts += ["", "## Base vs trained", ""]
    if results:
        parts.append(_table(["metric", "base", "trained", "change"], _eval_rows(results)))
        parts += ["", "bits/byte: lower is better; change is relative. Probe accuracy change is in points."]
        changes = _probe_changes(results)
        if changes:
            parts += ["", "Fact probe:", ""] + changes
    else:
        parts.append("No evaluation results.")
    parts += ["", "## Decision", ""]
    if decision:
        verdict = "**Promoted** to champion" if decision.get("promote") else "**Not promoted**"
        if decision.get("outcome") == "nothing_new":
            verdict = "**Nothing new**: no training, no evaluation, nothing to promote"
        parts += [verdict, ""] + [f"- {fmt(reason)}" for reason in decision.get("reasons", [])]
    else:
        parts.append("No promotion decision was made.")
    if images:
        parts += ["", "## Plots", ""] + [f"![{caption}]({path})" for caption, path in images.items()]
    return "\n".join(parts) + "\n"


def write_report(folder: Path, name: str, markdown: str) -> Path:
    """Write ``folder/name`` atomically and return its path."""
    path = Path(folder) / name
    atomic_write_text(path, markdown)
    return path
