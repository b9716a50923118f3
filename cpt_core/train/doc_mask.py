"""Document-masked attention for packed sequences: each token attends only within its own document.

Packed rows hold several documents laid out ``[bos] ids sep`` (``data/tokenize.py``). Plain causal attention
lets a document see the end of the one before it; with ``train.document_masking`` each position attends only
to earlier positions of its own document, positions restart at 0 with every document, and the first token of
a document is not a target (nothing of its document precedes it). A packed row then gives exactly the losses
its documents give run one by one.

- With flash attention (GPU), ``position_ids`` that restart per document are enough: transformers detects
  the packing and runs varlen attention, with no T x T mask.
- Otherwise (CPU, SDPA or eager attention), the exact equivalent: a 4-D additive block-diagonal causal mask.

The separator ends its document (it is that document's last token and target), so the document of a
position is the number of separators strictly before it.
"""

from __future__ import annotations

from typing import Any

from cpt_core.train.loss import IGNORE_INDEX


def document_inputs(input_ids, sep_id: int, flash: bool) -> tuple[Any, dict]:
    """Labels and forward arguments (``position_ids``, and a 4-D mask unless ``flash``) for packed rows."""
    import torch

    is_sep = (input_ids == sep_id).long()
    doc = torch.cumsum(is_sep, dim=1) - is_sep  # the separator belongs to the document it ends
    index = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    starts = torch.ones_like(doc, dtype=torch.bool)
    starts[:, 1:] = doc[:, 1:] != doc[:, :-1]
    start_index = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=1).values
    positions = index - start_index
    labels = input_ids.clone()
    labels[:, 1:][starts[:, 1:]] = IGNORE_INDEX  # a document's first token has no context of its own
    inputs: dict[str, Any] = {"position_ids": positions}
    if not flash:
        causal = index[:, :, None] >= index[:, None, :]
        allowed = (doc[:, :, None] == doc[:, None, :]) & causal
        mask = torch.zeros(allowed.shape, dtype=torch.float32, device=input_ids.device)
        inputs["attention_mask"] = mask.masked_fill(~allowed, torch.finfo(torch.float32).min)[:, None]
    return labels, inputs


def uses_flash_attention(model) -> bool:
    return "flash" in str(getattr(model.config, "_attn_implementation", "") or "")
