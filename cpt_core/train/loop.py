"""The CPT training loop (run in a subprocess through ``accelerate launch``).

Algorithm (``train``, nanoGPT style, top to bottom):

1. Load the base model in float32 (the master weights); under ``bf16`` accelerate wraps the forward pass in
   autocast while the optimizer updates stay in float32. ``auto`` picks bf16 on GPUs that support it and
   fp32 on CPU (where bf16 autocast measured slower without AMX).
2. AdamW with three parameter groups: the input embeddings and lm_head at ``lr * embedding_lr_mult`` (they
   hold the model's whole vocabulary knowledge and a full-size LR on them is the quickest way to forget),
   no weight decay on norms and biases (decaying a norm's gain toward 0 only hurts), weight decay on the
   other matrices. Tied embeddings (SmolLM2 ties lm_head to the input embedding) are one parameter and
   appear in exactly one group. Embeddings are not decayed either: AdamW's decoupled decay shrinks *every*
   row each step, including tokens the CPT data never contains, eroding exactly what replay tries to keep.
3. LR: linear warmup over ``warmup_ratio`` of the steps, then cosine down to ``min_lr_ratio`` of the peak
   (a short warmup suffices when starting from a trained model; the decay anneals the new knowledge in).
4. Data: the packed sequences are one stream; each epoch is a permutation seeded with ``seed + epoch``, and
   optimizer step ``s`` reads stream positions ``[s*B, (s+1)*B)`` (``B`` = micro batch x accumulation x
   processes). The batch of every step is therefore a pure function of the step number: resuming needs no
   data-loader state, fractional epochs just work, and the run is the same for any restart pattern.
5. Gradient accumulation and clipping through accelerate; a JSON line per ``log_every`` step in
   ``metrics.jsonl`` and a parseable line on stdout (``step 3/20 loss 4.1234 lr 1.00e-04 ...``) that the
   parent process turns into progress.
6. Every ``checkpoint_every`` steps ``accelerator.save_state`` (model, optimizer, scheduler, RNG) into
   ``checkpoint_dir/step-N`` plus ``step.json`` written last; at start the loop resumes from the newest
   complete checkpoint, so a killed run continues rather than restarts. Only the newest checkpoint is kept
   (a full optimizer state is twice the model).
7. ``save_pretrained(output_dir/"final")`` with the tokenizer, and ``train_summary.json``.

``run_train`` is the stage around it: it writes the spec, launches ``accelerate launch`` as a subprocess
(so a GPU job never runs inside the orchestrator and gets its own timeout), streams its output to the log
and progress, and keeps checkpoints outside the stage's partial folder (which a rerun wipes), tied to the
stage key so checkpoints of a different configuration are never resumed.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.io import atomic_write_json
from cpt_core.progress import ProgressFn, no_progress
from cpt_core.stage import read_manifest, run_stage, stage_key

logger = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
SUMMARY = "train_summary.json"
SPEC = "spec.json"
FINAL = "final"
CHECKPOINT_INFO = "step.json"
CHECKPOINT_KEY = "key.json"
STEP_LINE = re.compile(r"^step (\d+)/(\d+) loss ([0-9.naif+-]+)")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lr: float = Field(1e-4, gt=0, description="peak learning rate (lower than pretraining)")
    embedding_lr_mult: float = Field(0.1, gt=0, description="LR multiplier for embeddings and lm_head")
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor as a share of peak")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    micro_batch_size: int = Field(4, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    max_grad_norm: float = Field(1.0, gt=0)
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 where supported")
    checkpoint_every: int = Field(50, ge=1, description="optimizer steps between resumable checkpoints")
    log_every: int = Field(1, ge=1)
    num_processes: int = Field(1, ge=1, description="accelerate processes (GPUs)")
    cpu_threads: int | None = Field(
        None, ge=1, description="torch threads per process when training on CPU; default: cores / processes"
    )
    timeout_s: int = Field(6 * 3600, ge=10)
    seed: int = 0


# ---------------------------------------------------------------------------------------------------------
# Pieces of the loop (pure functions, tested on their own)


def resolve_precision(precision: str) -> str:
    """accelerate's ``mixed_precision`` value: ``bf16`` or ``no``."""
    import torch

    if precision == "bf16":
        return "bf16"
    if precision == "fp32":
        return "no"
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    # On CPU, bf16 autocast is only faster where the kernels use AMX; on a 2-core Xeon with avx512_bf16 it
    # was 1.4-1.8x *slower* than fp32 per 4x256-token SmolLM2-135M step (benchmarks/cpu_precision.py), so
    # auto means fp32 there. Ask for precision: bf16 explicitly to try it.
    return "no"


def lr_factor(step: int, total_steps: int, warmup_ratio: float, min_lr_ratio: float) -> float:
    """Multiplier of the peak LR at optimizer step ``step`` (0-based): linear warmup, then cosine to the floor."""
    warmup = int(round(warmup_ratio * total_steps))
    if step < warmup:
        return (step + 1) / (warmup + 1)  # never 0: the first step already learns something
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """AdamW groups: embeddings/lm_head (lower LR, no decay), no-decay (norms, biases), decay (the rest)."""
    embedding_ids = {id(p) for p in model.get_input_embeddings().parameters()}
    head = model.get_output_embeddings()
    if head is not None:
        embedding_ids |= {id(p) for p in head.parameters()}
    groups = {
        "embeddings": {"params": [], "lr": cfg.lr * cfg.embedding_lr_mult, "weight_decay": 0.0},
        "no_decay": {"params": [], "lr": cfg.lr, "weight_decay": 0.0},
        "decay": {"params": [], "lr": cfg.lr, "weight_decay": cfg.weight_decay},
    }
    seen: set[int] = set()
    # named_parameters() already skips the second name of a tied parameter; `seen` makes that a guarantee.
    for _, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if id(param) in embedding_ids:
            name = "embeddings"
        elif param.ndim < 2:
            name = "no_decay"
        else:
            name = "decay"
        groups[name]["params"].append(param)
    return [{"name": name, **group} for name, group in groups.items() if group["params"]]


def total_steps(n_sequences: int, cfg: TrainConfig, num_processes: int) -> int:
    """Optimizer steps: ``max_steps``, else ``epochs`` passes over the sequences (at least 1)."""
    if cfg.max_steps:
        return cfg.max_steps
    per_step = cfg.micro_batch_size * cfg.grad_accum_steps * num_processes
    return max(1, math.ceil(cfg.epochs * n_sequences / per_step))


class BatchPlan:
    """Which sequences micro batch ``micro`` of optimizer step ``step`` holds on process ``rank``."""

    def __init__(self, n_sequences: int, cfg: TrainConfig, num_processes: int) -> None:
        import numpy as np

        if n_sequences == 0:
            raise ValueError("no training sequences")
        self.n = n_sequences
        self.micro = cfg.micro_batch_size
        self.accum = cfg.grad_accum_steps
        self.procs = num_processes
        self.seed = cfg.seed
        self._np = np
        self._perms: dict[int, object] = {}

    def _perm(self, epoch: int):
        if epoch not in self._perms:
            self._perms = {epoch: self._np.random.default_rng(self.seed + epoch).permutation(self.n)}
        return self._perms[epoch]

    def indices(self, step: int, micro: int, rank: int) -> list[int]:
        start = ((step * self.accum + micro) * self.procs + rank) * self.micro
        return [int(self._perm(p // self.n)[p % self.n]) for p in range(start, start + self.micro)]


# ---------------------------------------------------------------------------------------------------------
# Checkpoints


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest checkpoint whose ``step.json`` was written (i.e. whose save completed)."""
    if not checkpoint_dir.is_dir():
        return None
    done = [p for p in checkpoint_dir.glob("step-*") if (p / CHECKPOINT_INFO).exists()]
    return max(done, key=lambda p: json.loads((p / CHECKPOINT_INFO).read_text())["step"], default=None)


def _save_checkpoint(accelerator, checkpoint_dir: Path, step: int, tokens: int, output_dir: Path) -> None:
    final = checkpoint_dir / f"step-{step:08d}"
    tmp = checkpoint_dir / f".tmp-step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # The metrics so far travel with the checkpoint so a resumed run reports the whole loss curve.
        if (output_dir / METRICS).exists():
            shutil.copy2(output_dir / METRICS, tmp / METRICS)
        atomic_write_json(tmp / CHECKPOINT_INFO, {"step": step, "tokens": tokens, "saved_at": time.time()})
        os.replace(tmp, final)
        for old in checkpoint_dir.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------------------------------------------------
# The loop


def train(spec: dict) -> dict:
    """Run (or resume) the CPT loop described by ``spec``; returns the summary it also writes to disk."""
    import numpy as np
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cpt_core.data.tokenize import PackedSequences

    cfg = TrainConfig.model_validate(spec["train"])
    model_dir, tokens_dir = Path(spec["model_dir"]), Path(spec["tokens_dir"])
    output_dir, checkpoint_dir = Path(spec["output_dir"]), Path(spec["checkpoint_dir"])
    mixed_precision = spec.get("mixed_precision") or resolve_precision(cfg.precision)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum_steps, mixed_precision=mixed_precision)
    set_seed(cfg.seed)
    if cfg.cpu_threads and accelerator.device.type == "cpu":
        torch.set_num_threads(cfg.cpu_threads)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)

    # -- model, optimizer, schedule
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False  # the KV cache is for generation; in training it only costs memory
    model.train()
    optimizer = torch.optim.AdamW(param_groups(model, cfg), betas=tuple(cfg.betas), fused=False)
    data = PackedSequences(tokens_dir)
    steps = total_steps(len(data), cfg, accelerator.num_processes)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps, cfg.warmup_ratio, cfg.min_lr_ratio)
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    # The scheduler is stepped by hand once per optimizer step (a prepared one steps once per process);
    # registering it puts it in the checkpoints.
    accelerator.register_for_checkpointing(scheduler)
    plan = BatchPlan(len(data), cfg, accelerator.num_processes)
    tokens_per_step = cfg.micro_batch_size * cfg.grad_accum_steps * accelerator.num_processes * data.seq_len

    # -- resume
    start_step, resumed_from = 0, None
    checkpoint = latest_checkpoint(checkpoint_dir)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        start_step = resumed_from = json.loads((checkpoint / CHECKPOINT_INFO).read_text())["step"]
        if accelerator.is_main_process:
            rows = []
            if (checkpoint / METRICS).exists():
                rows = [r for r in checkpoint.joinpath(METRICS).read_text().splitlines() if r.strip()]
            (output_dir / METRICS).write_text("".join(r + "\n" for r in rows))
        accelerator.print(f"resumed from {checkpoint.name} (step {start_step}/{steps})")
    elif accelerator.is_main_process:
        (output_dir / METRICS).write_text("")

    # -- loop
    device = accelerator.device
    started = time.monotonic()
    first_loss = last_loss = None
    for step in range(start_step, steps):
        # The LR of the main (decay) group; embeddings run at lr * embedding_lr_mult.
        lr = next((g["lr"] for g in optimizer.param_groups if g.get("name") == "decay"), scheduler.get_last_lr()[-1])
        micro_losses = []
        grad_norm = None
        for micro in range(cfg.grad_accum_steps):
            rows = [data[i] for i in plan.indices(step, micro, accelerator.process_index)]
            batch = torch.from_numpy(np.stack(rows)).to(device)
            with accelerator.accumulate(model):
                loss = model(input_ids=batch, labels=batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            micro_losses.append(loss.detach())
        scheduler.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == steps:
            mean_loss = accelerator.gather(torch.stack(micro_losses).mean().reshape(1)).mean().item()
            elapsed = time.monotonic() - started
            tokens_run = (done - start_step) * tokens_per_step
            row = {
                "step": done,
                "loss": round(mean_loss, 6),
                "lr": lr,
                "grad_norm": round(float(grad_norm), 6) if grad_norm is not None else None,
                "tokens": done * tokens_per_step,
                "tokens_per_s": round(tokens_run / elapsed, 1) if elapsed > 0 else None,
                "elapsed": round(elapsed, 3),
            }
            first_loss = mean_loss if first_loss is None else first_loss
            last_loss = mean_loss
            if accelerator.is_main_process:
                with open(output_dir / METRICS, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            accelerator.print(
                f"step {done}/{steps} loss {mean_loss:.4f} lr {lr:.2e} "
                f"grad_norm {row['grad_norm'] or 0:.3f} tok/s {row['tokens_per_s'] or 0:.0f}",
                flush=True,
            )
        if done % cfg.checkpoint_every == 0 and done < steps:
            _save_checkpoint(accelerator, checkpoint_dir, done, done * tokens_per_step, output_dir)

    # -- final model
    accelerator.wait_for_everyone()
    elapsed = time.monotonic() - started
    rows = [json.loads(r) for r in (output_dir / METRICS).read_text().splitlines() if r.strip()]
    summary = {
        "steps": steps,
        "resumed_from_step": resumed_from,
        "tokens": steps * tokens_per_step,
        "first_loss": rows[0]["loss"] if rows else first_loss,
        "final_loss": rows[-1]["loss"] if rows else last_loss,
        "tokens_per_s": round((steps - start_step) * tokens_per_step / elapsed, 1) if elapsed > 0 else None,
        "train_seconds": round(elapsed, 2),
        "precision": "bf16" if mixed_precision == "bf16" else "fp32",
        "device": str(device),
        "num_processes": accelerator.num_processes,
        "sequences": len(data),
        "seq_len": data.seq_len,
    }
    # Every process takes part in gathering the weights (FSDP/DeepSpeed shard them); the main one writes.
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.config.use_cache = True
        unwrapped.save_pretrained(output_dir / FINAL, state_dict=state_dict, safe_serialization=True)
        AutoTokenizer.from_pretrained(model_dir).save_pretrained(output_dir / FINAL)
        atomic_write_json(output_dir / SUMMARY, summary)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="cptflow CPT training loop (launch through accelerate)")
    parser.add_argument("--spec", required=True, help="JSON: model_dir, tokens_dir, output_dir, checkpoint_dir, train")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    train(json.loads(Path(args.spec).read_text()))


# ---------------------------------------------------------------------------------------------------------
# The stage: launch, stream, time out


def launch_command(spec_path: Path, cfg: TrainConfig, mixed_precision: str) -> list[str]:
    """``python -m accelerate.commands.launch ... -m cpt_core.train.loop --spec spec.json``."""
    import torch

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.num_processes)]
    cmd += ["--num_machines", "1", "--dynamo_backend", "no", "--mixed_precision", mixed_precision]
    if not torch.cuda.is_available():
        # Without this accelerate pins each CPU process to OMP_NUM_THREADS (default 1) on some machines.
        threads = cfg.cpu_threads or max(1, (os.cpu_count() or 1) // cfg.num_processes)
        cmd += ["--cpu", "--num_cpu_threads_per_process", str(threads)]
    elif cfg.num_processes > 1:
        cmd += ["--multi_gpu"]
    return cmd + ["-m", "cpt_core.train.loop", "--spec", str(spec_path)]


def run_train(
    cfg: TrainConfig, model_dir: Path, tokens_dir: Path, output: Path, progress: ProgressFn = no_progress
) -> dict:
    """Train ``model_dir`` on the shards in ``tokens_dir`` into ``output`` (``final/`` + metrics)."""
    from cpt_core.train.base_model import model_fingerprint

    model_dir, tokens_dir, output = Path(model_dir), Path(tokens_dir), Path(output)
    extra = {"model": model_fingerprint(model_dir)}
    key = stage_key("train", cfg, [tokens_dir], extra)
    checkpoint_dir = output.parent / (output.name + ".checkpoints")
    existing = read_manifest(output)
    if not (existing and existing.get("key") == key):
        _claim_checkpoints(checkpoint_dir, key)

    def work(partial: Path) -> dict:
        mixed_precision = resolve_precision(cfg.precision)
        spec = {
            "model_dir": str(model_dir.resolve()),
            "tokens_dir": str(tokens_dir.resolve()),
            "output_dir": str(partial.resolve()),
            "checkpoint_dir": str(checkpoint_dir.resolve()),
            "mixed_precision": mixed_precision,
            "train": cfg.model_dump(mode="json"),
        }
        atomic_write_json(partial / SPEC, spec)
        started = time.monotonic()
        _run_subprocess(launch_command(partial / SPEC, cfg, mixed_precision), cfg.timeout_s, partial, progress)
        summary = json.loads((partial / SUMMARY).read_text())
        summary["seconds"] = round(time.monotonic() - started, 2)
        summary["checkpoints"] = str(checkpoint_dir)
        resumed = f", resumed from step {summary['resumed_from_step']}" if summary["resumed_from_step"] else ""
        summary["log_line"] = (
            f"trained {summary['steps']} steps ({summary['tokens']} tokens) in {summary['seconds']:.1f}s "
            f"({summary['tokens_per_s'] or 0:.0f} tok/s, {summary['precision']} on {summary['device']}{resumed}); "
            f"loss {summary['first_loss']:.4f} -> {summary['final_loss']:.4f}"
        )
        logger.info(summary["log_line"])
        return summary

    manifest = run_stage("train", output, cfg, [tokens_dir], work, extra_key=extra)
    # Checkpoints exist to survive a crash; once the stage's output is in place they are dead weight.
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return manifest


def _claim_checkpoints(checkpoint_dir: Path, key: str) -> None:
    """Keep checkpoints only if they belong to this stage key (same config, data and model)."""
    key_file = checkpoint_dir / CHECKPOINT_KEY
    if checkpoint_dir.exists():
        owner = json.loads(key_file.read_text()).get("key") if key_file.exists() else None
        if owner == key:
            return
        logger.info("discarding checkpoints in %s: they belong to another configuration", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True)
    atomic_write_json(key_file, {"key": key})


def _run_subprocess(cmd: list[str], timeout_s: int, cwd: Path, progress: ProgressFn) -> None:
    """Run the training command, streaming its output; kill its process group on timeout or interruption."""
    env = dict(os.environ)
    # The child must import cpt_core even when the package is not installed (a source checkout).
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    logger.info("launching: %s", " ".join(cmd))
    proc = subprocess.Popen(
        cmd,
        cwd=str(cwd),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # its own process group: accelerate's launcher spawns the real workers
    )
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        _kill_group(proc)

    timer = threading.Timer(timeout_s, on_timeout)
    timer.daemon = True
    timer.start()
    tail: deque[str] = deque(maxlen=40)
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            logger.info("train: %s", line)
            match = STEP_LINE.match(line)
            if match:
                progress(int(match.group(1)), int(match.group(2)), line)
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:  # interrupted (an exception in progress, KeyboardInterrupt): leave no orphans
            _kill_group(proc)
    if timed_out.is_set():
        raise TimeoutError(
            f"training did not finish within timeout_s={timeout_s}s and was killed; it resumes from its last "
            "checkpoint when rerun (raise train.timeout_s or lower the steps)"
        )
    if proc.returncode != 0:
        raise RuntimeError(
            f"training exited with code {proc.returncode}: {' '.join(cmd)}\n--- last lines ---\n" + "\n".join(tail)
        )


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


if __name__ == "__main__":
    main()
