"""The CPT training loop (run in a subprocess through ``accelerate launch``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = Field(1e-4, gt=0, description="peak learning rate (lower than pretraining)")
    embedding_lr_mult: float = Field(0.1, gt=0, description="LR multiplier for embeddings and lm_head")
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor as a share of peak")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    micro_batch_size: int = Field(4, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 where supported")
    checkpoint_every: int = Field(50, ge=1, description="optimizer steps between resumable checkpoints")
    log_every: int = Field(1, ge=1)
    num_processes: int = Field(1, ge=1, description="accelerate processes (GPUs)")
    timeout_s: int = Field(6 * 3600, ge=10)
    seed: int = 0
