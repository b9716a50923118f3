"""Tokenization into packed fixed-length sequences in Arrow shards, with replay and synthetic mixing."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GeneralTextConfig(BaseModel):
    """A source of general (not domain) text, for replay or for measuring forgetting."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(
        "package-readmes",
        description="'package-readmes' (installed packages' long descriptions), 'stdlib-docstrings', "
        "or a path to a .txt/.jsonl file or folder",
    )
    max_chars: int = Field(200_000, ge=1000)


class TokenizeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq_len: int = Field(256, ge=16)
    heldout_fraction: float = Field(0.1, ge=0, lt=1, description="share of domain documents kept for evaluation")
    heldout_max_docs: int = Field(200, ge=1)
    replay_ratio: float = Field(0.25, ge=0, lt=1, description="share of training tokens drawn from replay text")
    replay: GeneralTextConfig = Field(default_factory=GeneralTextConfig)
    synthetic_qa: bool = Field(True, description="add question/answer lines synthesised from the knowledge graph")
    epochs_of_domain: float = Field(1.0, gt=0, description="copies of the domain+synthetic tokens in the shards")
    shard_sequences: int = Field(4096, ge=1, description="sequences per Arrow shard")
    seed: int = 0
