"""Measuring what was learned and what was forgotten: bits-per-byte and lm-evaluation-harness tasks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.packing import GeneralTextConfig


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    general_heldout: GeneralTextConfig = Field(
        default_factory=lambda: GeneralTextConfig(source="stdlib-docstrings", max_chars=60_000)
    )
    domain_max_chars: int = Field(60_000, ge=1000)
    bpb_seq_len: int = Field(512, ge=16)
    batch_size: int = Field(8, ge=1)
    fact_probe: bool = Field(True, description="multiple-choice probe generated from the knowledge graph")
    lm_eval_tasks: list[str] = Field(default_factory=list, description="extra lm-eval task names or YAML paths")
    lm_eval_limit: int | None = Field(None, ge=1)
