"""Tokenizer extension for a new language: train new tokens, merge them in, resize and initialise the model.

Algorithm (``extend_model``):

1. **Train candidates.** A byte-level BPE is trained with ``tokenizers`` on the training texts, using the base
   tokenizer's own normalizer and pre-tokenizer, so its words are cut exactly as the base cuts them. Its
   vocabulary, in creation order (most frequent merges first), is the list of candidate tokens.
2. **Merge without moving an id.** The base vocabulary and merge list are kept as they are; a candidate is
   appended (next free id, merge at the end of the list) only if the *current* tokenizer (base plus the merges
   added so far) splits it into exactly two pieces, so the one new merge makes it reachable. Candidates the
   base already has, or that the base's own higher-priority merges would cut differently, are skipped: a token
   the tokenizer can never produce would be a dead embedding row. Up to ``new_tokens`` are added.
3. **Resize** the input embeddings and lm_head (tied or not) to the new length rounded up to a multiple of
   ``pad_to_multiple_of`` (64: tensor-core friendly shapes).
4. **Initialise** each new row as the mean of the rows of the base sub-tokens the base tokenizer cut it into
   (``subtoken_mean``; the lm_head row likewise from the lm_head rows when untied), so the model starts out
   reading a new token roughly as it read its pieces; ``mean`` gives every new row the mean of all old rows.
   Padding rows get the mean of all old rows (never produced by the tokenizer, but kept harmless).
5. **Report** tokens per UTF-8 byte of held-out text, per language, with the base and the extended tokenizer.

Trade-off: appended merges rank below every base merge, so where the base already merges a language's bytes
differently some candidates are unreachable and skipped; training candidates on the base's pieces would reach
more of them but needs a custom trainer. Only byte-level BPE tokenizers (GPT-2, SmolLM2, Llama 3 style) are
supported: their alphabet covers every byte, so no new text is ever unknown.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

logger = logging.getLogger(__name__)

EXTENSION_FILE = "tokenizer_extension.json"


class ExtendTokenizerConfig(BaseModel):
    """``model.extend_tokenizer``: how many tokens to add and how to initialise their rows."""

    model_config = ConfigDict(extra="forbid")
    new_tokens: int = Field(..., ge=1, description="tokens to add (fewer when the corpus yields fewer)")
    init: Literal["subtoken_mean", "mean"] = Field(
        "subtoken_mean", description="new rows: mean of the token's old sub-tokens, or mean of all old rows"
    )
    pad_to_multiple_of: int = Field(64, ge=1, description="embedding rows rounded up to a multiple of this")
    min_frequency: int = Field(2, ge=1, description="a candidate must occur this often in the corpus")
    candidate_factor: float = Field(3.0, ge=1, description="candidates trained per wanted token")
    heldout_fraction: float = Field(0.05, ge=0, lt=1, description="documents kept out to measure tokens/byte")


# ---------------------------------------------------------------------------------------------------------
# The BPE model inside tokenizer.json


class _Bpe:
    """A byte-level BPE model (vocab + ranked merges) that can segment one pre-tokenized word."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        self.vocab = dict(vocab)
        self.merges = list(merges)
        self.ranks = {pair: i for i, pair in enumerate(self.merges)}

    def segment(self, word: str) -> list[str]:
        """The pieces BPE cuts ``word`` (a byte-level string) into: lowest-ranked adjacent pair first."""
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(parts, parts[1:], strict=False))]
            ranked = [(r, i) for r, i in ranked if r is not None]
            if not ranked:
                break
            rank = min(r for r, _ in ranked)
            pair = self.merges[rank]
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def add(self, token: str, pair: tuple[str, str], token_id: int) -> None:
        self.vocab[token] = token_id
        self.ranks[pair] = len(self.merges)
        self.merges.append(pair)


def _read_bpe(tokenizer_json: dict, where: Path) -> tuple[_Bpe, bool]:
    model = tokenizer_json.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(f"{where}: tokenizer extension needs a BPE tokenizer, found {model.get('type')!r}")
    if not _is_byte_level(tokenizer_json.get("pre_tokenizer")):
        raise ValueError(f"{where}: tokenizer extension supports byte-level BPE tokenizers (GPT-2/SmolLM2 style)")
    raw = model.get("merges") or []
    as_lists = bool(raw) and isinstance(raw[0], list)
    merges = [tuple(m) if as_lists else tuple(m.split(" ", 1)) for m in raw]
    return _Bpe(model["vocab"], merges), as_lists


def _is_byte_level(pre_tokenizer: dict | None) -> bool:
    if not pre_tokenizer:
        return False
    if pre_tokenizer.get("type") == "ByteLevel":
        return True
    return any(_is_byte_level(p) for p in pre_tokenizer.get("pretokenizers") or [])


# ---------------------------------------------------------------------------------------------------------
# Choosing and merging new tokens


def train_candidates(texts: list[str], base_dir: Path, vocab_size: int, min_frequency: int) -> list[str]:
    """Tokens (byte-level strings) a BPE trained on ``texts`` with the base's pre-tokenizer learns, in order."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    base = Tokenizer.from_file(str(Path(base_dir) / "tokenizer.json"))
    aux = Tokenizer(models.BPE())
    if base.normalizer is not None:
        aux.normalizer = base.normalizer
    aux.pre_tokenizer = base.pre_tokenizer
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + vocab_size, min_frequency=min_frequency, initial_alphabet=alphabet,
        show_progress=False,
    )  # fmt: skip
    aux.train_from_iterator(texts, trainer=trainer)
    ordered = sorted(aux.get_vocab().items(), key=lambda kv: kv[1])
    return [token for token, _ in ordered if len(token) > 1]


def merge_tokens(bpe: _Bpe, candidates: list[str], wanted: int, first_id: int) -> list[str]:
    """Append up to ``wanted`` reachable candidates to ``bpe`` (ids from ``first_id``); returns those added."""
    added: list[str] = []
    for token in candidates:
        if len(added) == wanted:
            break
        if token in bpe.vocab:
            continue
        pieces = bpe.segment(token)
        if len(pieces) != 2 or any(p not in bpe.vocab for p in pieces):
            continue
        bpe.add(token, (pieces[0], pieces[1]), first_id + len(added))
        added.append(token)
    return added


def extend_tokenizer(base_dir: Path, output: Path, texts: list[str], cfg: ExtendTokenizerConfig) -> dict:
    """Write the extended tokenizer into ``output``; returns the record of what was added."""
    from transformers import AutoTokenizer

    base_dir, output = Path(base_dir), Path(output)
    path = base_dir / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{base_dir} has no tokenizer.json: tokenizer extension needs a fast tokenizer")
    data = json.loads(path.read_text(encoding="utf-8"))
    bpe, as_lists = _read_bpe(data, path)
    base_tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    used = [*bpe.vocab.values(), *(t["id"] for t in data.get("added_tokens", []))]
    first_id = max(len(base_tokenizer), max(used, default=-1) + 1)
    base_bpe = _Bpe(bpe.vocab, bpe.merges)
    candidates = train_candidates(texts, base_dir, int(cfg.new_tokens * cfg.candidate_factor), cfg.min_frequency)
    added = merge_tokens(bpe, candidates, cfg.new_tokens, first_id)
    if not added:
        raise ValueError(f"tokenizer extension: the corpus ({len(texts)} texts) yielded no new reachable token")
    data["model"]["vocab"] = bpe.vocab
    data["model"]["merges"] = [list(m) if as_lists else " ".join(m) for m in bpe.merges]

    output.mkdir(parents=True, exist_ok=True)
    base_tokenizer.save_pretrained(str(output))  # tokenizer_config.json, special tokens
    (output / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    for stale in ("vocab.json", "merges.txt"):  # slow-tokenizer files would describe the old vocabulary
        (output / stale).unlink(missing_ok=True)
    # Reload and save once through transformers so the folder is exactly what save_pretrained writes.
    extended = AutoTokenizer.from_pretrained(str(output))
    extended.save_pretrained(str(output))
    # The base ids each new token was made of: what subtoken_mean initialises its row from.
    segments = {t: [base_bpe.vocab[p] for p in base_bpe.segment(t)] for t in added}
    return {
        "base_vocab": len(base_tokenizer),
        "new_vocab": len(extended),
        "first_new_id": first_id,
        "added": len(added),
        "candidates": len(candidates),
        "subtokens": segments,
    }


# ---------------------------------------------------------------------------------------------------------
# Resizing and initialising the model


def padded_rows(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def resize_and_init(model, record: dict, init: str, multiple: int) -> dict:
    """Resize embeddings/lm_head to ``new_vocab`` padded to ``multiple`` and initialise the new rows."""
    import torch

    emb_old = model.get_input_embeddings().weight.detach().clone()
    head = model.get_output_embeddings()
    tied = head is None or head.weight is model.get_input_embeddings().weight
    head_old = None if tied else head.weight.detach().clone()
    old_rows = emb_old.shape[0]
    rows = max(old_rows, padded_rows(record["new_vocab"], multiple))
    model.resize_token_embeddings(rows, mean_resizing=False)
    base = record["base_vocab"]
    with torch.no_grad():
        for weight, old in ((model.get_input_embeddings().weight, emb_old), (None if tied else
                            model.get_output_embeddings().weight, head_old)):  # fmt: skip
            if weight is None:
                continue
            mean = old[:base].mean(dim=0)
            weight[record["first_new_id"] :] = mean
            if init == "subtoken_mean":
                for i, pieces in enumerate(record["subtokens"].values()):
                    weight[record["first_new_id"] + i] = old[pieces].mean(dim=0)
    model.config.vocab_size = rows
    return {"rows_before": old_rows, "rows_after": rows, "tied": tied}


def tokens_per_byte(tokenizer, texts_by_language: dict[str, list[str]]) -> dict[str, float]:
    """Tokens per UTF-8 byte of each language's texts (and ``all``)."""
    totals: dict[str, list[int]] = {}
    for language, texts in texts_by_language.items():
        for text in texts:
            n_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            for key in (language, "all"):
                acc = totals.setdefault(key, [0, 0])
                acc[0] += n_tokens
                acc[1] += len(text.encode("utf-8"))
    return {k: round(t / b, 5) for k, (t, b) in sorted(totals.items()) if b}


def split_heldout(docs: list[dict], fraction: float) -> tuple[list[str], dict[str, list[str]]]:
    """Training texts and held-out texts by language, split by a stable hash of each document id."""
    import hashlib

    train, heldout = [], {}
    for doc in docs:
        bucket = int(hashlib.sha256(str(doc["id"]).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        if bucket < fraction:
            heldout.setdefault(str(doc.get("metadata", {}).get("language") or "unknown"), []).append(doc["text"])
        else:
            train.append(doc["text"])
    if not heldout:  # too few documents for the fraction: measure on the training texts themselves
        for doc in docs:
            heldout.setdefault(str(doc.get("metadata", {}).get("language") or "unknown"), []).append(doc["text"])
    return train, heldout


def extend_model(base_dir: Path, output: Path, docs: list[dict], cfg: ExtendTokenizerConfig) -> dict:
    """Extended tokenizer + resized, initialised model in ``output`` (an ordinary HF folder); the report."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir, output = Path(base_dir), Path(output)
    train_texts, heldout = split_heldout(docs, cfg.heldout_fraction)
    if not train_texts:
        raise ValueError("tokenizer extension: no documents to train new tokens on")
    record = extend_tokenizer(base_dir, output, train_texts, cfg)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    shape = resize_and_init(model, record, cfg.init, cfg.pad_to_multiple_of)
    model.save_pretrained(str(output), safe_serialization=True)
    before = tokens_per_byte(AutoTokenizer.from_pretrained(str(base_dir)), heldout)
    after = tokens_per_byte(AutoTokenizer.from_pretrained(str(output)), heldout)
    report = {
        **{k: v for k, v in record.items() if k != "subtokens"},
        **shape,
        "init": cfg.init,
        "tokens_per_byte_before": before,
        "tokens_per_byte_after": after,
        "heldout_docs": sum(len(v) for v in heldout.values()),
    }
    (output / EXTENSION_FILE).write_text(json.dumps(report, indent=2) + "\n")
    logger.info("tokenizer extension: +%d tokens, tokens/byte %s -> %s", record["added"], before, after)
    return report


def copy_model_folder(src: Path, dst: Path) -> None:
    """Copy an HF model folder's files (not sub-folders) into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for path in Path(src).iterdir():
        if path.is_file():
            shutil.copy2(path, dst / path.name)
