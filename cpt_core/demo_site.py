"""The demo's website: articles about a fictional, dated knowledge graph, plus noise for every filter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DemoSiteConfig(BaseModel):
    """When enabled, the run serves a generated website on 127.0.0.1 and crawls it."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    seed: int = 7
    n_facts: int = Field(60, ge=5)
    korean_share: float = Field(0.3, ge=0, le=1, description="share of facts also written up in Korean")
    port: int = Field(0, ge=0, le=65535, description="0: any free port")
