"""The training config and the files a training run writes.

``TrainConfig`` is what a recipe's ``train:`` section holds. Fields that cannot change the trained weights
(the subprocess timeout, logging and checkpoint intervals) are declared with ``not_in_key``: changing them
keeps the stage key, so a rerun with a longer timeout resumes from the checkpoints it left.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cpt_core.stage import not_in_key
from cpt_core.train.modes import LoraSettings, UnfreezeStage, check_stages
from cpt_core.train.surgery import SurgeryConfig
from cpt_core.train.tokenizer_ext import ExtendTokenizerConfig

# The training output folder: ``final/`` (the model), the per-step metrics, the summary, the launch spec.
METRICS = "metrics.jsonl"
SUMMARY = "train_summary.json"
SPEC = "spec.json"
FINAL = "final"


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = Field(1e-4, gt=0, description="peak learning rate (lower than pretraining)")
    embedding_lr_mult: float = Field(0.1, gt=0, description="LR multiplier for embeddings and lm_head")
    new_token_lr_mult: float | None = Field(
        None, gt=0, description="LR multiplier for the rows of tokens a tokenizer extension added; default: embeddings'"
    )
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
    # A resumed run replays the same batches from the same state, so where it was cut makes no difference.
    checkpoint_every: int = not_in_key(50, ge=1, description="optimizer steps between resumable checkpoints")
    log_every: int = not_in_key(1, ge=1, description="optimizer steps between metrics lines")
    num_processes: int = Field(1, ge=1, description="accelerate processes (GPUs) per node")
    num_machines: int = Field(1, ge=1, description="nodes; the launcher reads the node rank and main address")
    sharding: Literal["none", "full", "hybrid"] = Field(
        "none",
        description="FSDP: full shards weights, gradients and optimizer state over every GPU; hybrid shards "
        "within a node and replicates across nodes; none keeps a full copy per GPU (DDP)",
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass")
    schedule: Literal["cosine", "wsd"] = Field("cosine", description="LR after warmup: cosine, or warmup-stable-decay")
    decay_ratio: float = Field(0.2, gt=0, le=1, description="wsd: share of the steps spent decaying")
    document_masking: bool = Field(
        False, description="attend only within each packed document (varlen with flash attention, else a mask)"
    )
    compile: bool = Field(False, description="torch.compile the model (GPU; worth it for long runs)")
    tensorboard: bool = not_in_key(True, description="TensorBoard logs in the training output")
    gpu_slot: str = not_in_key(
        "cptflow-gpus-{host}",
        description="Prefect global concurrency limit (1 slot) a training holds: one training per machine",
    )
    # In the key: the thread count changes the order of float reductions, hence the last bits of the weights.
    cpu_threads: int | None = Field(
        None, ge=1, description="torch threads per process when training on CPU; default: cores / processes"
    )
    timeout_s: int = not_in_key(6 * 3600, ge=10, description="the training subprocess is killed after this")
    seed: int = 0
    mode: Literal["full", "lora"] = Field("full", description="full fine-tuning, or LoRA adapters (peft)")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="used when mode is lora")
    unfreeze: list[UnfreezeStage] = Field(
        default_factory=list, description="staged unfreezing: parts trained per stage; empty: all, throughout"
    )

    @model_validator(mode="after")
    def _check_unfreeze(self) -> TrainConfig:
        if self.unfreeze:
            check_stages(self.unfreeze)
        if self.sharding != "none" and (self.mode == "lora" or self.unfreeze or self.new_token_lr_mult):
            raise ValueError(
                "train.sharding (FSDP) trains every parameter alike; it cannot be combined with train.mode: lora, "
                "train.unfreeze or train.new_token_lr_mult (LoRA's adapters are small enough for sharding: none)"
            )
        return self


class ModelConfig(BaseModel):
    """``model``: surgery and tokenizer extension applied to the base checkpoint before training."""

    model_config = ConfigDict(extra="forbid")
    surgery: SurgeryConfig = Field(default_factory=SurgeryConfig)
    extend_tokenizer: ExtendTokenizerConfig | None = Field(None, description="add tokens trained on the corpus")

    @property
    def changes_model(self) -> bool:
        return self.surgery.kind != "none" or self.extend_tokenizer is not None


def resolve_precision(precision: str) -> str:
    """accelerate's ``mixed_precision`` value: ``bf16`` or ``no``."""
    import torch

    if precision == "bf16":
        return "bf16"
    if precision == "fp32":
        return "no"
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    # On CPU, bf16 autocast is only faster where the kernels use AMX; on a 2-core Xeon with avx512_bf16 it
    # was 1.4-1.8x *slower* than fp32 per 4x256-token SmolLM2-135M step (benchmarks/cpu_precision.py), so
    # auto means fp32 there. Ask for precision: bf16 explicitly to try it.
    return "no"
