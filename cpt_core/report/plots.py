"""Plots for run reports: the training loss curve and base-vs-trained evaluation bars, as PNG files.

Drawn with matplotlib's object API on an Agg canvas: no pyplot global state, no display needed, safe in
worker threads. Each PNG is written under a temporary name and renamed, so a reader never sees half an image.

* ``loss_curve_png``: training loss against step, the learning rate on a twin axis.
* ``eval_delta_png``: base vs trained bars for domain bpb, general bpb and (when it ran) fact-probe accuracy.
* ``docs_per_stage_png``: documents kept after each document stage (crawl, extract, curate steps): the funnel.
* ``language_funnel_png``: documents kept per language after each curation step, stacked.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from cpt_core.io import atomic_file
from cpt_core.report.markdown import fmt, pct

logger = logging.getLogger(__name__)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: Path) -> Path:
    out_png = Path(out_png)
    fig.tight_layout()
    with atomic_file(out_png) as tmp:
        fig.savefig(tmp, format="png")
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


def smoothed(values: list[float], weight: float = 0.9) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first points are not pulled
    toward zero."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


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
        losses = [r["loss"] for r in rows]
        ax.plot(steps, losses, color="tab:blue", alpha=0.35, label="loss")
        ax.plot(steps, smoothed(losses), color="tab:blue", label="loss (smoothed)")
        ax.legend(loc="upper right")
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
        (f"domain bits/byte {pct(delta.get('domain_bpb_rel'))}\n(lower is better)", "domain_bpb"),
        (f"general bits/byte {pct(delta.get('general_bpb_rel'))}\n(lower is better)", "general_bpb"),
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



def docs_per_stage_png(stages: dict[str, dict], out_png: Path) -> Path | None:
    """Horizontal bars of the documents each stage kept (``summary.docs_out``), in pipeline order; None when
    no stage counts documents."""
    rows = [(name, (m.get("summary") or {}).get("docs_out")) for name, m in stages.items()]
    rows = [(name, n) for name, n in rows if isinstance(n, int)]
    if not rows:
        return None
    fig = _figure(6.0, 0.5 * len(rows) + 1.2)
    ax = fig.add_subplot(1, 1, 1)
    names = [name for name, _ in rows][::-1]
    counts = [n for _, n in rows][::-1]
    bars = ax.barh(names, counts, color="tab:blue")
    for bar, n in zip(bars, counts, strict=True):
        ax.annotate(fmt(n), (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center", fontsize=8)
    ax.set_xlim(0, max(counts + [1]) * 1.15)
    ax.set_xlabel("documents kept")
    ax.set_title("Documents per stage")
    return _save(fig, out_png)


def language_funnel_png(manifests: dict[str, dict], out_png: Path, top: int = 6) -> Path | None:
    """Stacked horizontal bars, one per curation step, of the documents it kept per language (the ``top``
    languages by input, the rest as other); the first bar is the first step's input. None when no step
    counts documents per language (``summary.by_language``)."""
    funnels = [(step, (m.get("summary") or {}).get("by_language")) for step, m in manifests.items()]
    funnels = [(step, f) for step, f in funnels if f]
    if not funnels:
        return None
    first_in = {lang: row.get("in", 0) for lang, row in funnels[0][1].items()}
    languages = sorted(first_in, key=lambda lang: (-first_in[lang], lang))[:top]
    bars = [(f"input ({funnels[0][0]})", first_in)]
    bars += [(step, {lang: row.get("out", 0) for lang, row in f.items()}) for step, f in funnels]
    bars = bars[::-1]  # barh draws bottom-up: the input on top
    fig = _figure(7.0, 0.5 * len(bars) + 1.6)
    ax = fig.add_subplot(1, 1, 1)
    names = [name for name, _ in bars]
    left = [0] * len(bars)
    segments = [(lang, [counts.get(lang, 0) for _, counts in bars]) for lang in languages]
    segments.append(("other", [sum(n for lang, n in c.items() if lang not in languages) for _, c in bars]))
    colors = [f"C{i}" for i in range(len(segments) - 1)] + ["tab:gray"]
    for (label, widths), color in zip(segments, colors, strict=True):
        if not any(widths):
            continue
        ax.barh(names, widths, left=left, color=color, label=label)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    for y, total in enumerate(left):
        ax.annotate(fmt(total), (total, y), va="center", fontsize=8, xytext=(3, 0), textcoords="offset points")
    ax.set_xlim(0, max(left + [1]) * 1.15)
    ax.set_xlabel("documents kept")
    ax.set_title("Documents per language and curation step")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="language")
    return _save(fig, out_png)
