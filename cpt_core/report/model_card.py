"""The model card: a ``README.md`` beside a saved model that says what it is and whether to trust it.

It is assembled from what the run already wrote, so it never disagrees with the run's files:

* the base model and the run chain back to it: the model registry's lineage (``Registry.lineage``), else the
  run's ``start.json``;
* data sources and counts: the fetch log (pages fetched per host) and each data stage's manifest
  (documents in, out and dropped);
* the mix: ``tokens/mix.json`` (tokens and documents per source, the realised shares);
* the training config: ``model/spec.json`` (the config the training subprocess ran with);
* evaluation with intervals (``eval/results.json``) and the gate decision (``promote/decision.json``).

Anything missing (a run stopped before evaluation, a registry without the run) is said so in the card rather
than failing: a card is written at the end of evaluate or promote, and a partial card is still true.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from cpt_core.evaluate.registry import Registry
from cpt_core.io import atomic_write_text
from cpt_core.layout import CURATE_STEPS, RunLayout
from cpt_core.report.markdown import eval_rows, fmt, table

CARD = "README.md"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _chain(layout: RunLayout) -> list[str]:
    """Lines of the run chain, newest first, ending at the original base model."""
    try:
        lineage = Registry(layout.registry).lineage(layout.run_id)
    except (KeyError, ValueError, OSError):
        start = _read_json(layout.run / "start.json")
        parent = start.get("parent") or start.get("model_dir") or "unknown"
        return [f"`{layout.run_id}` (this run, not yet in the model registry)", f"started from `{parent}`"]
    lines = []
    for link in lineage:
        if link.get("base_model"):
            lines.append(f"base model `{link['model']}`")
        elif link.get("missing"):
            lines.append(f"`{link['run_id']}` (no longer in the registry; started from `{link['model']}`)")
        else:
            here = " (this run)" if link["run_id"] == layout.run_id else ""
            verdict = "promoted" if link.get("promote") else "not promoted"
            lines.append(f"`{link['run_id']}`{here}: {verdict}, config hash `{link.get('config_hash')}`")
    return lines


def _base_model(layout: RunLayout, chain: list[str]) -> str:
    start = _read_json(layout.run / "start.json")
    if chain and chain[-1].startswith("base model "):
        return chain[-1][len("base model ") :]
    return f"`{start.get('source') or start.get('parent') or 'unknown'}`"


def _sources(layout: RunLayout) -> list[list[str]]:
    log = layout.crawl / "fetch_log.jsonl"
    hosts: Counter = Counter()
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("reason") == "fetched":
                hosts[urlsplit(row.get("url", "")).netloc or "unknown"] += 1
    return [[host, fmt(count)] for host, count in sorted(hosts.items())]


def _stage_counts(layout: RunLayout) -> list[list[str]]:
    stages = [("extract", layout.extract)] + [(f"curate/{s}", layout.curate_step(s)) for s in CURATE_STEPS]
    stages.append(("tokenize", layout.tokens))
    rows = []
    for name, folder in stages:
        summary = _read_json(folder / "_manifest.json").get("summary") or {}
        if not summary:
            continue
        dropped = summary.get("dropped") or {}
        rows.append([name, fmt(summary.get("docs_in")), fmt(summary.get("docs_out")), fmt(sum(dropped.values()))])
    return rows


def _mix(layout: RunLayout) -> list[list[str]]:
    mix = _read_json(layout.tokens / "mix.json")
    tokens, docs, shares = mix.get("tokens_by_source") or {}, mix.get("docs_by_source") or {}, mix.get("mix") or {}
    return [
        [source, fmt(docs.get(source)), fmt(tokens.get(source)), f"{100 * shares[source]:.1f}%" if source in shares else "—"]
        for source in tokens
    ]


def _section(title: str, body: list[str]) -> list[str]:
    return [f"## {title}", ""] + body + [""]


def model_card_markdown(layout: RunLayout) -> str:
    """The card of ``layout``'s model (``model/final``), from the run's files and the model registry."""
    chain = _chain(layout)
    parts = [f"# Model `{layout.run_id}`", "", f"Continued pre-training of {_base_model(layout, chain)}.", ""]
    parts += _section("Lineage", [f"{i + 1}. {line}" for i, line in enumerate(chain)])
    sources = _sources(layout)
    data = [table(["host", "pages fetched"], sources), ""] if sources else ["No web pages fetched in this run.", ""]
    counts = _stage_counts(layout)
    data += [table(["stage", "docs in", "docs out", "dropped"], counts)] if counts else ["No stage manifests."]
    parts += _section("Data", data)
    mix = _mix(layout)
    parts += _section("Mix", [table(["source", "documents", "tokens", "share"], mix)] if mix else ["No mix.json."])
    train = _read_json(layout.model / "spec.json").get("train")
    body = ["```json", json.dumps(train, indent=2, sort_keys=True), "```"] if train else ["No training config."]
    parts += _section("Training config", body)
    results = _read_json(layout.eval / "results.json")
    body = ["No evaluation results."]
    if results:
        body = [
            table(["metric", "base", "trained", "change"], eval_rows(results)),
            "",
            "bits/byte: lower is better. Brackets: 95% bootstrap interval over held-out documents; the change's "
            "interval is paired (the same resampled documents for both models).",
        ]
    parts += _section("Evaluation", body)
    decision = _read_json(layout.run / "promote" / "decision.json")
    body = ["No promotion decision was made."]
    if decision:
        body = ["**Promoted** to champion" if decision.get("promote") else "**Not promoted**", ""]
        body += [f"- {fmt(reason)}" for reason in decision.get("reasons", [])]
    parts += _section("Gate decision", body)
    return "\n".join(parts).rstrip() + "\n"


def write_model_card(layout: RunLayout) -> Path | None:
    """Write ``model/final/README.md``; None when the run saved no model."""
    folder = layout.model / "final"
    if not folder.is_dir():
        return None
    path = folder / CARD
    atomic_write_text(path, model_card_markdown(layout))
    return path
