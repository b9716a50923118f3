"""Bits per byte (bpb): how well a model predicts held-out text, comparable across tokenizers.

Per-token loss is not comparable across tokenizers (a tokenizer extended for Korean splits the same text
into fewer tokens, so each token carries more information); dividing the summed negative log-likelihood by
the text's UTF-8 bytes is. ``bpb = sum(NLL in nats) / (ln 2 * bytes)``.

Trade-offs of the scoring, stated once:

* Each text is tokenised alone, without the tokenizer's own special tokens, and one *prefix* token is put in
  front: the document separator the CPT data uses (``packing.separator_id``: ``<|endoftext|>`` when the
  vocabulary has it, else EOS), so a text starts the way every training document does; BOS when there is
  neither. The prefix is context, never a target, so every token of the text is scored exactly once and
  nothing that is not in the text is scored (EOS after the text is not scored: the byte count has no end
  marker either). With no such token at all the first token of each text has nothing to be predicted from
  and is left unscored (reported as ``unscored_tokens``). Measured on SmolLM2-135M-Instruct, whose BOS is
  the chat token ``<|im_start|>``: prefixing ``<|endoftext|>`` instead gives 1.4% lower bpb.
* A text longer than ``seq_len`` is cut into windows of ``seq_len`` tokens that overlap by one token, so each
  target is predicted once; tokens just after a window boundary see a short context, which raises bpb a
  little compared with a sliding window, but costs one forward pass per window instead of many, and is the
  same for the base and the trained model, so their difference is unaffected.
* Windows are sorted by length and batched with right padding and an attention mask; padded positions carry
  no loss. Batching changes the sums only by floating-point rounding.

``torch`` is imported inside the functions that need it: ``config.py`` imports the evaluate stage's config,
and loading a config must not take the seconds that import takes.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from cpt_core.data.tokenize import separator_id
from cpt_core.progress import ProgressFn, no_progress

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


def _default_device(model) -> torch.device:
    return next(model.parameters()).device


def prefix_token_id(tokenizer) -> int | None:
    """The token put before every scored text: the CPT document separator, else BOS, else None."""
    try:
        return separator_id(tokenizer)
    except ValueError:
        return tokenizer.bos_token_id


def score_texts(
    model,
    tokenizer,
    texts: list[str],
    seq_len: int,
    batch_size: int,
    device=None,
    progress: ProgressFn = no_progress,
) -> tuple[list[float], list[int], int]:
    """Per-text summed NLL (nats) and scored-token counts, plus the number of unscored tokens."""
    import torch
    import torch.nn.functional as F

    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2 (got {seq_len})")
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos and seq_len > max_pos:
        logger.warning("bpb seq_len %d exceeds the model's %d positions: using %d", seq_len, max_pos, max_pos)
        seq_len = max_pos
    device = torch.device(device) if device is not None else _default_device(model)
    prefix = prefix_token_id(tokenizer)
    pad_id = next(t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if t is not None)

    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    windows: list[tuple[int, list[int]]] = []
    unscored = 0
    for index, ids in enumerate(encoded):
        seq = ([prefix] if prefix is not None else []) + list(ids)
        if prefix is None and ids:
            unscored += 1
        # Consecutive windows share one token: the last input of one is the first of the next, so every
        # target after the first position is predicted exactly once.
        start = 0
        while start < len(seq) - 1:
            windows.append((index, seq[start : start + seq_len]))
            start += seq_len - 1
    # Longest first: similar lengths share a batch (little padding), and a memory error shows up at once.
    windows.sort(key=lambda w: -len(w[1]))

    nll = [0.0] * len(texts)
    tokens = [0] * len(texts)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in range(0, len(windows), batch_size):
                batch = windows[b : b + batch_size]
                width = len(batch[0][1])
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, (_, ids) in enumerate(batch):
                    input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                    mask[row, : len(ids)] = 1
                input_ids, mask = input_ids.to(device), mask.to(device)
                logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
                targets = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
                losses = F.cross_entropy(
                    logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none"
                ).view(len(batch), -1)
                per_row = losses.sum(dim=1).double().cpu().tolist()
                for (index, ids), loss in zip(batch, per_row, strict=True):
                    nll[index] += loss
                    tokens[index] += len(ids) - 1
                progress(min(b + batch_size, len(windows)), len(windows), "bpb windows scored")
    finally:
        model.train(was_training)
    return nll, tokens, unscored


def bpb_summary(texts: list[str], nll: list[float], tokens: list[int]) -> dict:
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    total_nll = float(sum(nll))
    total_tokens = int(sum(tokens))
    return {
        "bpb": total_nll / (math.log(2) * n_bytes) if n_bytes else float("nan"),
        "nll_nats": total_nll,
        "tokens": total_tokens,
        "bytes": n_bytes,
        "texts": len(texts),
        "tokens_per_byte": total_tokens / n_bytes if n_bytes else float("nan"),
    }


def bits_per_byte(
    model,
    tokenizer,
    texts: list[str],
    seq_len: int,
    batch_size: int,
    device=None,
    progress: ProgressFn = no_progress,
) -> dict:
    """Bits per UTF-8 byte of ``texts`` under ``model``: ``{bpb, nll_nats, tokens, bytes, texts, ...}``.

    See the module docstring for how texts are prefixed, windowed and batched. Empty texts are ignored.
    """
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("bits_per_byte: no non-empty text to score")
    nll, tokens, unscored = score_texts(model, tokenizer, texts, seq_len, batch_size, device, progress)
    return {**bpb_summary(texts, nll, tokens), "unscored_tokens": unscored}

