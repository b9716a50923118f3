"""Markdown reports for stages and runs (pure functions; the Prefect layer publishes them).

* ``stage_markdown``: one stage's manifest as a table (documents in/out, each drop reason with its share,
  tokens, throughput, time, skipped?).
* ``run_markdown``: the final report of a run: per-stage table, base vs trained with deltas, the promotion
  decision and its reasons, warnings, and the images by relative path (``plots`` draws them next to the
  report under ``LOSS_PNG`` and ``EVAL_PNG``).
* ``write_report``: atomic write, so a reader (or the Prefect UI) never sees half a report.
"""

from __future__ import annotations

import logging
import math
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


def pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.2f}%"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _rate_keys(summary: dict) -> list[str]:
    return [k for k in summary if k.endswith(("_per_s", "_per_second")) or k in ("rate", "throughput")]


# --------------------------------------------------------------------------------------------- stages

LANGUAGE_COLUMNS = ["language", "in", "out", "dropped", "dropped by reason"]


def reasons_text(dropped: dict[str, int]) -> str:
    """``{"near_duplicate": 2, "exact_duplicate": 5}`` -> ``exact_duplicate 5, near_duplicate 2``."""
    ranked = sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{reason} {fmt(n)}" for reason, n in ranked) or "—"


def language_rows(by_language: dict[str, dict]) -> list[list[str]]:
    """A curation step's ``by_language`` as rows of ``LANGUAGE_COLUMNS``, the most documents in first."""
    ranked = sorted(by_language.items(), key=lambda kv: (-kv[1].get("in", 0), kv[0]))
    return [
        [fmt(lang), fmt(row.get("in", 0)), fmt(row.get("out", 0)), fmt(sum((row.get("dropped") or {}).values())),
         reasons_text(row.get("dropped") or {})]
        for lang, row in ranked
    ]  # fmt: skip



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
    parts = [f"## {title}", "", table(["", "count", "share"], rows)]
    if summary.get("by_language"):
        parts += ["", "### By language", "", table(LANGUAGE_COLUMNS, language_rows(summary["by_language"]))]
    if summary.get("log_line"):
        parts += ["", summary["log_line"]]
    ident = [f"{k} `{manifest[k]}`" for k in ("key", "config_hash", "code_version") if manifest.get(k)]
    if ident:
        parts += ["", "<sub>" + ", ".join(ident) + "</sub>"]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------- run report


STAGE_COLUMNS = ["stage", "in", "out", "time", "status", "summary"]


def stage_records(stages: dict[str, dict]) -> list[dict[str, str]]:
    """The run report's stage table as records (one dict per stage), e.g. for a Prefect table artifact."""
    return [dict(zip(STAGE_COLUMNS, _stage_row(name, m), strict=True)) for name, m in stages.items()]


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


def _with_ci(value, interval, digits: int = 4) -> str:
    """A bits/byte value with its 95% interval, when there is one: ``1.2345 [1.2001, 1.2710]``."""
    text = _f(value, digits)
    if interval and len(interval) == 2 and text != "—":
        text += f" [{_f(interval[0], digits)}, {_f(interval[1], digits)}]"
    return text


def _pct_ci(rel, interval) -> str:
    """A relative change with its paired 95% interval, when there is one."""
    text = pct(rel)
    if interval and len(interval) == 2 and text != "—":
        text += f" [{pct(interval[0])}, {pct(interval[1])}]"
    return text


def eval_rows(results: dict) -> list[list[str]]:
    base, trained = results.get("base") or {}, results.get("trained") or {}
    delta = results.get("delta") or {}
    rows = [
        [
            f"{metric} bits/byte",
            _with_ci(base.get(f"{metric}_bpb"), base.get(f"{metric}_bpb_ci")),
            _with_ci(trained.get(f"{metric}_bpb"), trained.get(f"{metric}_bpb_ci")),
            _pct_ci(delta.get(f"{metric}_bpb_rel"), delta.get(f"{metric}_bpb_rel_ci")),
        ]
        for metric in ("domain", "general")
    ]
    by_base = (base.get("domain") or {}).get("by_language") or {}
    by_trained = (trained.get("domain") or {}).get("by_language") or {}
    by_delta = delta.get("by_language") or {}
    for language in sorted(set(by_base) & set(by_trained)):
        b, t = by_base[language], by_trained[language]
        rel = (t["bpb"] - b["bpb"]) / b["bpb"] if b["bpb"] else None
        rows.append(
            [
                f"domain bits/byte [{language}]",
                _with_ci(b["bpb"], b.get("bpb_ci")),
                _with_ci(t["bpb"], t.get("bpb_ci")),
                _pct_ci(rel, (by_delta.get(language) or {}).get("rel_ci")),
            ]
        )
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
    rows += _auto_probe_rows(base, trained, delta)
    for task in sorted(set(base.get("tasks") or {}) & set(trained.get("tasks") or {})):
        for metric, value in sorted(trained["tasks"][task].items()):
            old = base["tasks"][task].get(metric)
            change = f"{value - old:+.4f}" if isinstance(old, (int, float)) else "—"
            rows.append([f"{task} {metric}", _f(old, 4), _f(value, 4), change])
    return rows


def _points(points) -> str:
    return "—" if points is None else f"{100 * points:+.1f} points"


def _auto_probe_rows(base: dict, trained: dict, delta: dict) -> list[list[str]]:
    """This run's auto probe and every earlier run's, before (base) and after (trained)."""
    rows = []
    if base.get("auto_probe_acc") is not None or trained.get("auto_probe_acc") is not None:
        rows.append(["auto-probe accuracy (this run)", _f(base.get("auto_probe_acc"), 3),
                     _f(trained.get("auto_probe_acc"), 3), _points(delta.get("auto_probe_acc_points"))])  # fmt: skip
    b, t = base.get("earlier_probes") or {}, trained.get("earlier_probes") or {}
    points = delta.get("earlier_probe_points") or {}
    for run_id in sorted(set(b) & set(t)):
        rows.append([f"auto-probe accuracy (run {run_id})", _f(b[run_id]["acc"], 3), _f(t[run_id]["acc"], 3),
                     _points(points.get(run_id))])  # fmt: skip
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
    artifact_failures: int | None = None,
) -> str:
    """The final report of a run.

    ``artifact_failures``, when given, is how many Prefect artifacts of the run failed to publish (the
    files on disk are complete either way); it is shown under the warnings.

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
    parts = [f"# Run `{run_id}`", ""] + ([f"Started from: `{base_model}`", ""] if base_model else [])
    if notes:
        parts += ["## Warnings", ""] + [f"- **Warning:** {note}" for note in notes] + [""]
    if artifact_failures is not None:
        parts += [f"Prefect artifacts that failed to publish: {artifact_failures}", ""]
    parts += ["## Stages", ""]
    parts.append(
        table(
            STAGE_COLUMNS,
            [_stage_row(name, m) for name, m in stages.items()],
        )
    )
    parts += ["", "## Base vs trained", ""]
    if results:
        parts.append(table(["metric", "base", "trained", "change"], eval_rows(results)))
        parts += [
            "",
            "bits/byte: lower is better; change is relative. Brackets: 95% bootstrap interval over held-out "
            "documents (the change's interval is paired: the same resampled documents for both models). "
            "Probe accuracy change is in points.",
        ]
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
        elif decision.get("outcome") == "data_only":
            verdict = "**Data only**: curated for a later train-eval run; no training, no evaluation, nothing to promote"
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
