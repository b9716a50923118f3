"""The model registry: champion pointer, promotion gate and lineage."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PromoteConfig(BaseModel):
    """Promote when the domain gain is real and the general loss stays within tolerance."""

    model_config = ConfigDict(extra="forbid")
    min_domain_bpb_gain: float = Field(0.01, description="relative domain bits/byte drop required (0.01 = 1%)")
    max_general_bpb_regression: float = Field(0.02, description="relative general bits/byte rise allowed")
    min_probe_gain: float = Field(0.0, description="fact-probe accuracy gain required, in points of 1.0")
