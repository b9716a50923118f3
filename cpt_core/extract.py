"""Main-text extraction from WARC files with trafilatura, as a datatrove pipeline."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.datatrove_run import ExecutorConfig


class ExtractConfig(BaseModel):
    """How main text is pulled out of HTML."""

    model_config = ConfigDict(extra="forbid")
    favour_precision: bool = True
    include_tables: bool = False
    timeout_s: float = Field(5.0, gt=0, description="per-document extraction timeout")
    min_chars: int = Field(50, ge=0, description="pages with less extracted text are dropped as 'empty'")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
