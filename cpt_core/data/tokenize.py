"""Tokenization into packed fixed-length sequences in Arrow shards, with replay and synthetic mixing.

Algorithm (``run_tokenize``):

1. Stream the curated documents (datatrove JSONL, in sorted file order) once to build the held-out split from
   content hashes and MinHash band keys only (``cpt_core.data.heldout``): the same document is held out in
   every run, whatever the order or the other documents, so a refresh never trains on what an earlier run
   evaluated on.
2. Stream them again: held-out documents go to ``heldout/domain.jsonl``, the rest are tokenized in batches
   and their ids appended to a token cache on disk (a flat int32 file plus offsets), so no token list of the
   corpus is ever held in memory.
3. Training text = the remaining domain documents + synthetic question/answer documents from the knowledge
   graph (several phrasings per fact; this lifts fact recall well above articles alone) + the synthesize
   stage's documents (``synthetic``: restatements of the training split only, taken in their own order up to
   ``budget_multiple`` times the domain tokens, as ``synthesis.json`` beside them says) + *replay*: general
   text sized by the token weights of ``mix``/``replay_ratio`` and ``schedule`` (``cpt_core.data.mixing``),
   which is what keeps forgetting down. Domain and synthetic documents are repeated ``epochs_of_domain``
   times (small domain corpora need several passes; replay is not repeated more than needed), and the
   document order is shuffled with ``seed`` so copies of a document are not adjacent. Only the order (two
   integers per document) is held in memory; tokens are read back from the cache as they are packed.
4. Tokenize with the model's fast tokenizer. Special-token strings *inside* a document (a crawled page that
   quotes ``<|endoftext|>`` or ``<s>``) are split like any other text: only the packer inserts control
   tokens, so no document can forge a document end. Each document is laid out as the tokenizer's own
   convention has it: ``[bos] ids sep``, with ``bos`` only where the tokenizer adds one (Llama-style) and
   ``sep`` the model's ``<|endoftext|>`` when it has one, else eos; the convention is recorded in
   ``mix.json`` (``special_tokens``). The stream is cut into ``seq_len`` sequences. The tail that does not
   fill a last sequence (fewer than ``seq_len`` tokens) is dropped, never silently: ``mix.json`` reports it
   in total and by source, and ``tokens_by_source`` + ``remainder_by_source`` account for every token
   packed. Dropping it rather than padding keeps every row full, so every position is a training target.
   Packing across document boundaries wastes no padding; the trade-off is that a sequence may attend across
   the separator into an unrelated document, which pretraining does too and which the separator teaches
   the model to ignore.
5. Pack into a fixed buffer of ``shard_sequences`` rows, flushed to Arrow shards (``cpt_core.data.shards``)
   that the trainer memory-maps and ``datasets`` reads, with the boundary index ``documents.arrow`` beside
   them, and ``mix.json`` (the realised mix by source and by schedule phase). Peak memory is one shard and
   one tokenizer batch, not the corpus.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cpt_core.data.general_text import GeneralTextConfig
from cpt_core.data.heldout import ContentClusters
from cpt_core.data.mixing import MixPhase, build_phases, phase_targets, plan_stream
from cpt_core.data.shards import (  # noqa: F401  (re-exported: the trainer and flows read shards from here)
    INDEX_FILE,
    SHARD_PATTERN,
    TRAIN_DIR,
    BoundaryIndexWriter,
    PackedSequences,
    PackedShardWriter,
    TokenCache,
    iter_sequences,
    shard_paths,
)
from cpt_core.faults import fault_point
from cpt_core.io import Unreadable, atomic_write_json, iter_text_rows, jsonl_files, unreadable_report
from cpt_core.progress import ProgressFn, RateMeter, no_progress
from cpt_core.stage import run_stage

logger = logging.getLogger(__name__)

HELDOUT_FILE = "heldout/domain.jsonl"
MIX_FILE = "mix.json"
CACHE_FILE = ".token-cache.bin"
SOURCES = ("domain", "synthetic_qa", "synthetic", "replay")
ENCODE_BATCH = 256


class TokenizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq_len: int = Field(256, ge=16)
    heldout_fraction: float = Field(0.1, ge=0, lt=1, description="share of domain documents kept for evaluation")
    heldout_max_docs: int = Field(200, ge=1)
    replay_ratio: float = Field(
        0.25, ge=0, lt=1, description="share of training tokens drawn from replay text (shorthand for mix)"
    )
    mix: dict[str, float] | None = Field(
        None, description="token weights by source: domain (domain + synthetic documents) and replay; "
        "default {domain: 1 - replay_ratio, replay: replay_ratio}"
    )
    schedule: list[MixPhase] = Field(
        default_factory=list, description="weights from a fraction of training on, e.g. "
        "[{from_fraction: 0.8, weights: {domain: 0.9, replay: 0.1}}]"
    )
    replay: GeneralTextConfig = Field(default_factory=GeneralTextConfig)
    synthetic_qa: bool = Field(True, description="add question/answer lines synthesised from the knowledge graph")
    epochs_of_domain: float = Field(1.0, gt=0, description="copies of the domain+synthetic tokens in the shards")
    epochs_of_synthetic: float | None = Field(
        None, gt=0, description="copies of the synthetic QA documents; default: epochs_of_domain"
    )
    shard_sequences: int = Field(4096, ge=1, description="sequences per Arrow shard")
    seed: int = 0

    @model_validator(mode="after")
    def _check_mix(self) -> TokenizeConfig:
        if self.mix is not None and "replay_ratio" in self.model_fields_set:
            weights = build_phases(self.mix, [])[0].weights
            if abs(weights["replay"] - self.replay_ratio) > 1e-6:
                raise ValueError(
                    f"tokenize.mix gives replay {weights['replay']:.4g} but tokenize.replay_ratio is "
                    f"{self.replay_ratio}: set one of them"
                )
        build_phases(self.weights(), self.schedule)  # names the bad field early
        return self

    def weights(self) -> dict[str, float]:
        """The base token weights: ``mix``, or ``replay_ratio`` as its shorthand."""
        if self.mix is not None:
            return dict(self.mix)
        return {"domain": 1 - self.replay_ratio, "replay": self.replay_ratio}

    def uses_replay(self) -> bool:
        return any(p.weights["replay"] > 0 for p in build_phases(self.weights(), self.schedule))


# ---------------------------------------------------------------------------------------------------------
# Reading documents


def iter_documents(
    docs_dir: Path, unreadable: list[Unreadable] | None = None, dropped: dict[str, int] | None = None
) -> Iterator[dict]:
    """Documents ``{id, text, metadata}`` from ``docs_dir/documents/*.jsonl[.gz]``, one at a time.

    A malformed line or a corrupt file raises, naming the file and line; given an ``unreadable`` list, it is
    noted there instead. Empty texts are counted in ``dropped['empty_text']``.
    """
    folder = Path(docs_dir) / "documents"
    files = jsonl_files(folder) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no documents to tokenize: {folder} holds no .jsonl/.jsonl.gz files")
    for path in files:
        for lineno, row in iter_text_rows(path, unreadable):
            text = row["text"]
            if not text.strip():
                if dropped is not None:
                    dropped["empty_text"] = dropped.get("empty_text", 0) + 1
                continue
            yield {"id": str(row.get("id") or f"{path.name}:{lineno}"), "text": text,
                   "metadata": row.get("metadata") or {}}  # fmt: skip


def read_documents(
    docs_dir: Path, unreadable: list[Unreadable] | None = None
) -> tuple[list[dict], dict[str, int]]:
    """All documents of ``docs_dir`` (see ``iter_documents``) and drop counts (``malformed_json``,
    ``no_text``, ``corrupt_file`` for the lines noted in ``unreadable``, ``empty_text``)."""
    dropped: dict[str, int] = {}
    docs = list(iter_documents(docs_dir, unreadable, dropped))
    _count_unreadable(unreadable, dropped)
    return docs, dropped


def _count_unreadable(unreadable: list[Unreadable] | None, dropped: dict[str, int]) -> None:
    for item in unreadable or []:
        dropped[item.reason] = dropped.get(item.reason, 0) + 1
    for place in unreadable_report(unreadable or [])[1]:
        logger.warning("unreadable input: %s", place)


# ---------------------------------------------------------------------------------------------------------
# Tokenizing


def load_fast_tokenizer(tokenizer_dir: Path):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"cannot load a tokenizer from {tokenizer_dir}: {err}") from None
    if not tokenizer.is_fast:
        raise ValueError(f"tokenizer in {tokenizer_dir} is not a fast (tokenizers-backed) tokenizer")
    return tokenizer


def separator_id(tokenizer) -> int:
    """The document separator: ``<|endoftext|>`` when the vocabulary has it, else eos.

    Instruct models often set eos to an end-of-turn token (SmolLM2-Instruct: ``<|im_end|>``) while their
    pretraining separated documents with ``<|endoftext|>``; CPT should continue the pretraining convention.
    """
    vocab = tokenizer.get_vocab()
    if "<|endoftext|>" in vocab:
        return vocab["<|endoftext|>"]
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path} has no eos token to separate documents with")
    return tokenizer.eos_token_id


def special_tokens(tokenizer) -> dict:
    """The tokenizer's own document convention: its BOS (and whether it adds one), eos and the separator.

    ``adds_bos`` is read from what the tokenizer does (its post-processor, ``add_bos_token`` for Llama-style
    tokenizers), not from whether it has a ``bos_token``: SmolLM2 and GPT-2 name one but never add it.
    """
    bos = tokenizer.bos_token_id
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return {
        "bos_id": bos,
        "adds_bos": bool(bos is not None and probe and probe[0] == bos),
        "eos_id": tokenizer.eos_token_id,
        "separator_id": separator_id(tokenizer),
        "special_strings_in_text": "split as text",
    }


def encode(tokenizer, texts: list[str], progress: ProgressFn = no_progress, what: str = "docs") -> list[list[int]]:
    """Token ids of each text, no special tokens added (see ``iter_encoded``)."""
    return [ids.tolist() for ids in iter_encoded(tokenizer, texts, progress, what)]


def iter_encoded(
    tokenizer, texts, progress: ProgressFn = no_progress, what: str = "docs", total: int | None = None
) -> Iterator[np.ndarray]:
    """Token ids of each text (an iterable, read ``ENCODE_BATCH`` at a time) as int32 arrays, in batches
    through the Rust tokenizer, no special tokens added.

    Special-token strings in the text are encoded as the plain text they are (``encode_special_tokens``):
    crawled text is data, and a literal ``<|endoftext|>`` in it must not become a document end.
    """
    backend = tokenizer.backend_tokenizer  # the HF wrapper would warn about texts longer than the model
    before = backend.encode_special_tokens
    total = total if total is not None else (len(texts) if isinstance(texts, list) else None)
    done, batch = 0, []
    try:
        for text in texts:
            batch.append(text)
            if len(batch) == ENCODE_BATCH:
                yield from _encode_batch(backend, batch)
                done += len(batch)
                batch = []
                progress(done, total, f"tokenized {what}")
        if batch:
            yield from _encode_batch(backend, batch)
            progress(done + len(batch), total, f"tokenized {what}")
    finally:
        backend.encode_special_tokens = before


def _encode_batch(backend, texts: list[str]) -> Iterator[np.ndarray]:
    backend.encode_special_tokens = True
    encodings = backend.encode_batch(texts, add_special_tokens=False)
    for enc in encodings:
        yield np.asarray(enc.ids, dtype=np.int32)


def _repeat(items: list, copies: float, rng: random.Random) -> list:
    """``copies`` copies of ``items``: whole copies, then a random part for the fraction."""
    whole, frac = int(copies), copies - int(copies)
    out = items * whole
    extra = round(frac * len(items))
    if extra:
        out += rng.sample(items, extra)
    return out


def _synthetic_texts(cfg: TokenizeConfig, knowledge_graph: Path | None, rng: random.Random) -> list[str]:
    """QA documents from the knowledge graph, each copy rendered with its own seed (other templates)."""
    from cpt_core.data.knowledge_graph import load_facts, qa_documents

    if not (cfg.synthetic_qa and knowledge_graph):
        return []
    copies = cfg.epochs_of_synthetic if cfg.epochs_of_synthetic is not None else cfg.epochs_of_domain
    facts = load_facts(Path(knowledge_graph))
    whole, frac = int(copies), copies - int(copies)
    texts = []
    for copy in range(whole):
        texts += qa_documents(facts, cfg.seed + copy)
    if frac:
        # The fraction is of the documents sampled from (several per fact), not of the facts.
        last = qa_documents(facts, cfg.seed + whole)
        texts += rng.sample(last, round(frac * len(last)))
    return texts


# ---------------------------------------------------------------------------------------------------------
# The stage


def _scan(docs_dir: Path, unreadable: list[Unreadable], fraction: float) -> tuple[ContentClusters, int, dict]:
    """First pass: content clusters of every document (hashes and band keys only, and only when something is
    to be held out), the number of documents and drop counts."""
    dropped: dict[str, int] = {}
    clusters, n_docs = ContentClusters(), 0
    for doc in iter_documents(docs_dir, unreadable, dropped):
        n_docs += 1
        if fraction > 0:
            clusters.add(doc["text"], doc["metadata"].get("language"))
    _count_unreadable(unreadable, dropped)
    return clusters, n_docs, dropped


def _encode_domain(
    docs_dir: Path, held: set[int], rule: str, out: Path, cache: TokenCache, tokenizer, progress: ProgressFn,
    fallback: Path | None, n_docs: int,
) -> tuple[list[int], dict[str, list[int]], set[str]]:
    """Second pass: write the held-out file and tokenize the training documents into ``cache``.

    Returns the cache refs of the training documents, (tokens, bytes) per language for tokens/byte and the
    ids of the held-out documents.
    """
    path = out / HELDOUT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    per_language: dict[str, list[int]] = {}
    train_meta: deque[tuple[str, str | None, int]] = deque()  # id, language, bytes: the batch being encoded
    held_ids: set[str] = set()

    with open(path, "w", encoding="utf-8") as heldout:
        if rule == "parent_heldout":
            for file in jsonl_files(fallback):
                for _, row in iter_text_rows(file):
                    heldout.write(json.dumps(row, ensure_ascii=False) + "\n")

        def train_texts() -> Iterator[str]:
            for i, doc in enumerate(iter_documents(docs_dir, [])):
                language = doc["metadata"].get("language")
                if i in held:
                    held_ids.add(doc["id"])
                if i in held or rule == "in_sample":
                    row = {"id": doc["id"], "text": doc["text"], "language": language}
                    heldout.write(json.dumps(row, ensure_ascii=False) + "\n")
                if i not in held:
                    train_meta.append((doc["id"], language, len(doc["text"].encode("utf-8"))))
                    yield doc["text"]

        refs = []
        for ids in iter_encoded(tokenizer, train_texts(), progress, "domain docs", n_docs - len(held)):
            doc_id, language, nbytes = train_meta.popleft()
            refs.append(cache.append(ids, doc_id))
            for key in ("all", language):
                if key:
                    pair = per_language.setdefault(str(key), [0, 0])
                    pair[0] += len(ids)
                    pair[1] += nbytes
    return refs, per_language, held_ids


def _stage_synthetic(
    synthetic_dir: Path | None, heldout_ids: set[str], domain_tokens: int, tokenizer, cache: TokenCache,
    progress: ProgressFn,
) -> tuple[list[int], dict]:
    """The synthesize stage's documents, tokenized, in their order, up to ``budget_multiple`` x the domain
    tokens; and the budget report. The stage's held-out split must be this one (same rule, same documents)."""
    if synthetic_dir is None:
        return [], {}
    meta_path = Path(synthetic_dir) / "synthesis.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} is missing: run the synthesize stage first")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if set(meta.get("heldout_ids", [])) != heldout_ids:
        raise ValueError(
            f"{meta_path}: the synthesize stage held out other documents than tokenize does; both must use "
            "tokenize.heldout_fraction and tokenize.heldout_max_docs (rerun synthesize)"
        )
    seen = [0]

    def read_texts() -> Iterator[str]:
        for path in jsonl_files(Path(synthetic_dir) / "documents"):
            for _, row in iter_text_rows(path):
                if row["text"].strip():
                    seen[0] += 1
                    yield row["text"]

    texts = read_texts()
    budget = round(float(meta.get("budget_multiple", 0)) * domain_tokens)
    kept, used = [], 0
    for ids in iter_encoded(tokenizer, texts, progress, "synthetic docs"):
        if used + len(ids) > budget:
            break
        kept.append(cache.append(ids, f"synthetic:{len(kept)}"))
        used += len(ids)
    offered = seen[0] + sum(1 for _ in texts)  # the rest, counted without tokenizing
    report = {"budget_multiple": meta.get("budget_multiple"), "budget_tokens": budget, "docs_offered": offered,
              "docs_used": len(kept), "tokens": used, "realised_multiple": round(used / domain_tokens, 4)
              if domain_tokens else None}  # fmt: skip
    return kept, report


def _replay_pool(cfg: TokenizeConfig, tokenizer, target: int, cache: TokenCache, progress: ProgressFn):
    """Cache refs of the replay documents to draw ``target`` tokens from, and the size of the pool."""
    from cpt_core.data.general_text import general_texts

    if not target:
        return [], 0
    pool_texts = general_texts(cfg.replay)
    # Only tokenize as much of the pool as is needed (with margin): replay text can be large.
    take, chars = [], 0
    for text in pool_texts:
        take.append(text)
        chars += len(text)
        if chars >= target * 8:
            break
    refs = [cache.append(ids, f"replay:{k}") for k, ids in enumerate(iter_encoded(tokenizer, take, progress,
                                                                                  "replay docs"))]
    if not any(cache.length(k) for k in refs):
        raise ValueError("replay text is empty after tokenization; check tokenize.replay.source")
    return refs, len(pool_texts)


def _pack(stream, cache: TokenCache, cfg: TokenizeConfig, sep: int, bos: int | None, out: Path, n_phases: int):
    """Lay documents out as ``[bos] ids sep`` and pack them into shards, writing the boundary index.

    Returns the counts: sequences, shards, and per source packed/remainder tokens and documents (and packed
    tokens per phase): each source's tokens are ``packed + remainder``, the remainder being the tail after
    the last full row.
    """
    head = 0 if bos is None else 1
    total = sum(head + cache.length(ref) + 1 for _, _, ref in stream)
    n_seq = total // cfg.seq_len
    if n_seq == 0:
        raise ValueError(f"only {total} training tokens: fewer than one sequence of seq_len={cfg.seq_len}")
    writer = PackedShardWriter(out / TRAIN_DIR, cfg.seq_len, cfg.shard_sequences, n_seq * cfg.seq_len)
    index = BoundaryIndexWriter(out / INDEX_FILE)
    counts = {k: dict.fromkeys(SOURCES, 0) for k in ("tokens", "docs", "remainder")}
    by_phase = [dict.fromkeys(SOURCES, 0) for _ in range(n_phases)]
    pos = 0
    for phase, source, ref in stream:
        ids = cache.read(ref)
        doc = np.empty(head + len(ids) + 1, dtype=np.int32)
        if head:
            doc[0] = bos
        doc[head:-1] = ids
        doc[-1] = sep
        shard, row, offset = writer.where(pos)
        kept = writer.add(doc)
        index.add(doc_id=cache.ids[ref], source=source, phase=phase, shard=shard, row=row, offset=offset,
                  length=len(doc), kept=kept)  # fmt: skip
        counts["tokens"][source] += kept
        counts["remainder"][source] += len(doc) - kept
        counts["docs"][source] += 1
        by_phase[phase][source] += kept
        pos += len(doc)
    shards = writer.close()
    index.close()
    return n_seq, shards, counts, by_phase


def run_tokenize(
    cfg: TokenizeConfig,
    docs_dir: Path,
    tokenizer_dir: Path,
    output: Path,
    knowledge_graph: Path | None = None,
    progress: ProgressFn = no_progress,
    fallback_heldout: Path | None = None,
    synthetic_dir: Path | None = None,
) -> dict:
    """Hold out, mix, tokenize and pack the curated documents into Arrow shards under ``output``.

    ``synthetic_dir`` is the synthesize stage's output: its documents join the training mix (never the
    held-out file), within the token budget it records.

    ``fallback_heldout`` (the held-out file of the run this one continues from) is scored when the corpus is
    too small to hold anything out (see ``cpt_core.data.heldout``).
    """
    from cpt_core.train.base_model import tokenizer_fingerprint

    docs_dir, tokenizer_dir, output = Path(docs_dir), Path(tokenizer_dir), Path(output)
    inputs = [docs_dir] + ([Path(knowledge_graph)] if knowledge_graph else [])
    replay_path = Path(cfg.replay.source).expanduser()
    if cfg.uses_replay() and replay_path.exists():
        inputs.append(replay_path)  # a user's replay file is an input: editing it must redo the stage
    if fallback_heldout is not None:
        inputs.append(Path(fallback_heldout))
    if synthetic_dir is not None:
        inputs.append(Path(synthetic_dir))
    extra = {"tokenizer": tokenizer_fingerprint(tokenizer_dir)}

    def work(partial: Path) -> dict:
        return _tokenize(
            cfg, docs_dir, tokenizer_dir, partial, knowledge_graph, progress, fallback_heldout, synthetic_dir
        )

    return run_stage("tokenize", output, cfg, inputs, work, extra_key=extra, code="cpt_core.data")


def _tokenize(
    cfg: TokenizeConfig,
    docs_dir: Path,
    tokenizer_dir: Path,
    out: Path,
    knowledge_graph: Path | None,
    progress: ProgressFn,
    fallback_heldout: Path | None = None,
    synthetic_dir: Path | None = None,
) -> dict:
    started = time.monotonic()
    unreadable: list[Unreadable] = []
    clusters, n_docs, dropped = _scan(docs_dir, unreadable, cfg.heldout_fraction)
    held = clusters.held_out(cfg.heldout_fraction, cfg.heldout_max_docs)
    rule = "content" if held else ("parent_heldout" if fallback_heldout is not None else "in_sample")
    tokenizer = load_fast_tokenizer(tokenizer_dir)
    meter = RateMeter()
    convention = special_tokens(tokenizer)
    sep = convention["separator_id"]
    # A BOS equal to the separator would double every document boundary: the separator already marks it.
    bos = convention["bos_id"] if convention["adds_bos"] and convention["bos_id"] != sep else None
    overhead = 1 + (bos is not None)
    phases = build_phases(cfg.weights(), cfg.schedule)
    with TokenCache(out / CACHE_FILE) as cache:
        domain = _encode_domain(docs_dir, held, rule, out, cache, tokenizer, progress, fallback_heldout, n_docs)
        domain_refs, per_language, heldout_ids = domain
        rng = random.Random(cfg.seed)
        qa_texts = _synthetic_texts(cfg, knowledge_graph, rng)
        qa_refs = [cache.append(ids, f"synthetic_qa:{k}")
                   for k, ids in enumerate(iter_encoded(tokenizer, qa_texts, progress, "synthetic QA docs"))]
        core = _repeat([("domain", k) for k in domain_refs if cache.length(k)], cfg.epochs_of_domain, rng)
        core += [("synthetic_qa", k) for k in qa_refs if cache.length(k)]
        staged_refs, staged_report = _stage_synthetic(
            synthetic_dir, heldout_ids, sum(cache.length(k) for k in domain_refs), tokenizer, cache, progress
        )
        core += [("synthetic", k) for k in staged_refs if cache.length(k)]
        core_costs = [cache.length(k) + overhead for _, k in core]
        targets = phase_targets(sum(core_costs), phases)
        replay_refs, replay_pool_docs = _replay_pool(cfg, tokenizer, sum(r for _, r in targets), cache, progress)
        replay_costs = [cache.length(k) + overhead for k in replay_refs]
        stream = plan_stream(core, core_costs, replay_refs, replay_costs, phases, targets, rng)
        meter.add(sum(cache.length(ref) for _, _, ref in stream))
        n_seq, shards, counts, by_phase = _pack(stream, cache, cfg, sep, bos, out, len(phases))
    fault_point("tokenize:shards")
    summary = _summary(cfg, counts, n_seq, shards, phases, targets, by_phase)
    summary.update({
        "docs_in": n_docs + sum(dropped.values()),
        "docs_out": n_docs - len(held),
        "dropped": dropped,
        **({"unreadable": unreadable_report(unreadable)[1]} if unreadable else {}),
        "heldout_docs": len(held),
        "heldout_rule": rule,
        "docs_by_source": {**counts["docs"], "replay_pool": replay_pool_docs},
        **({"synthetic_budget": staged_report} if staged_report else {}),
        "separator_id": sep,
        "special_tokens": {**convention, "bos_per_document": bos is not None},
        "tokens_per_byte": {k: round(t / b, 4) for k, (t, b) in sorted(per_language.items()) if b},
        "tokens_per_s": round(meter.rate, 1),
        "seconds": round(time.monotonic() - started, 2),
    })  # fmt: skip
    mix = summary["mix"]
    summary["log_line"] = (
        f"packed {n_seq} sequences of {cfg.seq_len} tokens ({summary['train_tokens']} tokens: domain "
        f"{mix['domain']:.0%}, synthetic QA {mix['synthetic_qa']:.0%}, synthetic {mix['synthetic']:.0%}, replay "
        f"{mix['replay']:.0%}) from {summary['docs_out']} domain docs ({len(held)} held out, rule {rule}); "
        f"tokenized {meter.line('tokens')}"
    )
    atomic_write_json(out / MIX_FILE, summary)
    logger.info(summary["log_line"])
    return summary


def _summary(cfg: TokenizeConfig, counts: dict, n_seq: int, shards: int, phases, targets, by_phase) -> dict:
    """The realised mix: tokens per source overall and per schedule phase, against the targets."""
    kept = n_seq * cfg.seq_len
    remainder = counts["remainder"]
    schedule = [
        {"from_fraction": p.start, "to_fraction": p.end, "weights": p.weights,
         "target_tokens": {"domain": d, "replay": r}, "tokens_by_source": tokens,
         "replay_share": round(tokens["replay"] / max(1, sum(tokens.values())), 4)}
        for p, (d, r), tokens in zip(phases, targets, by_phase, strict=True)
    ]  # fmt: skip
    return {
        "tokens_by_source": counts["tokens"],
        "mix": {k: round(v / kept, 4) for k, v in counts["tokens"].items()},
        "mix_target": phases[0].weights,
        "replay_ratio_target": round(phases[0].weights["replay"], 6),
        "schedule": schedule,
        "epochs_of_domain": cfg.epochs_of_domain,
        "sequences": n_seq,
        "seq_len": cfg.seq_len,
        "shards": shards,
        "boundary_index": INDEX_FILE,
        "train_tokens": kept,
        # Every packed token is either in a row or in the reported tail: nothing disappears unaccounted.
        "tokens_packed": kept + sum(remainder.values()),
        "tokens_dropped_remainder": sum(remainder.values()),
        "remainder_by_source": remainder,
    }
