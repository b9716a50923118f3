"""Tokenization into packed fixed-length sequences in Arrow shards, with replay and synthetic mixing.

Algorithm (``run_tokenize``):

1. Read the curated documents (datatrove JSONL, in sorted file order).
2. Hold out a share of them for evaluation, chosen by a hash of the document id: the same document is held
   out in every run and on every machine, whatever the order or the other documents, so a refresh run never
   trains on what an earlier run evaluated on.
3. Training text = the remaining domain documents + synthetic question/answer documents from the knowledge
   graph (several phrasings per fact; this lifts fact recall well above articles alone) + the synthesize
   stage's documents (``synthetic``: restatements of the training split only, taken in their own order up to
   ``budget_multiple`` times the domain tokens, as ``synthesis.json`` beside them says) + *replay*: general
   text sized so it makes up ``replay_ratio`` of the training tokens, which is what keeps forgetting down.
   Domain and synthetic documents are repeated ``epochs_of_domain`` times (small domain corpora need several
   passes; replay is not repeated more than needed), and every document is shuffled with ``seed`` so copies
   of a document are not adjacent.
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
5. Write Arrow IPC shards (``train/shard-00000.arrow``, one ``list<int32>`` column ``input_ids``) that the
   trainer memory-maps, plus ``heldout/domain.jsonl`` and ``mix.json`` (the realised mix by source).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from cpt_core.data.general_text import GeneralTextConfig
from cpt_core.data.heldout import split_heldout
from cpt_core.faults import fault_point
from cpt_core.io import (
    Unreadable,
    atomic_write_json,
    iter_text_rows,
    jsonl_files,
    unreadable_report,
    write_jsonl,
)
from cpt_core.progress import ProgressFn, RateMeter, no_progress
from cpt_core.stage import run_stage

logger = logging.getLogger(__name__)

TRAIN_DIR = "train"
HELDOUT_FILE = "heldout/domain.jsonl"
MIX_FILE = "mix.json"
SHARD_PATTERN = "shard-{:05d}.arrow"
SCHEMA = pa.schema([pa.field("input_ids", pa.list_(pa.int32()))])
SOURCES = ("domain", "synthetic_qa", "synthetic", "replay")
ENCODE_BATCH = 256




class TokenizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq_len: int = Field(256, ge=16)
    heldout_fraction: float = Field(0.1, ge=0, lt=1, description="share of domain documents kept for evaluation")
    heldout_max_docs: int = Field(200, ge=1)
    replay_ratio: float = Field(0.25, ge=0, lt=1, description="share of training tokens drawn from replay text")
    replay: GeneralTextConfig = Field(default_factory=GeneralTextConfig)
    synthetic_qa: bool = Field(True, description="add question/answer lines synthesised from the knowledge graph")
    epochs_of_domain: float = Field(1.0, gt=0, description="copies of the domain+synthetic tokens in the shards")
    epochs_of_synthetic: float | None = Field(
        None, gt=0, description="copies of the synthetic QA documents; default: epochs_of_domain"
    )
    shard_sequences: int = Field(4096, ge=1, description="sequences per Arrow shard")
    seed: int = 0


# ---------------------------------------------------------------------------------------------------------
# Reading documents and holding some out


def read_documents(
    docs_dir: Path, unreadable: list[Unreadable] | None = None
) -> tuple[list[dict], dict[str, int]]:
    """Documents ``{id, text, metadata}`` from ``docs_dir/documents/*.jsonl[.gz]``, and drop counts.

    A malformed line or a corrupt file raises, naming the file and line; given an ``unreadable`` list, it is
    noted there and counted as a drop (``malformed_json``, ``no_text``, ``corrupt_file``) instead.
    """
    folder = Path(docs_dir) / "documents"
    files = jsonl_files(folder) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no documents to tokenize: {folder} holds no .jsonl/.jsonl.gz files")
    docs, dropped = [], {}
    for path in files:
        for lineno, row in iter_text_rows(path, unreadable):
            text = row["text"]
            if not text.strip():
                dropped["empty_text"] = dropped.get("empty_text", 0) + 1
                continue
            doc_id = str(row.get("id") or f"{path.name}:{lineno}")
            docs.append({"id": doc_id, "text": text, "metadata": row.get("metadata") or {}})
    for item in unreadable or []:
        dropped[item.reason] = dropped.get(item.reason, 0) + 1
    for place in unreadable_report(unreadable or [])[1]:
        logger.warning("unreadable input: %s", place)
    return docs, dropped


# ---------------------------------------------------------------------------------------------------------
# Tokenizing and mixing


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
    """Token ids of each text, no special tokens added, in batches through the Rust tokenizer.

    Special-token strings in the text are encoded as the plain text they are (``encode_special_tokens``):
    crawled text is data, and a literal ``<|endoftext|>`` in it must not become a document end.
    """
    backend = tokenizer.backend_tokenizer  # the HF wrapper would warn about texts longer than the model
    out: list[list[int]] = []
    before = backend.encode_special_tokens
    backend.encode_special_tokens = True
    try:
        for start in range(0, len(texts), ENCODE_BATCH):
            batch = backend.encode_batch(texts[start : start + ENCODE_BATCH], add_special_tokens=False)
            out.extend(enc.ids for enc in batch)
            progress(min(start + ENCODE_BATCH, len(texts)), len(texts), f"tokenized {what}")
    finally:
        backend.encode_special_tokens = before
    return out


def _repeat(items: list, copies: float, rng: random.Random) -> list:
    """``copies`` copies of ``items``: whole copies, then a random part for the fraction."""
    whole, frac = int(copies), copies - int(copies)
    out = items * whole
    extra = round(frac * len(items))
    if extra:
        out += rng.sample(items, extra)
    return out


def _replay_docs(pool: list[list[int]], target_tokens: int, overhead: int = 1) -> list[list[int]]:
    """Whole replay documents in order (cycling when short) until ``target_tokens``, counting the ``overhead``
    control tokens (separator, BOS) each document gets when packed."""
    if target_tokens <= 0:
        return []
    if not any(pool):
        raise ValueError("replay text is empty after tokenization; check tokenize.replay.source")
    out, used, i = [], 0, 0
    while used < target_tokens:
        ids = pool[i % len(pool)]
        i += 1
        if not ids:
            continue
        room = target_tokens - used - overhead  # the separator (and BOS) around it count too
        if room <= 0:
            break
        ids = ids[:room]
        out.append(ids)
        used += len(ids) + overhead
    return out


# ---------------------------------------------------------------------------------------------------------
# The stage


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
    if cfg.replay_ratio > 0 and replay_path.exists():
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


def _write_heldout(docs: list[dict], cfg: TokenizeConfig, out: Path, fallback: Path | None):
    """Split off and write the held-out file; returns (train docs, held-out count, rule)."""
    train_docs, heldout = split_heldout(docs, cfg.heldout_fraction, cfg.heldout_max_docs)
    rows = [{"id": d["id"], "text": d["text"], "language": d["metadata"].get("language")} for d in heldout]
    rule = "content"
    if not rows and fallback is not None:
        rule = "parent_heldout"
        rows = [row for path in jsonl_files(fallback) for _, row in iter_text_rows(path)]
    if not rows:
        rule = "in_sample"
        rows = [{"id": d["id"], "text": d["text"], "language": d["metadata"].get("language")} for d in docs]
    write_jsonl(rows, out / HELDOUT_FILE)
    return train_docs, len(heldout), rule


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


def _stage_synthetic(
    synthetic_dir: Path | None, heldout_ids: set[str], domain_tokens: int, tokenizer, progress: ProgressFn
) -> tuple[list[list[int]], dict]:
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
    texts = [row["text"] for path in jsonl_files(Path(synthetic_dir) / "documents")
             for _, row in iter_text_rows(path) if row["text"].strip()]
    budget = round(float(meta.get("budget_multiple", 0)) * domain_tokens)
    kept, used = [], 0
    for ids in encode(tokenizer, texts, progress, "synthetic docs"):
        if used + len(ids) > budget:
            break
        kept.append(ids)
        used += len(ids)
    report = {"budget_multiple": meta.get("budget_multiple"), "budget_tokens": budget, "docs_offered": len(texts),
              "docs_used": len(kept), "tokens": used, "realised_multiple": round(used / domain_tokens, 4)
              if domain_tokens else None}
    return kept, report


def _replay_ids(
    cfg: TokenizeConfig, tokenizer, target: int, overhead: int, progress: ProgressFn
) -> tuple[list[list[int]], int]:
    """Replay documents worth ``target`` tokens, and the size of the pool they came from."""
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
    return _replay_docs(encode(tokenizer, take, progress, "replay docs"), target, overhead), len(pool_texts)


def _pack(stream_docs: list[tuple[str, list[int]]], seq_len: int, sep: int, bos: int | None = None):
    """Lay documents out as ``[bos] ids sep`` and cut the stream into rows.

    Returns (rows, packed tokens by source, docs by source, remainder tokens by source): the tokens of each
    source are ``packed + remainder``, the remainder being the tail cut off after the last full row.
    """
    head = 0 if bos is None else 1
    lengths = np.array([head + len(ids) + 1 for _, ids in stream_docs], dtype=np.int64)
    total = int(lengths.sum())
    n_seq = total // seq_len
    if n_seq == 0:
        raise ValueError(f"only {total} training tokens: fewer than one sequence of seq_len={seq_len}")
    kept = n_seq * seq_len
    flat = np.empty(total, dtype=np.int32)
    tokens_by_source = dict.fromkeys(SOURCES, 0)
    docs_by_source = dict.fromkeys(SOURCES, 0)
    remainder_by_source = dict.fromkeys(SOURCES, 0)
    pos = 0
    for (source, ids), length in zip(stream_docs, lengths, strict=True):
        if head:
            flat[pos] = bos
        flat[pos + head : pos + length - 1] = ids
        flat[pos + length - 1] = sep
        # Count only what lands in kept sequences, so the mix describes exactly what is trained on.
        in_rows = int(max(0, min(length, kept - pos)))
        tokens_by_source[source] += in_rows
        remainder_by_source[source] += int(length) - in_rows
        docs_by_source[source] += 1
        pos += int(length)
    return flat[:kept].reshape(n_seq, seq_len), tokens_by_source, docs_by_source, remainder_by_source


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
    docs, dropped = read_documents(docs_dir, unreadable)
    train_docs, n_heldout, rule = _write_heldout(docs, cfg, out, fallback_heldout)
    tokenizer = load_fast_tokenizer(tokenizer_dir)
    meter = RateMeter()
    domain_ids = encode(tokenizer, [d["text"] for d in train_docs], progress, "domain docs")
    rng = random.Random(cfg.seed)
    convention = special_tokens(tokenizer)
    sep = convention["separator_id"]
    # A BOS equal to the separator would double every document boundary: the separator already marks it.
    bos = convention["bos_id"] if convention["adds_bos"] and convention["bos_id"] != sep else None
    overhead = 1 + (bos is not None)
    synthetic_ids = encode(tokenizer, _synthetic_texts(cfg, knowledge_graph, rng), progress, "synthetic QA docs")
    core = _repeat([("domain", ids) for ids in domain_ids if ids], cfg.epochs_of_domain, rng)
    core += [("synthetic_qa", ids) for ids in synthetic_ids if ids]
    heldout_ids = {d["id"] for d in docs} - {d["id"] for d in train_docs}
    staged_ids, staged_report = _stage_synthetic(
        synthetic_dir, heldout_ids, sum(map(len, domain_ids)), tokenizer, progress
    )
    core += [("synthetic", ids) for ids in staged_ids if ids]
    core_tokens = sum(len(ids) + overhead for _, ids in core)
    # replay / (core + replay) = ratio  =>  replay = core * ratio / (1 - ratio)
    replay_target = round(core_tokens * cfg.replay_ratio / (1 - cfg.replay_ratio)) if cfg.replay_ratio else 0
    replay_ids, replay_pool_docs = _replay_ids(cfg, tokenizer, replay_target, overhead, progress)
    stream_docs = core + [("replay", ids) for ids in replay_ids]
    rng.shuffle(stream_docs)
    meter.add(sum(len(ids) for _, ids in stream_docs))
    rows, tokens_by_source, docs_by_source, remainder_by_source = _pack(stream_docs, cfg.seq_len, sep, bos)
    shards = write_shards(rows, out / TRAIN_DIR, cfg.shard_sequences)
    fault_point("tokenize:shards")
    n_seq, kept = rows.shape[0], rows.size
    mix = {k: round(v / kept, 4) for k, v in tokens_by_source.items()}
    summary = {
        "docs_in": len(docs) + sum(dropped.values()),
        "docs_out": len(train_docs),
        "dropped": dropped,
        **({"unreadable": unreadable_report(unreadable)[1]} if unreadable else {}),
        "heldout_docs": n_heldout,
        "heldout_rule": rule,
        "docs_by_source": {**docs_by_source, "replay_pool": replay_pool_docs},
        "tokens_by_source": tokens_by_source,
        "mix": mix,
        "replay_ratio_target": cfg.replay_ratio,
        **({"synthetic_budget": staged_report} if staged_report else {}),
        "epochs_of_domain": cfg.epochs_of_domain,
        "sequences": n_seq,
        "seq_len": cfg.seq_len,
        "shards": shards,
        "train_tokens": kept,
        # Every packed token is either in a row or in the reported tail: nothing disappears unaccounted.
        "tokens_packed": kept + sum(remainder_by_source.values()),
        "tokens_dropped_remainder": sum(remainder_by_source.values()),
        "remainder_by_source": remainder_by_source,
        "separator_id": sep,
        "special_tokens": {**convention, "bos_per_document": bos is not None},
        "tokens_per_byte": _tokens_per_byte(train_docs, domain_ids),
        "tokens_per_s": round(meter.rate, 1),
        "seconds": round(time.monotonic() - started, 2),
    }
    summary["log_line"] = (
        f"packed {n_seq} sequences of {cfg.seq_len} tokens ({kept} tokens: domain {mix['domain']:.0%}, "
        f"synthetic QA {mix['synthetic_qa']:.0%}, synthetic {mix['synthetic']:.0%}, replay {mix['replay']:.0%}) from {len(train_docs)} domain "
        f"docs ({n_heldout} held out, rule {rule}); tokenized {meter.line('tokens')}"
    )
    atomic_write_json(out / MIX_FILE, summary)
    logger.info(summary["log_line"])
    return summary


def _tokens_per_byte(docs: list[dict], ids: list[list[int]]) -> dict:
    """Tokens per UTF-8 byte of domain text, overall and per language (metadata['language'])."""
    totals: dict[str, list[int]] = {}
    for doc, doc_ids in zip(docs, ids, strict=True):
        nbytes = len(doc["text"].encode("utf-8"))
        for key in ("all", doc["metadata"].get("language")):
            if key:
                pair = totals.setdefault(str(key), [0, 0])
                pair[0] += len(doc_ids)
                pair[1] += nbytes
    return {k: round(t / b, 4) for k, (t, b) in sorted(totals.items()) if b}


# ---------------------------------------------------------------------------------------------------------
# Arrow shards


def write_shards(rows: np.ndarray, folder: Path, shard_sequences: int) -> int:
    """Write ``rows`` (n, seq_len) int32 as Arrow IPC files of ``shard_sequences`` rows; returns the count."""
    folder.mkdir(parents=True, exist_ok=True)
    n, seq_len = rows.shape
    shards = 0
    for start in range(0, n, shard_sequences):
        chunk = np.ascontiguousarray(rows[start : start + shard_sequences], dtype=np.int32)
        offsets = pa.array(np.arange(0, chunk.size + 1, seq_len, dtype=np.int32))
        column = pa.ListArray.from_arrays(offsets, pa.array(chunk.reshape(-1)))
        with pa.OSFile(str(folder / SHARD_PATTERN.format(shards)), "wb") as sink:
            with pa.ipc.new_file(sink, SCHEMA) as writer:
                writer.write_batch(pa.record_batch([column], schema=SCHEMA))
        shards += 1
    return shards


def shard_paths(tokens_dir: Path) -> list[Path]:
    """The shard files of a tokens folder (or of its ``train/`` folder given directly)."""
    tokens_dir = Path(tokens_dir)
    folder = tokens_dir / TRAIN_DIR if (tokens_dir / TRAIN_DIR).is_dir() else tokens_dir
    paths = sorted(folder.glob("shard-*.arrow"))
    if not paths:
        raise FileNotFoundError(f"no Arrow shards (shard-*.arrow) in {folder}: run the tokenize stage first")
    return paths


def _read_rows(path: Path) -> np.ndarray:
    """A shard as an (n, seq_len) int32 array backed by the memory-mapped file (no copy)."""
    # Not closed here: the arrays below are views into the mapping, which lives as long as they do.
    table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    column = table.column("input_ids").combine_chunks()
    if len(column) == 0:
        return np.zeros((0, 0), dtype=np.int32)
    values = column.values.to_numpy(zero_copy_only=True)
    return values.reshape(len(column), -1)


class PackedSequences:
    """Map-style dataset over the shards: ``ds[i]`` is sequence ``i`` as an int64 numpy array.

    Implements ``__len__``/``__getitem__``, which is all ``torch.utils.data`` needs, without importing torch
    here. Shards are memory-mapped, so a large token set costs no RAM until it is read.
    """

    def __init__(self, tokens_dir: Path) -> None:
        self.shards = [_read_rows(p) for p in shard_paths(tokens_dir)]
        lengths = {s.shape[1] for s in self.shards if len(s)}
        if len(lengths) > 1:
            raise ValueError(f"shards in {tokens_dir} have different sequence lengths: {sorted(lengths)}")
        self.seq_len = lengths.pop() if lengths else 0
        self.starts = np.cumsum([0] + [len(s) for s in self.shards])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: int) -> np.ndarray:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sequence {index} out of range ({len(self)} sequences)")
        index %= len(self)
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.shards[shard][index - self.starts[shard]].astype(np.int64)


def iter_sequences(tokens_dir: Path) -> Iterator[list[int]]:
    """Every packed sequence, in shard order, as a list of token ids."""
    for path in shard_paths(tokens_dir):
        yield from _read_rows(path).tolist()

