"""Model-written training documents: WRAP rephrasings and EntiGraph relation discussions.

A local causal LM (any HF ``save_pretrained`` folder; the run's base model by default) rewrites training
documents in other styles:

- ``wrap_wiki`` and ``wrap_qa`` (WRAP, Maini et al. 2024): the document rephrased as an encyclopedia
  paragraph, or as questions and answers. The same facts in another register make them easier to recall
  than one wording seen many times;
- ``entigraph`` (EntiGraph, Yang et al. 2024): for pairs of entities that ``extract`` found in the same
  document, a text on how the two relate in it. Linking entities spreads one document's facts over many
  new contexts.

Prompts are templates in the config (``{document}``, and ``{entity_a}``/``{entity_b}`` for ``entigraph``).
Only training documents are fed to the generator, with every sentence held out for the probe cut from them
first, so no held-out text or probe answer reaches a prompt; outputs that still repeat such a sentence are
dropped.

Generation is the slow part, so every output is cached under ``<root>/cache/synthesize/`` by a hash of the
document, the rendered prompt, the generation settings and the model's content fingerprint: a rerun (or a
later refresh over the same documents) reuses it. Sampling is seeded per batch, so a fixed seed gives the
same documents. On a GPU machine where ``vllm`` is importable it generates (``backend: auto``); otherwise
transformers' ``generate`` runs on CPU or GPU.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cpt_core.io import atomic_write_json
from cpt_core.progress import ProgressFn, no_progress
from cpt_core.synthesize.extract import Relation

logger = logging.getLogger(__name__)

Style = Literal["wrap_wiki", "wrap_qa", "entigraph"]
STYLES = ("wrap_wiki", "wrap_qa", "entigraph")
DEFAULT_PROMPTS = {
    "wrap_wiki": "{document}\n\nRewrite the text above as a paragraph of a Wikipedia article, keeping every "
    "name, date and number:\n",
    "wrap_qa": "{document}\n\nWrite questions about the text above, each followed by its answer "
    "(Question: ... Answer: ...):\n",
    "entigraph": "{document}\n\nDiscuss how {entity_a} and {entity_b} are related according to the text "
    "above:\n",
}
_PLACEHOLDERS = {"wrap_wiki": ("document",), "wrap_qa": ("document",), "entigraph": ("document", "entity_a", "entity_b")}


class GeneratorConfig(BaseModel):
    """The local generator model behind the ``model`` strategy."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field("base", description="an HF model folder, or 'base': the run's base model")
    styles: list[Style] = Field(default_factory=lambda: list(STYLES), description="what to generate")
    prompts: dict[str, str] = Field(default_factory=dict, description="prompt template per style (overrides)")
    max_new_tokens: int = Field(256, ge=1, le=8192)
    temperature: float = Field(0.7, ge=0, le=2, description="0: greedy")
    seed: int = 0
    batch_size: int = Field(4, ge=1)
    max_document_chars: int = Field(3000, ge=100, description="a document is cut to this before prompting")
    pairs_per_document: int = Field(3, ge=0, description="entity pairs discussed per document (entigraph)")
    backend: Literal["auto", "hf", "vllm"] = Field("auto", description="auto: vLLM on a GPU when importable")

    @model_validator(mode="after")
    def _known_prompts(self):
        for style, template in self.prompts.items():
            if style not in STYLES:
                raise ValueError(f"synthesize.generator.prompts: unknown style {style!r}; styles are {', '.join(STYLES)}")
            missing = [p for p in _PLACEHOLDERS[style] if "{" + p + "}" not in template]
            if missing:
                raise ValueError(f"synthesize.generator.prompts.{style}: the template lacks {{{'}, {'.join(missing)}}}")
        return self

    def template(self, style: str) -> str:
        return self.prompts.get(style, DEFAULT_PROMPTS[style])


# ------------------------------------------------------------------------------------------------- backends


class HFGenerator:
    """transformers ``generate``, batched with left padding, seeded per batch."""

    name = "hf"

    def __init__(self, model_dir: Path, cfg: GeneratorConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.tokenizer.padding_side = "left"
        self.tokenizer.truncation_side = "left"  # the instruction comes last: cut the document's start
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir).to(self.device).eval()
        limit = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_prompt_tokens = max(8, limit - cfg.max_new_tokens)

    def generate(self, prompts: list[str]) -> list[str]:
        import torch

        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                               max_length=self.max_prompt_tokens, return_token_type_ids=False)  # fmt: skip
        batch = batch.to(self.device)
        torch.manual_seed(self.cfg.seed)
        sample = self.cfg.temperature > 0
        with torch.no_grad():
            out = self.model.generate(
                **batch, max_new_tokens=self.cfg.max_new_tokens, do_sample=sample,
                temperature=self.cfg.temperature if sample else None, top_p=None, top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )  # fmt: skip
        new = out[:, batch["input_ids"].shape[1] :]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


class VLLMGenerator:  # pragma: no cover - needs a GPU and vllm
    """vLLM's offline engine: the same prompts and settings, much faster on a GPU."""

    name = "vllm"

    def __init__(self, model_dir: Path, cfg: GeneratorConfig) -> None:
        from vllm import LLM, SamplingParams

        self.llm = LLM(model=str(model_dir), seed=cfg.seed)
        self.params = SamplingParams(temperature=cfg.temperature, max_tokens=cfg.max_new_tokens, seed=cfg.seed)

    def generate(self, prompts: list[str]) -> list[str]:
        return [o.outputs[0].text.strip() for o in self.llm.generate(prompts, self.params, use_tqdm=False)]


def backend_name(cfg: GeneratorConfig) -> str:
    """``vllm`` when asked for, or under ``auto`` when vllm is importable and a GPU is present; else ``hf``."""
    if cfg.backend != "auto":
        return cfg.backend
    if importlib.util.find_spec("vllm") is None:
        return "hf"
    import torch

    return "vllm" if torch.cuda.is_available() else "hf"


def load_generator(model_dir: Path, cfg: GeneratorConfig):
    name = backend_name(cfg)
    if name == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ImportError("synthesize.generator.backend is 'vllm' but vllm is not installed (pip install vllm)")
    return (VLLMGenerator if name == "vllm" else HFGenerator)(Path(model_dir), cfg)


# --------------------------------------------------------------------------------------------------- requests


def _cut(text: str, banned: set[str]) -> str:
    """The document without its banned (probe) sentences."""
    for sentence in sorted(banned, key=len, reverse=True):
        text = text.replace(sentence, " ")
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def _pairs(relations: list[Relation], limit: int) -> list[tuple[str, str]]:
    """Entity pairs named together in a sentence of the document, first seen first, at most ``limit``."""
    pairs: list[tuple[str, str]] = []
    for relation in relations:
        names = [m.text for m in relation.entities]
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                pair = tuple(sorted((a, b)))
                if a != b and pair not in pairs:
                    pairs.append(pair)
    return pairs[:limit]


def requests_for(cfg: GeneratorConfig, docs: list[dict], relations: list[Relation], banned: set[str]) -> list[dict]:
    """One request per (document, style[, entity pair]): ``{style, doc_id, language, prompt, doc_hash}``."""
    by_doc: dict[str, list[Relation]] = {}
    for relation in relations:
        by_doc.setdefault(relation.doc_id, []).append(relation)
    out = []
    for doc in docs:
        text = _cut(doc["text"], banned)[: cfg.max_document_chars]
        if not text.strip():
            continue
        doc_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
        language = (doc.get("metadata") or {}).get("language") or "en"
        for style in cfg.styles:
            fills = [{}] if style != "entigraph" else [
                {"entity_a": a, "entity_b": b} for a, b in _pairs(by_doc.get(doc["id"], []), cfg.pairs_per_document)
            ]
            for fill in fills:
                prompt = cfg.template(style).format(document=text, **fill)
                out.append({"style": style, "doc_id": doc["id"], "language": language, "prompt": prompt,
                            "doc_hash": doc_hash})  # fmt: skip
    return out


def cache_key(request: dict, cfg: GeneratorConfig, fingerprint: str, backend: str) -> str:
    settings = {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature, "seed": cfg.seed,
                "batch_size": cfg.batch_size, "backend": backend}  # fmt: skip
    parts = [fingerprint, request["doc_hash"], request["style"], request["prompt"], json.dumps(settings, sort_keys=True)]
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


def _cache_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / key[:2] / f"{key}.json"


def _read_cache(cache_dir: Path, key: str) -> str | None:
    path = _cache_path(cache_dir, key)
    try:
        return json.loads(path.read_text(encoding="utf-8"))["text"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None


# ------------------------------------------------------------------------------------------------ generation


def generate_documents(
    cfg: GeneratorConfig,
    model_dir: Path,
    fingerprint: str,
    requests: list[dict],
    cache_dir: Path,
    banned: set[str],
    progress: ProgressFn = no_progress,
    loader: Callable = load_generator,
) -> tuple[list[dict], dict]:
    """``(documents, stats)``: one document per request whose output is non-empty and repeats no banned
    sentence. Cached outputs are reused; the model is loaded only when something is left to generate."""
    backend = backend_name(cfg)
    keys = [cache_key(r, cfg, fingerprint, backend) for r in requests]
    texts: dict[str, str] = {}
    for key in keys:
        cached = _read_cache(cache_dir, key)
        if cached is not None:
            texts[key] = cached
    todo = [(k, r) for k, r in zip(keys, requests, strict=True) if k not in texts]
    stats = {"requests": len(requests), "cached": len(requests) - len(todo), "generated": len(todo), "dropped": {}}
    if todo:
        generator = loader(model_dir, cfg)
        for start in range(0, len(todo), cfg.batch_size):
            chunk = todo[start : start + cfg.batch_size]
            for (key, _), text in zip(chunk, generator.generate([r["prompt"] for _, r in chunk]), strict=True):
                atomic_write_json(_cache_path(cache_dir, key), {"text": text})
                texts[key] = text
            progress(min(start + cfg.batch_size, len(todo)), len(todo), "generated synthetic documents")
    docs = []
    for key, request in zip(keys, requests, strict=True):
        text = texts[key].strip()
        reason = "empty" if not text else "repeats_heldout_text" if any(s in text for s in banned) else None
        if reason:
            stats["dropped"][reason] = stats["dropped"].get(reason, 0) + 1
            continue
        docs.append({"text": text, "form": request["style"], "language": request["language"],
                     "source_docs": [request["doc_id"]], "strategy": "model"})  # fmt: skip
    return docs, stats
