"""Optimizer, LR schedule and data order of the CPT loop (pure functions, tested on their own).

- AdamW with three parameter groups: the input embeddings and lm_head at ``lr * embedding_lr_mult`` (they
  hold the model's whole vocabulary knowledge and a full-size LR on them is the quickest way to forget),
  no weight decay on norms and biases (decaying a norm's gain toward 0 only hurts), weight decay on the
  other matrices. Tied embeddings (SmolLM2 ties lm_head to the input embedding) are one parameter and
  appear in exactly one group. Embeddings are not decayed either: AdamW's decoupled decay shrinks *every*
  row each step, including tokens the CPT data never contains, eroding exactly what replay tries to keep.
- LR: linear warmup over ``warmup_ratio`` of the steps, then cosine down to ``min_lr_ratio`` of the peak
  (a short warmup suffices when starting from a trained model; the decay anneals the new knowledge in).
- Data: the packed sequences are one stream; each epoch is a permutation seeded with ``seed + epoch``, and
  optimizer step ``s`` reads stream positions ``[s*B, (s+1)*B)`` (``B`` = micro batch x accumulation x
  processes). The batch of every step is therefore a pure function of the step number: resuming needs no
  data-loader state, fractional epochs just work, and the run is the same for any restart pattern.
"""

from __future__ import annotations

import math

from cpt_core.train.config import TrainConfig


def lr_factor(
    step: int, total_steps: int, warmup_ratio: float, min_lr_ratio: float, schedule: str = "cosine",
    decay_ratio: float = 0.2,
) -> float:  # fmt: skip
    """Multiplier of the peak LR at optimizer step ``step`` (0-based).

    ``cosine``: linear warmup, then cosine to the floor. ``wsd`` (warmup-stable-decay): linear warmup, the
    peak held, then a linear decay to the floor over the last ``decay_ratio`` of the steps; a refresh can be
    extended from a stable-phase checkpoint without re-warming.
    """
    warmup = int(round(warmup_ratio * total_steps))
    if step < warmup:
        return (step + 1) / (warmup + 1)  # never 0: the first step already learns something
    if schedule == "wsd":
        decay = max(1, int(round(decay_ratio * total_steps)))
        decay_start = max(warmup, total_steps - decay)
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start + 1) / max(1, total_steps - decay_start))
        return 1.0 - (1 - min_lr_ratio) * progress
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: embeddings/lm_head (lower LR, no decay), no-decay (norms, biases), decay (the rest)."""
    embedding_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    head = model.get_output_embeddings()
    if head is not None:
        embedding_ids |= {id(p) for p in head.parameters()}
    groups = {
        "embeddings": {"params": [], "lr": cfg.lr * cfg.embedding_lr_mult, "weight_decay": 0.0},
        "no_decay": {"params": [], "lr": cfg.lr, "weight_decay": 0.0},
        "decay": {"params": [], "lr": cfg.lr, "weight_decay": cfg.weight_decay},
    }
    seen: set[int] = set()
    # named_parameters() already skips the second name of a tied parameter; `seen` makes that a guarantee.
    for _, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if id(param) in embedding_ids:
            name = "embeddings"
        elif param.ndim < 2:
            name = "no_decay"
        else:
            name = "decay"
        groups[name]["params"].append(param)
    return [{"name": name, **group} for name, group in groups.items() if group["params"]]


def build_optimizer(model, cfg: TrainConfig, steps: int):
    """AdamW over ``param_groups`` and the warmup + cosine ``LambdaLR`` for ``steps`` optimizer steps."""
    import torch

    # Fused AdamW (one kernel for all parameters) on GPUs; the plain loop elsewhere, as fused needs CUDA.
    fused = torch.cuda.is_available()
    optimizer = torch.optim.AdamW(param_groups(model, cfg), betas=tuple(cfg.betas), fused=fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, steps, cfg.warmup_ratio, cfg.min_lr_ratio, cfg.schedule, cfg.decay_ratio),
    )
    return optimizer, scheduler


def total_steps(n_sequences: int, cfg: TrainConfig, num_processes: int) -> int:
    """Optimizer steps: ``max_steps``, else ``epochs`` passes over the sequences (at least 1)."""
    if cfg.max_steps:
        return cfg.max_steps
    per_step = cfg.micro_batch_size * cfg.grad_accum_steps * num_processes
    return max(1, math.ceil(cfg.epochs * n_sequences / per_step))


class BatchPlan:
    """Which sequences micro batch ``micro`` of optimizer step ``step`` holds on process ``rank``."""

    def __init__(self, n_sequences: int, cfg: TrainConfig, num_processes: int) -> None:
        import numpy as np

        if n_sequences == 0:
            raise ValueError("no training sequences")
        self.n = n_sequences
        self.micro = cfg.micro_batch_size
        self.accum = cfg.grad_accum_steps
        self.procs = num_processes
        self.seed = cfg.seed
        self._np = np
        self._perms: dict[int, object] = {}

    def _perm(self, epoch: int):
        if epoch not in self._perms:
            self._perms = {epoch: self._np.random.default_rng(self.seed + epoch).permutation(self.n)}
        return self._perms[epoch]

    def indices(self, step: int, micro: int, rank: int) -> list[int]:
        start = ((step * self.accum + micro) * self.procs + rank) * self.micro
        return [int(self._perm(p // self.n)[p % self.n]) for p in range(start, start + self.micro)]
