"""Exact and MinHash near-duplicate removal, against this run and every earlier accepted document."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ExactDedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True


class NearDedupConfig(BaseModel):
    """MinHash LSH over word n-grams: documents whose estimated Jaccard similarity is >= threshold."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    threshold: float = Field(0.7, gt=0, le=1)
    num_perm: int = Field(128, ge=16)
    ngram: int = Field(5, ge=1, description="shingle size in words (characters for scripts without spaces)")
    seed: int = 1
