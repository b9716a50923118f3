"""Curation: language ID, quality heuristics, exact and near dedup, each a datatrove pipeline step."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.datatrove_run import ExecutorConfig
from cpt_core.dedup import ExactDedupConfig, NearDedupConfig
from cpt_core.language_id import LanguageIdConfig
from cpt_core.quality import QualityConfig

STEPS = ("language", "quality", "exact_dedup", "near_dedup")


class CurateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: LanguageIdConfig = Field(default_factory=LanguageIdConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    exact_dedup: ExactDedupConfig = Field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = Field(default_factory=NearDedupConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
