"""Crawling websites into WARC files."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CrawlConfig(BaseModel):
    """What to fetch: seeds, which hosts links may lead to, limits and politeness."""

    model_config = ConfigDict(extra="forbid")
    seed_urls: list[str] = Field(default_factory=list, description="start pages (http/https URLs)")
    sitemaps: list[str] = Field(default_factory=list, description="sitemap.xml URLs whose <loc>s are seeds")
    allowed_hosts: list[str] = Field(default_factory=list, description="hosts links may lead to; empty: the seeds' hosts")
    max_pages: int = Field(1000, ge=1)
    max_depth: int = Field(5, ge=0)
    timeout_s: float = Field(10.0, gt=0, description="per-request connect+read timeout")
    max_bytes: int = Field(5_000_000, ge=1, description="responses larger than this are dropped")
    retries: int = Field(2, ge=0, description="retries of a transient failure (connection error, 5xx)")
    user_agent: str = "cptflow/0.1 (+continued pre-training crawler)"
    respect_robots: bool = True
    revisit_unchanged: bool = Field(False, description="refetch pages the frontier says are unchanged")
