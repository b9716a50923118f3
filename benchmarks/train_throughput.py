"""Training throughput: our CPT loop against a plain transformers ``Trainer``, same model, data and lengths.

    .venv/bin/python benchmarks/train_throughput.py [--size tiny|0.5b] [--steps 12] [--seq 256] [--batch 4]

Both train a Llama-shaped model built from config (``tiny``: 4 layers of 256, for a CPU; ``0.5b``: 24
layers of 1024 with a 32k vocabulary, ~0.5B parameters, for one GPU) from the same initial weights on the
same packed sequences (random words through our tokenize stage: throughput does not depend on the text), with the same micro batch,
accumulation, precision (bf16 on a GPU that has it, else fp32) and optimizer (AdamW). Timing skips the first
two steps (start-up, allocator warm-up) on both sides: tokens/s = tokens of the remaining steps over their
wall time. MFU uses the same FLOPs per token (``6N + 12*L*H*Q*T``) and the same device peak for both
(``cpt_core/train/telemetry.py``). Last line: ``key=value`` figures; ``ratio`` = ours / Trainer tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cpt_core.train.telemetry import device_peak_flops, flops_per_token  # noqa: E402

SIZES = {
    "tiny": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=8192),
    "0.5b": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                 num_key_value_heads=8, vocab_size=32000),
}  # fmt: skip
SKIP = 2  # steps left out of the timing on both sides


def build_model(size: str, folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    cfg = LlamaConfig(**SIZES[size], tie_word_embeddings=True, max_position_embeddings=4096)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    vocab = {f"t{i}": i for i in range(cfg.vocab_size - 1)} | {"<|endoftext|>": cfg.vocab_size - 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(folder)
    return folder


def tokenize(folder: Path, model_dir: Path, vocab: int, n_rows: int, seq: int) -> tuple[Path, np.ndarray]:
    """Random-word documents through our tokenize stage into packed shards; also the rows as one array."""
    from datatrove.data import Document
    from datatrove.pipeline.writers import JsonlWriter

    from cpt_core.data.tokenize import PackedSequences, TokenizeConfig, run_tokenize

    rng = np.random.default_rng(0)
    with JsonlWriter(str(folder / "curated" / "documents")) as writer:
        for i in range(n_rows * seq // 500 + 8):
            words = " ".join(f"t{w}" for w in rng.integers(1, vocab - 1, 500))
            writer.write(Document(text=words, id=f"d{i}", metadata={}), rank=0)
    cfg = TokenizeConfig(seq_len=seq, replay_ratio=0.0, heldout_fraction=0.0, synthetic_qa=False)
    run_tokenize(cfg, folder / "curated", model_dir, folder / "tokens")
    data = PackedSequences(folder / "tokens")
    if len(data) < n_rows:
        raise RuntimeError(f"only {len(data)} packed rows for the {n_rows} the steps need")
    return folder / "tokens", np.stack([data[i] for i in range(n_rows)])


def ours(model_dir: Path, tokens_dir: Path, out: Path, args, precision: str) -> list[dict]:
    from cpt_core.train.config import METRICS, TrainConfig
    from cpt_core.train.loop import train

    cfg = TrainConfig(lr=1e-4, micro_batch_size=args.batch, grad_accum_steps=args.accum, max_steps=args.steps,
                      precision=precision, warmup_ratio=0.0, checkpoint_every=10**6, tensorboard=False)  # fmt: skip
    spec = {"model_dir": str(model_dir), "tokens_dir": str(tokens_dir), "output_dir": str(out / "out"),
            "checkpoint_dir": str(out / "ckpt"), "train": cfg.model_dump(mode="json")}  # fmt: skip
    train(spec)
    return [json.loads(line) for line in (out / "out" / METRICS).read_text().splitlines()]


def hf_trainer(model_dir: Path, rows: np.ndarray, out: Path, args, bf16: bool) -> list[float]:
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_, **__):
            times.append(time.perf_counter())

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            ids = torch.from_numpy(rows[i].astype(np.int64))
            return {"input_ids": ids, "labels": ids}

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    targs = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch, gradient_accumulation_steps=args.accum,
        max_steps=args.steps, learning_rate=1e-4, lr_scheduler_type="constant", bf16=bf16, logging_steps=10**6,
        save_strategy="no", report_to=[], dataloader_num_workers=0, seed=0, use_cpu=not torch.cuda.is_available(),
        optim="adamw_torch_fused" if torch.cuda.is_available() else "adamw_torch", disable_tqdm=True,
    )  # fmt: skip
    Trainer(model=model, args=targs, train_dataset=Rows(), callbacks=[Clock()]).train()
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=sorted(SIZES), default="0.5b" if torch.cuda.is_available() else "tiny")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--accum", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    model_dir = build_model(args.size, work / "model")
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    n_rows = args.steps * args.batch * args.accum
    tokens_dir, rows = tokenize(work, model_dir, config.vocab_size, n_rows, args.seq)
    per_step = args.batch * args.accum * args.seq
    fpt = flops_per_token(config, args.seq)
    peak, peak_from = device_peak_flops(device, bf16)

    metrics = ours(model_dir, tokens_dir, work / "ours", args, "bf16" if bf16 else "fp32")
    t = [m["elapsed"] for m in metrics]
    ours_tps = per_step * (len(t) - SKIP) / (t[-1] - t[SKIP - 1])
    stamps = hf_trainer(model_dir, rows, work / "hf", args, bf16)
    hf_tps = per_step * (len(stamps) - SKIP) / (stamps[-1] - stamps[SKIP - 1])

    params = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_config(config).parameters())
    print(f"model {args.size}: {params / 1e6:.1f}M parameters, seq {args.seq}, micro batch {args.batch} x accumulation "
          f"{args.accum}, {args.steps} steps ({SKIP} untimed), {'bf16' if bf16 else 'fp32'} on {device} "
          f"({torch.get_num_threads()} threads); peak {peak / 1e12 if peak else float('nan'):.2f} TFLOP/s ({peak_from})")
    print("| trainer | tokens/s | MFU |\n|---|---|---|")
    mfu = {k: (v * fpt / peak if peak else float("nan")) for k, v in (("ours", ours_tps), ("hf", hf_tps))}
    print(f"| transformers Trainer (reference) | {hf_tps:,.0f} | {mfu['hf']:.1%} |")
    print(f"| cptflow loop | {ours_tps:,.0f} | {mfu['ours']:.1%} |")
    print(f"device={device.type} size={args.size} tokens_per_s={ours_tps:.0f} baseline_tokens_per_s={hf_tps:.0f} "
          f"ratio={ours_tps / hf_tps:.3f} mfu={mfu['ours']:.4f} baseline_mfu={mfu['hf']:.4f}")


if __name__ == "__main__":
    main()
