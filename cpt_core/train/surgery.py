"""Depth up-scaling: grow a decoder's depth before CPT, as a model-surgery step.

Two recipes, both expressed as a *layer map* (for each new layer, the old layer it copies), so the mapping is
a pure function tested on its own and the surgery itself is a copy loop:

- **SOLAR** (``kind: solar``, Kim et al. 2023, SOLAR 10.7B): take two copies of an n-layer model, drop the
  last ``m`` layers of the first and the first ``m`` of the second, and stack them: ``2(n - m)`` layers,
  ``[0 .. n-m-1] + [m .. n-1]``. The seam (layer n-m-1 followed by layer m) is a discontinuity the model
  must heal, which is why SOLAR needs continued pre-training afterwards; dropping m layers from each side
  keeps the seam between layers that were far from the ends of the original stack.
- **LLaMA-Pro** (``kind: llama_pro``, Wu et al. 2024): after every ``every`` layers insert a copy of the
  preceding block whose output projections (attention ``o_proj``, MLP ``down_proj``) are zero. With
  residual connections such a block is the identity, so the grown model computes exactly what the original
  did, and CPT starts from the original's loss rather than healing a seam. (The original recipe then trains
  only the new blocks; staged unfreezing in ``train.unfreeze`` can do that with ``train: [new_layers]``.)

The result is saved as an ordinary Hugging Face folder (config with the new ``num_hidden_layers``) that any
later stage loads with ``from_pretrained``. Layers are found at ``model.model.layers`` (Llama, Mistral, Qwen2,
SmolLM2 and their kin); other architectures fail with a message saying so.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SURGERY_FILE = "surgery.json"
ZEROED = ("o_proj", "down_proj")


class SurgeryConfig(BaseModel):
    """``model.surgery``: none, SOLAR-style depth up-scaling, or LLaMA-Pro identity block insertion."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["none", "solar", "llama_pro"] = "none"
    drop_layers: int | None = Field(None, ge=1, description="solar: m, the layers dropped from each copy")
    every: int | None = Field(None, ge=1, description="llama_pro: insert an identity block after every k layers")

    @model_validator(mode="after")
    def _check_kind(self) -> SurgeryConfig:
        if self.kind == "solar" and self.drop_layers is None:
            raise ValueError("surgery kind 'solar' needs drop_layers (m: layers dropped from each copy)")
        if self.kind == "llama_pro" and self.every is None:
            raise ValueError("surgery kind 'llama_pro' needs every (k: insert a block after every k layers)")
        return self


def solar_layer_map(n: int, m: int) -> list[int]:
    """Old layer index of each new layer: ``[0 .. n-m-1] + [m .. n-1]`` (``2(n - m)`` layers)."""
    if not 1 <= m < n:
        raise ValueError(f"surgery.drop_layers={m}: must be at least 1 and below the model's {n} layers")
    return list(range(n - m)) + list(range(m, n))


def llama_pro_layer_map(n: int, k: int) -> list[tuple[int, bool]]:
    """``(old layer, is_identity_copy)`` per new layer: a zeroed copy after every ``k`` original layers."""
    if not 1 <= k <= n:
        raise ValueError(f"surgery.every={k}: must be between 1 and the model's {n} layers")
    out: list[tuple[int, bool]] = []
    for i in range(n):
        out.append((i, False))
        if (i + 1) % k == 0:
            out.append((i, True))
    return out


def _layers(model):
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(
            f"model surgery needs a decoder with model.model.layers (Llama-style); {type(model).__name__} has none"
        )
    return inner, layers


def _zero_outputs(block) -> None:
    """Zero the block's output projections, making it the identity under its residual connections."""
    import torch

    found = {name.rsplit(".", 1)[-1] for name, _ in block.named_modules()} & set(ZEROED)
    if found != set(ZEROED):
        raise ValueError(f"identity block insertion needs {' and '.join(ZEROED)} in each block; found {sorted(found)}")
    with torch.no_grad():
        for name, module in block.named_modules():
            if name.rsplit(".", 1)[-1] in ZEROED:
                module.weight.zero_()
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()


def apply_surgery(model, cfg: SurgeryConfig) -> dict:
    """Grow ``model``'s layer stack in place per ``cfg``; returns the layer map and the depths."""
    import torch

    inner, layers = _layers(model)
    n = len(layers)
    if cfg.kind == "none":
        return {"kind": "none", "layers_before": n, "layers_after": n}
    if cfg.kind == "solar":
        plan = [(i, False) for i in solar_layer_map(n, cfg.drop_layers)]
    else:
        plan = llama_pro_layer_map(n, cfg.every)
    new_layers = []
    for new_index, (old, identity) in enumerate(plan):
        block = copy.deepcopy(layers[old])
        if identity:
            _zero_outputs(block)
        attn = getattr(block, "self_attn", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = new_index  # the KV cache indexes layers by this
        new_layers.append(block)
    inner.layers = torch.nn.ModuleList(new_layers)
    model.config.num_hidden_layers = len(new_layers)
    layer_types = getattr(model.config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == n:
        model.config.layer_types = [layer_types[old] for old, _ in plan]
    return {
        "kind": cfg.kind,
        "layers_before": n,
        "layers_after": len(new_layers),
        "layer_map": [old for old, _ in plan],
        "identity_layers": [i for i, (_, identity) in enumerate(plan) if identity],
    }


def run_surgery(cfg: SurgeryConfig, model_dir: Path, output: Path) -> dict:
    """Load ``model_dir``, grow it, save model + tokenizer into ``output`` (an ordinary HF folder)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    info = apply_surgery(model, cfg)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(output))
    (output / SURGERY_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info
