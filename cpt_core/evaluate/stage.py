"""The evaluate stage: what was learned and what was forgotten, base model against trained model.

Both models are measured on the same inputs: bits per byte (``bpb``) on held-out *domain* text (did CPT
learn the domain?) and on held-out *general* text (did it forget?), the multiple-choice fact probe and any
extra lm-eval tasks (``harness``), and the run's auto probe (made by the synthesize stage from the run's
own documents when no knowledge graph is given) through the same multiple-choice scoring. ``results.json`` holds both columns and their deltas; ``eval_delta`` and
``load_results`` serve the promotion gate.

``torch``, ``transformers`` and ``lm_eval`` are imported inside the functions that need them: ``config.py``
imports ``EvalConfig`` from here, and loading a config must not take the seconds those imports take.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.data.general_text import GeneralTextConfig, general_texts
from cpt_core.data.knowledge_graph import load_facts, probe_rows
from cpt_core.evaluate.bootstrap import bpb_interval, paired_difference
from cpt_core.evaluate.bpb import bpb_summary, score_texts
from cpt_core.evaluate.harness import fact_probe_accuracy, run_lm_eval_tasks
from cpt_core.faults import fault_point
from cpt_core.io import atomic_write_json, iter_text_rows, jsonl_files, read_probe
from cpt_core.progress import ProgressFn, no_progress
from cpt_core.stage import run_stage
from cpt_core.train.base_model import model_fingerprint

logger = logging.getLogger(__name__)


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    general_heldout: GeneralTextConfig = Field(
        default_factory=lambda: GeneralTextConfig(source="stdlib-docstrings", max_chars=60_000),
        description="general text for forgetting; draw it from a different source than the replay text",
    )
    domain_max_chars: int = Field(60_000, ge=1000, description="cap on the domain held-out text scored")
    bpb_seq_len: int = Field(
        512, ge=16, description="tokens per scoring window (capped at the model's limit)"
    )
    batch_size: int = Field(8, ge=1)
    fact_probe: bool = Field(True, description="multiple-choice probe generated from the knowledge graph")
    auto_probe: bool = Field(True, description="score the synthesize stage's auto probe when the run has one")
    lm_eval_tasks: list[str] = Field(
        default_factory=list, description="extra lm-eval task names or YAML paths"
    )
    lm_eval_data: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="local data for registered lm-eval tasks, {task: {split: file}} (.jsonl/.json/.parquet/.csv/.arrow)",
    )
    lm_eval_limit: int | None = Field(
        None, ge=1, description="examples per extra lm-eval task (not the probe)"
    )


# --------------------------------------------------------------------------------------------- model-level


def read_heldout(path: Path, max_chars: int) -> list[dict]:
    """``[{text, language}]`` from a JSONL file (or a folder of ``*.jsonl[.gz]``), at most ``max_chars`` chars.

    ``language`` is read from the row or its ``metadata`` (None when absent). When the cap bites, documents
    are taken round-robin across languages, so a file sorted by language still yields every language; the
    document that crosses the cap is cut to fit.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"held-out text {path} does not exist")
    files = jsonl_files(path)
    if not files:
        raise ValueError(f"held-out folder {path} holds no .jsonl or .jsonl.gz files")
    by_language: dict[str | None, list[str]] = {}
    for file in files:
        for _, row in iter_text_rows(file):
            meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
            language = row.get("language") or meta.get("language")
            if row["text"]:
                by_language.setdefault(language, []).append(row["text"])
    queues = [list(reversed(texts)) for texts in by_language.values()]
    languages = list(by_language)
    out: list[dict] = []
    used = 0
    while used < max_chars and any(queues):
        for language, queue in zip(languages, queues, strict=True):
            if not queue or used >= max_chars:
                continue
            text = queue.pop()[: max_chars - used]
            out.append({"text": text, "language": language})
            used += len(text)
    return out


def _pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(model_dir: Path, device: str | None = None):
    """``(model, tokenizer)`` from a ``save_pretrained`` folder, in float32 (so base and trained compare)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"model folder {model_dir} has no config.json: not a saved HF model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model.to(device or _pick_device()).eval(), tokenizer


def _scored(model, tokenizer, cfg: EvalConfig, texts: list[str], languages, progress: ProgressFn) -> dict:
    """Bits/byte of ``texts`` with its document-bootstrap interval, per language too when ``languages`` are
    given; ``per_text`` keeps each text's NLL and bytes, so base and trained can be compared paired."""
    nll, tokens, unscored = score_texts(model, tokenizer, texts, cfg.bpb_seq_len, cfg.batch_size, None, progress)
    n_bytes = [len(t.encode("utf-8")) for t in texts]
    summary = {**bpb_summary(texts, nll, tokens), "unscored_tokens": unscored, "bpb_ci": bpb_interval(nll, n_bytes)}
    summary["per_text"] = {"nll": nll, "bytes": n_bytes, "language": languages}
    for language in sorted({x for x in languages or [] if x}):
        idx = [i for i, x in enumerate(languages) if x == language]
        part = bpb_summary([texts[i] for i in idx], [nll[i] for i in idx], [tokens[i] for i in idx])
        part["bpb_ci"] = bpb_interval([nll[i] for i in idx], [n_bytes[i] for i in idx])
        summary.setdefault("by_language", {})[language] = part
    return summary


def evaluate_model(
    cfg: EvalConfig,
    model_dir: Path,
    domain_heldout: Path,
    knowledge_graph: Path | None,
    workdir: Path,
    progress: ProgressFn = no_progress,
    auto_probe: Path | None = None,
    earlier_probes: dict[str, Path] | None = None,
) -> dict:
    """Every measurement of one model: domain and general bpb, fact probe, auto probes, extra lm-eval tasks.

    Returns ``{model_dir, domain_bpb, general_bpb, probe_acc, domain: {...bpb summary, by_language},
    general: {...}, probe: {...} | None, auto_probe_acc, earlier_probes: {run_id: {acc, n}}, tasks: {...},
    seconds}``; ``earlier_probes`` are the auto probes of earlier runs (``{run_id: probe.jsonl}``).
    """
    started = time.time()
    model, tokenizer = load_model(model_dir)
    rows = read_heldout(domain_heldout, cfg.domain_max_chars)
    if not rows:
        raise ValueError(f"held-out text {domain_heldout} holds no non-empty 'text'")
    domain = _scored(model, tokenizer, cfg, [r["text"] for r in rows], [r["language"] for r in rows], progress)
    general_input = [t for t in general_texts(cfg.general_heldout) if t]
    if not general_input:
        raise ValueError(f"general held-out source {cfg.general_heldout.source!r} yielded no text")
    general = _scored(model, tokenizer, cfg, general_input, None, progress)
    probe = None
    if cfg.fact_probe and knowledge_graph:
        probe = fact_probe_accuracy(
            model,
            tokenizer,
            probe_rows(load_facts(knowledge_graph)),
            Path(workdir) / "probe",
            None,
            cfg.batch_size,
        )
    auto = None
    if cfg.auto_probe and auto_probe:
        auto = fact_probe_accuracy(
            model, tokenizer, read_probe(auto_probe), Path(workdir) / "auto_probe", None, cfg.batch_size
        )
    earlier = {}
    for run_id, path in sorted((earlier_probes or {}).items()) if cfg.auto_probe else ():
        scored = fact_probe_accuracy(
            model, tokenizer, read_probe(path), Path(workdir) / "earlier_probes" / run_id, None, cfg.batch_size
        )
        earlier[run_id] = {"acc": scored["acc"], "n": scored["n"]}
    tasks = run_lm_eval_tasks(model, tokenizer, cfg.lm_eval_tasks, cfg.lm_eval_limit, cfg.batch_size, cfg.lm_eval_data)
    return {
        "model_dir": str(model_dir),
        "domain_bpb": domain["bpb"],
        "domain_bpb_ci": domain["bpb_ci"],
        "general_bpb": general["bpb"],
        "general_bpb_ci": general["bpb_ci"],
        "probe_acc": probe["acc"] if probe else None,
        "domain": domain,
        "general": general,
        "probe": probe,
        "auto_probe_acc": auto["acc"] if auto else None,
        "auto_probe": auto,
        "earlier_probes": earlier,
        "tasks": tasks,
        "seconds": round(time.time() - started, 3),
    }


def _points(base: dict, trained: dict, key: str) -> float | None:
    if base.get(key) is None or trained.get(key) is None:
        return None
    return trained[key] - base[key]


def _rel(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or not old or any(map(math.isnan, (new, old))):
        return None
    return (new - old) / old


def eval_delta(base: dict, trained: dict) -> dict:
    """Relative bpb changes (negative = better) and probe accuracy changes in points of 1.0; the earlier
    runs' auto probes by run id (``earlier_probe_points``)."""
    b, t = base.get("earlier_probes") or {}, trained.get("earlier_probes") or {}
    return {
        "domain_bpb_rel": _rel(trained.get("domain_bpb"), base.get("domain_bpb")),
        "general_bpb_rel": _rel(trained.get("general_bpb"), base.get("general_bpb")),
        "probe_acc_points": _points(base, trained, "probe_acc"),
        "auto_probe_acc_points": _points(base, trained, "auto_probe_acc"),
        "earlier_probe_points": {run: t[run]["acc"] - b[run]["acc"] for run in sorted(set(b) & set(t))},
    }


def _paired(base: dict, trained: dict) -> dict | None:
    b, t = (base or {}).get("per_text") or {}, (trained or {}).get("per_text") or {}
    if not b.get("nll") or b.get("bytes") != t.get("bytes"):
        return None  # not scored on the same texts: no paired comparison
    return paired_difference(b["nll"], t["nll"], b["bytes"])


def paired_deltas(base: dict, trained: dict) -> dict:
    """Trained minus base, paired over the same resampled documents: ``{domain_bpb_diff, domain_bpb_diff_ci,
    domain_bpb_rel_ci, general_bpb_... , by_language: {lang: {diff, diff_ci, rel, rel_ci}}}``.

    Needs the columns' ``per_text`` scores (``evaluate_model``); a metric without them is left out."""
    out: dict[str, Any] = {}
    for metric in ("domain", "general"):
        paired = _paired(base.get(metric), trained.get(metric))
        if paired is not None:
            out[f"{metric}_bpb_diff"] = paired["diff"]
            out[f"{metric}_bpb_diff_ci"] = paired["diff_ci"]
            out[f"{metric}_bpb_rel_ci"] = paired["rel_ci"]
    per_text_b = (base.get("domain") or {}).get("per_text") or {}
    per_text_t = (trained.get("domain") or {}).get("per_text") or {}
    languages = per_text_b.get("language") or []
    if languages and "domain_bpb_diff" in out:
        out["by_language"] = {}
        for language in sorted({x for x in languages if x}):
            idx = [i for i, x in enumerate(languages) if x == language]
            out["by_language"][language] = paired_difference(
                [per_text_b["nll"][i] for i in idx], [per_text_t["nll"][i] for i in idx],
                [per_text_b["bytes"][i] for i in idx],
            )
    return out


def _ci(interval) -> str:
    return "" if not interval else f" [95% {_pct(interval[0])}, {_pct(interval[1])}]"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}%"


def run_evaluate(
    cfg: EvalConfig,
    base_dir: Path,
    trained_dir: Path,
    domain_heldout: Path,
    knowledge_graph: Path | None,
    output: Path,
    progress: ProgressFn = no_progress,
    auto_probe: Path | None = None,
    earlier_probes: dict[str, Path] | None = None,
) -> dict:
    """The evaluate stage: base and trained model on the same texts and probes; writes ``results.json``.

    ``earlier_probes`` (``{run_id: probe.jsonl}``) are the auto probes of earlier visible runs: what those
    refreshes taught, re-asked of both models, so forgetting it shows (``delta.earlier_probe_points``).

    ``results.json`` is ``{base: {...}, trained: {...}, delta: {domain_bpb_rel, general_bpb_rel,
    probe_acc_points, and the paired intervals of ``paired_deltas``}}``; each column carries ``domain_bpb_ci``
    and ``general_bpb_ci`` (document bootstrap, ``cpt_core.evaluate.bootstrap``). Returns the stage manifest; its ``summary`` holds the headline numbers.
    Both models enter the stage key through ``base_model.model_fingerprint`` (a content hash stored
    beside the model, so it is computed once).
    """
    # Both models enter the key by their content fingerprint (config, weights, tokenizer), not every file in
    # their folders: the model card written beside a model must not make its evaluation stale.
    inputs = [Path(domain_heldout)] + ([Path(knowledge_graph)] if knowledge_graph else [])
    inputs += [Path(auto_probe)] if auto_probe else []
    earlier_probes = {str(k): Path(v) for k, v in (earlier_probes or {}).items()}
    inputs += [earlier_probes[k] for k in sorted(earlier_probes)]

    def work(partial: Path) -> dict:
        started = time.time()
        columns = {}
        for i, (name, model_dir) in enumerate((("base", base_dir), ("trained", trained_dir))):
            progress(i, 2, f"evaluating the {name} model ({model_dir})")
            columns[name] = evaluate_model(
                cfg, Path(model_dir), Path(domain_heldout), knowledge_graph, partial / name, auto_probe=auto_probe,
                earlier_probes=earlier_probes,
            )
            logger.info(
                "%s model: domain bpb %.4f, general bpb %.4f, probe acc %s",
                name,
                columns[name]["domain_bpb"],
                columns[name]["general_bpb"],
                columns[name]["probe_acc"],
            )
            fault_point("evaluate:model")
        progress(2, 2, "evaluated base and trained")
        delta = {**eval_delta(columns["base"], columns["trained"]), **paired_deltas(columns["base"], columns["trained"])}
        atomic_write_json(partial / "results.json", {**columns, "delta": delta})
        base, trained = columns["base"], columns["trained"]
        probe = (
            f", probe acc {base['probe_acc']:.3f} -> {trained['probe_acc']:.3f}"
            if delta["probe_acc_points"] is not None
            else ""
        )
        return {
            "base_domain_bpb": base["domain_bpb"],
            "trained_domain_bpb": trained["domain_bpb"],
            "base_general_bpb": base["general_bpb"],
            "trained_general_bpb": trained["general_bpb"],
            "base_probe_acc": base["probe_acc"],
            "trained_probe_acc": trained["probe_acc"],
            "base_auto_probe_acc": base["auto_probe_acc"],
            "trained_auto_probe_acc": trained["auto_probe_acc"],
            "auto_probe_n": trained["auto_probe"]["n"] if trained["auto_probe"] else 0,
            "earlier_probes": {
                run: {"base": base["earlier_probes"][run]["acc"], "trained": t["acc"], "n": t["n"]}
                for run, t in trained["earlier_probes"].items()
            },
            **{k: v for k, v in delta.items() if k != "by_language"},
            "domain_tokens": trained["domain"]["tokens"],
            "general_tokens": trained["general"]["tokens"],
            "probe_n": trained["probe"]["n"] if trained["probe"] else 0,
            "seconds": round(time.time() - started, 3),
            "log_line": (
                f"domain bpb {base['domain_bpb']:.4f} -> {trained['domain_bpb']:.4f} "
                f"({_pct(delta['domain_bpb_rel'])}{_ci(delta.get('domain_bpb_rel_ci'))}), general bpb {base['general_bpb']:.4f} -> "
                f"{trained['general_bpb']:.4f} ({_pct(delta['general_bpb_rel'])}"
                f"{_ci(delta.get('general_bpb_rel_ci'))}){probe} "
                f"in {time.time() - started:.1f}s"
            ),
        }

    extra = {"base": model_fingerprint(base_dir), "trained": model_fingerprint(trained_dir),
             "earlier_probes": sorted(earlier_probes)}  # fmt: skip
    return run_stage("evaluate", output, cfg, inputs, work, extra_key=extra, code=("cpt_core.evaluate", "cpt_core.data"))


def load_results(path: Path) -> dict[str, Any]:
    """``results.json`` of an evaluate stage, with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"evaluation results {path} do not exist: run the evaluate stage first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"evaluation results {path} are not valid JSON: {err}") from None
    for key in ("base", "trained"):
        if not isinstance(data.get(key), dict):
            raise ValueError(f"evaluation results {path} lack the {key!r} column")
    return data
