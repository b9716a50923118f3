"""The synthesize stage: extra training documents from the curated training split, and the run's own probe.

Runs between curate and tokenize (``run_synthesize``):

1. Read the curated documents and split off the held-out documents exactly as tokenize will
   (``cpt_core.data.heldout.split_heldout`` with tokenize's fraction and cap: the split depends on content
   only, so both stages get the same one; tokenize checks the ids recorded here). Held-out documents, and
   any sentence they contain, are never used to make anything.
2. Extract relations from each training document (``extract``) and set aside those whose sentence is chosen
   for the probe (``probe``): they stay in the raw training documents, but are never restated.
3. With the ``model`` strategy, a generator model rewrites the training documents, probe sentences cut out
   (``generate``: WRAP rephrasings, EntiGraph discussions of entity pairs; cached across runs).
   Restate the other relations in templated forms (``restate``) and keep documents, model-written first,
   until their characters reach ``budget_multiple`` times the training documents' characters (tokenize
   enforces the same multiple in tokens and reports the realised mix).
4. Build probe items from the set-aside relations, measured against every training line for n-gram overlap.

Writes ``documents/synthetic.jsonl`` (datatrove-style rows, ``metadata.form`` and ``metadata.source_docs``
say where each came from), ``probe.jsonl`` and ``synthesis.json`` (the budget and the held-out ids).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.data.heldout import split_heldout
from cpt_core.data.tokenize import read_documents
from cpt_core.io import atomic_write_json, write_jsonl
from cpt_core.progress import ProgressFn, no_progress
from cpt_core.stage import run_stage
from cpt_core.synthesize.extract import Relation, detect_language, extract_relations, split_sentences
from cpt_core.synthesize.generate import GeneratorConfig, generate_documents, requests_for
from cpt_core.synthesize.probe import (
    OverlapIndex,
    checked_items,
    distractor_pools,
    is_probe_sentence,
    probe_items,
)
from cpt_core.synthesize.restate import DEFAULT_FORMS, restate
from cpt_core.train.base_model import model_fingerprint

SYNTHETIC_FILE = "documents/synthetic.jsonl"
PROBE_FILE = "probe.jsonl"
META_FILE = "synthesis.json"
Strategy = Literal["entity", "model"]
Form = Literal["pair", "qa", "summary", "statement"]


class ProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = Field(True, description="build probe items from relations held out from synthesis")
    fraction: float = Field(0.15, ge=0, lt=1, description="share of relation sentences held out for the probe")
    max_items: int = Field(200, ge=0, description="cap on probe items (two per held-out relation)")
    n_choices: int = Field(4, ge=2)
    ngram: int = Field(4, ge=2, description="word n-gram length of the overlap check against training lines")
    max_ngram_overlap: float = Field(0.5, ge=0, le=1, description="drop items sharing more of their n-grams")


class SynthesizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategies: list[Strategy] | None = Field(
        None,
        description="synthesis strategies: entity (templated restatements), model (a generator model's WRAP "
        "and EntiGraph documents); default (null): entity restatements when no knowledge graph",
    )
    forms: list[Form] = Field(
        default_factory=lambda: list(DEFAULT_FORMS),
        description="restatement forms to write (statement is left out by default: measured, the budget teaches "
        "more as further pair copies)",
    )
    statements_per_relation: int = Field(3, ge=1, le=5)
    questions_per_relation: int = Field(
        1, ge=1, le=4, description="question/answer documents per relation, each asking about another mention"
    )
    copies: int = Field(
        4, ge=1, le=8, description="renderings of each pair question, each in another template (form pair)"
    )
    budget_multiple: float = Field(4.0, ge=0, description="synthetic tokens at most this multiple of real ones")
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig, description="for the model strategy")
    seed: int = 0

    def active_strategies(self, has_knowledge_graph: bool) -> list[str]:
        if self.strategies is not None:
            return list(self.strategies)
        return [] if has_knowledge_graph else ["entity"]


def run_synthesize(
    cfg: SynthesizeConfig,
    docs_dir: Path,
    output: Path,
    heldout_fraction: float,
    heldout_max_docs: int,
    has_knowledge_graph: bool = False,
    progress: ProgressFn = no_progress,
    generator_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> dict:
    """The stage: skipped when ``output`` holds a manifest with the same key (inputs, config, code).

    The ``model`` strategy needs ``generator_dir`` (the resolved ``generator.model`` folder, which enters the
    key by its content fingerprint) and ``cache_dir`` (where generated outputs are kept across runs)."""
    strategies = cfg.active_strategies(has_knowledge_graph)
    extra = {"strategies": strategies, "heldout_fraction": heldout_fraction, "heldout_max_docs": heldout_max_docs}
    model = None
    if "model" in strategies:
        if generator_dir is None or cache_dir is None:
            raise ValueError("synthesize.strategies has 'model': a generator model folder and a cache folder are needed")
        model = (Path(generator_dir), model_fingerprint(Path(generator_dir)), Path(cache_dir))
        extra["generator"] = model[1]

    def work(partial: Path) -> dict:
        return _synthesize(cfg, strategies, Path(docs_dir), partial, (heldout_fraction, heldout_max_docs), model,
                           progress)  # fmt: skip

    return run_stage("synthesize", Path(output), cfg, [Path(docs_dir)], work, extra_key=extra,
                     code=("cpt_core.synthesize", "cpt_core.data"))


def _norm(sentence: str) -> str:
    return " ".join(sentence.split())


def _relations(train_docs: list[dict], banned: set[str], progress: ProgressFn) -> list[Relation]:
    out = []
    for i, doc in enumerate(train_docs):
        language = (doc.get("metadata") or {}).get("language")
        out += [r for r in extract_relations(doc["id"], doc["text"], language) if _norm(r.sentence) not in banned]
        progress(i + 1, len(train_docs), "extracted relations")
    return out


def _split_for_probe(relations: list[Relation], cfg: ProbeConfig, seed: int) -> tuple[list, list]:
    """(relations to restate, relations held out for the probe); the cap returns the surplus to synthesis."""
    if not cfg.enabled:
        return relations, []
    chosen = sorted({_norm(r.sentence) for r in relations if is_probe_sentence(r.sentence, cfg.fraction, seed)},
                    key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    held = set(chosen[: cfg.max_items // 2])
    return [r for r in relations if _norm(r.sentence) not in held], [r for r in relations if _norm(r.sentence) in held]


def _within_budget(docs: list[dict], budget_chars: int) -> list[dict]:
    kept, used = [], 0
    for doc in docs:
        if used + len(doc["text"]) > budget_chars:
            break
        kept.append(doc)
        used += len(doc["text"])
    return kept


def _probe(cfg: ProbeConfig, held: list[Relation], relations: list[Relation], lines: list[str], seed: int):
    pools = distractor_pools(relations)
    items = [item for r in held for item in probe_items(r, pools, cfg.n_choices, seed)]
    kept, report = checked_items(items, OverlapIndex(lines, cfg.ngram), cfg.max_ngram_overlap)
    return kept[: cfg.max_items], {**report, "relations_held_out": len(held), "items_built": len(items)}


def _synthesize(
    cfg: SynthesizeConfig,
    strategies: list[str],
    docs_dir: Path,
    out: Path,
    heldout: tuple[float, int],
    model: tuple[Path, str, Path] | None,
    progress: ProgressFn,
) -> dict:
    started = time.monotonic()
    docs, dropped = read_documents(docs_dir)
    train_docs, heldout_docs = split_heldout(docs, *heldout)
    docs_out, probe, overlap, relations, held, generated = [], [], {}, [], [], {}
    if strategies:
        banned = {_norm(s) for d in heldout_docs for s in split_sentences(d["text"], "ko" if _is_ko(d) else "en")}
        relations = _relations(train_docs, banned, progress)
        restated, held = _split_for_probe(relations, cfg.probe, cfg.seed)
        if "model" in strategies:
            model_dir, fingerprint, cache_dir = model
            secret = {r.sentence for r in held} | {s for s in banned if len(s) > 20}
            requests = requests_for(cfg.generator, train_docs, restated, {r.sentence for r in held} | banned)
            made, generated = generate_documents(cfg.generator, model_dir, fingerprint, requests, cache_dir, secret,
                                                 progress)  # fmt: skip
            docs_out += made
        if "entity" in strategies:
            docs_out += restate(restated, cfg.forms, cfg.statements_per_relation, cfg.seed, cfg.questions_per_relation,
                                cfg.copies)
        budget = round(cfg.budget_multiple * sum(len(d["text"]) for d in train_docs))
        docs_out = _within_budget(docs_out, budget)
        lines = [line for d in train_docs + docs_out for line in d["text"].splitlines() if line.strip()]
        if held:
            probe, overlap = _probe(cfg.probe, held, relations, lines, cfg.seed)
    rows = [_row(d) for d in docs_out]
    write_jsonl(rows, out / SYNTHETIC_FILE)
    write_jsonl(probe, out / PROBE_FILE)
    meta = {"strategies": strategies, "budget_multiple": cfg.budget_multiple,
            "heldout_ids": sorted(d["id"] for d in heldout_docs), "train_ids": len(train_docs)}
    atomic_write_json(out / META_FILE, meta)
    by_form: dict[str, int] = {}
    for d in docs_out:
        by_form[d["form"]] = by_form.get(d["form"], 0) + 1
    summary = {
        "docs_in": len(docs) + sum(dropped.values()), "docs_out": len(rows), "dropped": dropped,
        "strategies": strategies, "train_docs": len(train_docs), "heldout_docs": len(heldout_docs),
        "relations": len(relations), "relations_held_for_probe": len(held), "docs_by_form": by_form,
        "synthetic_chars": sum(len(r["text"]) for r in rows), "generator": generated,
        "train_chars": sum(len(d["text"]) for d in train_docs), "probe_items": len(probe),
        "probe_overlap": overlap, "seconds": round(time.monotonic() - started, 2),
    }
    summary["log_line"] = (
        f"synthesized {len(rows)} documents ({', '.join(f'{k} {v}' for k, v in sorted(by_form.items())) or 'none'})"
        f" from {len(relations)} relations of {len(train_docs)} training docs; {len(probe)} probe items"
    )
    return summary


def _is_ko(doc: dict) -> bool:
    return detect_language(doc["text"], (doc.get("metadata") or {}).get("language")) == "ko"


def _row(doc: dict) -> dict:
    doc_id = "syn-" + hashlib.sha256(doc["text"].encode("utf-8")).hexdigest()[:16]
    meta = {"strategy": doc.get("strategy", "entity"), "form": doc["form"], "language": doc["language"], "source_docs": doc["source_docs"]}
    return {"id": doc_id, "text": doc["text"], "metadata": meta}
