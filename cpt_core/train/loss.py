"""The training loss, normalised by the target tokens of the whole optimizer step.

The objective of one optimizer step is the mean next-token loss over *every* target token of the step: all
micro-batches of the gradient-accumulation window, on all processes. Averaging per micro-batch (what
``model(labels=...).loss`` followed by accumulation does) weighs a token of a micro-batch with few targets
more than a token of a full one; that is only right while every micro-batch holds the same number of targets,
and goes wrong as soon as labels are masked (``-100``: padding, document masking). So each micro-batch
contributes its *sum* of token losses, scaled by one factor for the whole window:

    scale = grad_accum_steps * num_processes / (targets in the window, summed over processes)

``accelerator.backward`` divides by ``grad_accum_steps`` and DDP/FSDP average gradients over processes, so
the gradient that results is exactly ``d(sum of token losses) / d(theta) / total targets``.
"""

from __future__ import annotations

from typing import Any

IGNORE_INDEX = -100


def target_count(labels) -> Any:
    """Number of next-token targets in ``labels`` (positions 1.. that are not ``IGNORE_INDEX``)."""
    return (labels[:, 1:] != IGNORE_INDEX).sum()


def token_loss_sum(model, input_ids, labels, **inputs) -> Any:
    """Sum (not mean) of the next-token cross-entropy over the target positions of ``labels``.

    ``inputs`` go to the forward pass too (``position_ids`` and a 4-D mask under document masking)."""
    import torch.nn.functional as F

    logits = model(input_ids=input_ids, **inputs).logits[:, :-1]
    targets = labels[:, 1:].to(logits.device)
    # Upcast: under bf16 autocast the logits are bf16, and a sum over many tokens needs float32.
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def backward_window(accelerator, model, micro_batches: list[tuple]) -> tuple[Any, Any]:
    """Backward every ``(input_ids, labels[, forward inputs])`` micro-batch of one optimizer step with the window-wide scale.

    Returns (sum of token losses, target tokens) of this process, detached, for logging. The optimizer step,
    clipping and zeroing stay with the caller. ``len(micro_batches)`` must be the accelerator's
    ``gradient_accumulation_steps`` (accelerate syncs gradients on the last one).
    """
    import torch

    if len(micro_batches) != accelerator.gradient_accumulation_steps:
        raise ValueError(
            f"{len(micro_batches)} micro-batches for gradient_accumulation_steps="
            f"{accelerator.gradient_accumulation_steps}"
        )
    local = sum(target_count(batch[1]) for batch in micro_batches).to(accelerator.device)
    total = accelerator.reduce(local.clone(), reduction="sum") if accelerator.num_processes > 1 else local
    # A window without a single target (every label masked) contributes no gradient rather than NaN.
    scale = accelerator.gradient_accumulation_steps * accelerator.num_processes / total.clamp(min=1)
    loss_sum = torch.zeros((), device=accelerator.device)
    for input_ids, labels, *rest in micro_batches:
        with accelerator.accumulate(model):
            micro_sum = token_loss_sum(model, input_ids, labels, **(rest[0] if rest else {}))
            accelerator.backward(micro_sum * scale)
        loss_sum += micro_sum.detach()
    return loss_sum, local
