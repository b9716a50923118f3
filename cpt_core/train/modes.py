"""What a CPT run trains: full fine-tuning, LoRA with trainable embeddings, and staged unfreezing.

- **full**: every parameter trains (the default).
- **lora** (peft): low-rank adapters on ``target_modules``, the base weights frozen. For CPT on a new
  language the vocabulary layers must move too, so with ``trainable_embeddings`` the input embedding and
  lm_head weights train *in place* (not as peft's ``modules_to_save`` copies, which would untie SmolLM2's
  tied embedding and double its memory). The final model is the adapters merged into the base: an ordinary
  HF folder, like full fine-tuning's.
- **Staged unfreezing** (``train.unfreeze``): a list of stages, each training a set of named parts until a
  step (``until_step``) or a share of the run (``until_fraction``); the last stage runs to the end. Typical
  for an extended tokenizer: ``new_embeddings`` first (the new rows learn while the rest of the model holds
  still, so random-ish new rows do not disturb trained layers), then ``lm_head``, then ``all``. The stage of a
  step is a pure function of the step number, so a resumed run freezes exactly what the original run did.

Parts: ``embeddings`` (input embedding), ``new_embeddings`` (its rows from the first added token on: a
gradient mask zeroes the old rows' gradient), ``lm_head`` (one parameter with ``embeddings`` when tied),
``norms``, ``layers`` (every decoder block), ``new_layers`` (blocks inserted by identity surgery), ``lora``
(the adapters), ``all`` (everything the mode trains). The optimizer holds the union of every stage's
parameters from the start; a frozen parameter gets no gradient, so AdamW leaves it (and its moments) alone.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

logger = logging.getLogger(__name__)

PARTS = ("embeddings", "new_embeddings", "lm_head", "norms", "layers", "new_layers", "lora", "all")
Part = Literal["embeddings", "new_embeddings", "lm_head", "norms", "layers", "new_layers", "lora", "all"]
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSettings(BaseModel):
    """``train.lora``: the adapters (peft) and whether the vocabulary layers train with them."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(16, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_LORA_TARGETS), min_length=1)
    trainable_embeddings: bool = Field(True, description="train the input embedding and lm_head in place")


class UnfreezeStage(BaseModel):
    """One stage of ``train.unfreeze``: the parts that train, until a step or a share of the run."""

    model_config = ConfigDict(extra="forbid")
    until_step: int | None = Field(None, ge=1)
    until_fraction: float | None = Field(None, gt=0, le=1)
    train: list[Part] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _one_bound(self) -> UnfreezeStage:
        if self.until_step is not None and self.until_fraction is not None:
            raise ValueError("give until_step or until_fraction, not both")
        return self

    def end(self, total_steps: int) -> int | None:
        if self.until_step is not None:
            return self.until_step
        if self.until_fraction is not None:
            return round(self.until_fraction * total_steps)
        return None


def check_stages(stages: list[UnfreezeStage]) -> None:
    """Every stage but the last needs a bound; steps and fractions must grow (checked per kind)."""
    for i, stage in enumerate(stages[:-1]):
        if stage.until_step is None and stage.until_fraction is None:
            raise ValueError(f"train.unfreeze.{i}: only the last stage may omit until_step/until_fraction")
    for attr in ("until_step", "until_fraction"):
        bounds = [getattr(s, attr) for s in stages if getattr(s, attr) is not None]
        if any(b <= a for a, b in zip(bounds, bounds[1:], strict=False)):
            raise ValueError(f"train.unfreeze: {attr} values must increase from stage to stage")


def stage_index(stages: list[UnfreezeStage], step: int, total_steps: int) -> int:
    """The stage that optimizer step ``step`` (0-based) runs in."""
    for i, stage in enumerate(stages):
        end = stage.end(total_steps)
        if end is None or step < end:
            return i
    return len(stages) - 1


# ---------------------------------------------------------------------------------------------------------
# Modes


def apply_lora(model, lora: LoraSettings):
    """Wrap ``model`` in peft LoRA adapters; the embedding and lm_head weights train too when asked."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise ImportError("train.mode: lora needs the peft package (pip install peft)") from err

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(set(lora.target_modules) - names)
    if missing:
        raise ValueError(f"train.lora.target_modules: {missing} are not modules of {type(model).__name__}")
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
        bias="none", task_type="CAUSAL_LM",
    )  # fmt: skip
    peft_model = get_peft_model(model, config)
    if lora.trainable_embeddings:
        for param in vocabulary_params(peft_model):
            param.requires_grad_(True)
    return peft_model


def vocabulary_params(model) -> list:
    """The input embedding and lm_head weights (one parameter when tied)."""
    params = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not params[0]:
        params.append(head.weight)
    return params


def _norm_params(model) -> list:
    return [m.weight for name, m in model.named_modules() if "norm" in type(m).__name__.lower() and
            getattr(m, "weight", None) is not None]  # fmt: skip


def _decoder_layers(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model.layers


def model_record(model_dir: Path, name: str) -> dict:
    path = Path(model_dir) / name
    return json.loads(path.read_text()) if path.is_file() else {}


class Unfreezer:
    """Applies ``train.unfreeze`` stages to a model: sets ``requires_grad`` and the new-rows gradient mask."""

    def __init__(self, model, stages: list[UnfreezeStage], mode_trainable: list, first_new_id: int | None,
                 new_layers: list[int]) -> None:  # fmt: skip
        check_stages(stages)
        self.model, self.stages, self.current = model, stages, None
        self.first_new_id, self.new_layers = first_new_id, new_layers
        self.mode_trainable = mode_trainable
        self._mask_handle = None
        self._lora_ids = {id(p) for n, p in model.named_parameters() if "lora_" in n}
        parts = {p for s in stages for p in s.train}
        if "new_embeddings" in parts and first_new_id is None:
            raise ValueError("train.unfreeze: new_embeddings needs a model with an extended tokenizer")
        if "new_layers" in parts and not new_layers:
            raise ValueError("train.unfreeze: new_layers needs a model grown by llama_pro surgery")
        if "lora" in parts and not self._lora_ids:
            raise ValueError("train.unfreeze: lora is a part only with train.mode: lora")

    def params(self, part: str) -> list:
        model = self.model
        if part in ("embeddings", "new_embeddings"):
            return [model.get_input_embeddings().weight]
        if part == "lm_head":
            return vocabulary_params(model)[-1:]
        if part == "norms":
            return _norm_params(model)
        if part == "layers":
            return [p for layer in _decoder_layers(model) for p in layer.parameters() if not self._is_lora(p)]
        if part == "new_layers":
            layers = _decoder_layers(model)
            return [p for i in self.new_layers for p in layers[i].parameters() if not self._is_lora(p)]
        if part == "lora":
            return [p for n, p in model.named_parameters() if "lora_" in n]
        return list(self.mode_trainable)

    def _is_lora(self, param) -> bool:
        return id(param) in self._lora_ids

    def union(self) -> list:
        """Every parameter any stage trains (what the optimizer must hold)."""
        out, seen = [], set()
        for stage in self.stages:
            for part in stage.train:
                for p in self.params(part):
                    if id(p) not in seen:
                        seen.add(id(p))
                        out.append(p)
        return out

    def apply(self, step: int, total_steps: int) -> bool:
        """Set what trains at ``step``; returns True when the stage changed."""
        index = stage_index(self.stages, step, total_steps)
        if index == self.current:
            return False
        self.current = index
        parts = set(self.stages[index].train)
        train_ids = {id(p) for part in parts for p in self.params(part)}
        for param in self.model.parameters():
            param.requires_grad_(id(param) in train_ids)
        self._set_mask(parts)
        logger.info("unfreeze stage %d from step %d: %s", index, step, ", ".join(sorted(parts)))
        return True

    def _set_mask(self, parts: set[str]) -> None:
        """Only the new rows learn when ``new_embeddings`` is asked for without the whole embedding."""
        if self._mask_handle is not None:
            self._mask_handle.remove()
            self._mask_handle = None
        whole = {"embeddings", "all"} & parts or ("lm_head" in parts and len(vocabulary_params(self.model)) == 1)
        if "new_embeddings" in parts and not whole:
            first = self.first_new_id

            def keep_new_rows(grad):
                grad = grad.clone()
                grad[:first] = 0
                return grad

            self._mask_handle = self.model.get_input_embeddings().weight.register_hook(keep_new_rows)


def set_up_mode(model, mode: str, lora: LoraSettings, stages: list[UnfreezeStage], model_dir: Path):
    """The model to train (LoRA-wrapped or not) and its ``Unfreezer`` (None without stages).

    With stages, every parameter any stage trains is left trainable here so the optimizer holds it; the
    loop then calls ``Unfreezer.apply`` before each step.
    """
    from cpt_core.train.surgery import SURGERY_FILE
    from cpt_core.train.tokenizer_ext import EXTENSION_FILE

    if mode == "lora":
        model = apply_lora(model, lora)
    if not stages:
        return model, None
    unfreezer = Unfreezer(
        model, stages, [p for p in model.parameters() if p.requires_grad],
        model_record(model_dir, EXTENSION_FILE).get("first_new_id"),
        model_record(model_dir, SURGERY_FILE).get("identity_layers", []),
    )  # fmt: skip
    union = {id(p) for p in unfreezer.union()}
    for param in model.parameters():
        param.requires_grad_(id(param) in union)
    return model, unfreezer


def final_model(model, mode: str):
    """The model to save: LoRA adapters merged into the base weights (an ordinary HF model)."""
    return model.merge_and_unload() if mode == "lora" else model
