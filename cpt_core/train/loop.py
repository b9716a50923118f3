"""The CPT training loop (run in a subprocess through ``accelerate launch``; see ``launch.py``).

Algorithm (``train``, nanoGPT style, top to bottom):

1. Load the base model in float32 (the master weights); under ``bf16`` accelerate wraps the forward pass in
   autocast while the optimizer updates stay in float32. ``auto`` picks bf16 on GPUs that support it and
   fp32 on CPU (where bf16 autocast measured slower without AMX). Optionally: gradient checkpointing, the
   training mode (LoRA, staged unfreezing: ``modes.py``), FSDP (``sharding.py``), ``torch.compile``.
2. AdamW (fused on GPUs) with separate groups for embeddings/lm_head, norms/biases and the other matrices;
   linear warmup then cosine or warmup-stable-decay; each step's batch a pure function of the step number
   (``optim.py`` says why); optionally document-masked attention within packed rows (``doc_mask.py``).
3. Resume from the newest complete checkpoint (``checkpoint.py``), so a killed run continues rather than
   restarts.
4. Gradient accumulation and clipping through accelerate, the loss being the mean over every target token of
   the optimizer step's window (``loss.py``: not a mean of per-micro-batch means); a JSON line per ``log_every`` step in
   ``metrics.jsonl`` and a parseable line on stdout (``step 3/20 loss 4.1234 lr 1.00e-04 ...``) that the
   parent process turns into progress; each row carries the LR per group, tokens/s, MFU and the share of
   time spent waiting for data (``telemetry.py``), also written to TensorBoard.
5. Every ``checkpoint_every`` steps a checkpoint of the whole training state.
6. ``save_pretrained(output_dir/"final")`` with the tokenizer, and ``train_summary.json``.

Run as ``python -m cpt_core.train.loop --spec spec.json`` (what ``launch_command`` passes to accelerate).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpt_core.io import atomic_write_json
from cpt_core.train.checkpoint import restore_checkpoint, save_checkpoint
from cpt_core.train.config import FINAL, METRICS, SUMMARY, TrainConfig, resolve_precision
from cpt_core.train.doc_mask import document_inputs, uses_flash_attention
from cpt_core.train.loss import backward_window
from cpt_core.train.modes import final_model, set_up_mode
from cpt_core.train.optim import BatchPlan, build_optimizer, total_steps
from cpt_core.train.orphans import exit_with_orchestrator
from cpt_core.train.sharding import full_state_dict, local_value, shard_model
from cpt_core.train.telemetry import StepTimer, TensorBoard, device_peak_flops, flops_per_token

logger = logging.getLogger(__name__)


@dataclass
class _Run:
    """Everything one training process holds."""

    cfg: TrainConfig
    accelerator: Any
    model: Any
    optimizer: Any
    scheduler: Any
    data: Any
    plan: BatchPlan
    steps: int
    tokens_per_step: int
    mixed_precision: str
    model_dir: Path
    output_dir: Path
    checkpoint_dir: Path
    unfreezer: Any = None
    sharded: bool = False
    sep_id: int | None = None  # the document separator, when documents are masked from each other
    flash: bool = False
    flops_per_token: float = 0.0
    peak_flops: float | None = None
    peak_from: str = ""
    timer: StepTimer | None = None
    board: TensorBoard | None = None
    step_lrs: dict | None = None  # the LR of each group in the last optimizer step
    new_rows: Any = None  # NewRowsLR when new tokens have their own LR

    def checkpoint_extra(self) -> dict:
        """What checkpoints need beyond accelerate's state: the sharded model and optimizer under FSDP."""
        return {"sharded": (self.model, self.optimizer)} if self.sharded else {}


def _set_up(spec: dict) -> _Run:
    """Accelerator, model, optimizer, schedule and data order for ``spec``."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoModelForCausalLM

    from cpt_core.data.tokenize import PackedSequences

    cfg = TrainConfig.model_validate(spec["train"])
    output_dir, checkpoint_dir = Path(spec["output_dir"]), Path(spec["checkpoint_dir"])
    mixed_precision = spec.get("mixed_precision") or resolve_precision(cfg.precision)
    handlers = []
    if cfg.unfreeze:
        from accelerate.utils import DistributedDataParallelKwargs

        # Frozen stages leave parameters without gradients, which DDP must be told to expect.
        handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    # cpu=True on a machine without CUDA: several CPU processes (torch's launcher) then form a gloo group.
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.grad_accum_steps, mixed_precision=mixed_precision, kwargs_handlers=handlers,
        cpu=not torch.cuda.is_available(),
    )  # fmt: skip
    set_seed(cfg.seed)
    if cfg.cpu_threads and accelerator.device.type == "cpu":
        torch.set_num_threads(cfg.cpu_threads)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)

    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    model.config.use_cache = False  # the KV cache is for generation; in training it only costs memory
    telemetry = _telemetry(cfg, model, accelerator, mixed_precision, spec, output_dir)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model, unfreezer = set_up_mode(model, cfg.mode, cfg.lora, cfg.unfreeze, Path(spec["model_dir"]))
    new_rows = _new_rows_lr(cfg, model, Path(spec["model_dir"]))
    model.train()
    data = PackedSequences(Path(spec["tokens_dir"]))
    procs = accelerator.num_processes
    steps = total_steps(len(data), cfg, procs)
    sharded = cfg.sharding != "none" and procs > 1
    if sharded:  # FSDP2 (sharding.py); accelerate must not wrap the model in DDP as well
        model = shard_model(model, device=accelerator.device, world=procs, nodes=cfg.num_machines,
                            sharding=cfg.sharding, bf16=mixed_precision == "bf16")  # fmt: skip
    optimizer, scheduler = build_optimizer(model, cfg, steps)
    if cfg.compile:
        model.compile()  # in place: the module stays what save_pretrained and the checkpoints expect
    if not sharded:
        model, optimizer = accelerator.prepare(model, optimizer)
    # The scheduler is stepped by hand once per optimizer step (a prepared one steps once per process);
    # registering it puts it in the checkpoints.
    accelerator.register_for_checkpointing(scheduler)
    return _Run(
        cfg=cfg, accelerator=accelerator, model=model, optimizer=optimizer, scheduler=scheduler, data=data,
        plan=BatchPlan(len(data), cfg, procs), steps=steps,
        tokens_per_step=cfg.micro_batch_size * cfg.grad_accum_steps * procs * data.seq_len,
        mixed_precision=mixed_precision, model_dir=Path(spec["model_dir"]), output_dir=output_dir,
        checkpoint_dir=checkpoint_dir, unfreezer=unfreezer, sharded=sharded, new_rows=new_rows, **telemetry,
    )  # fmt: skip


def _new_rows_lr(cfg: TrainConfig, model, model_dir: Path):
    """``NewRowsLR`` when the model has tokens a tokenizer extension added and they get their own LR."""
    from cpt_core.train.modes import model_record
    from cpt_core.train.new_rows import NewRowsLR
    from cpt_core.train.tokenizer_ext import EXTENSION_FILE

    first = model_record(model_dir, EXTENSION_FILE).get("first_new_id")
    if cfg.new_token_lr_mult is None or first is None or cfg.new_token_lr_mult == cfg.embedding_lr_mult:
        return None
    return NewRowsLR(model, first, cfg.new_token_lr_mult / cfg.embedding_lr_mult)


def _telemetry(cfg: TrainConfig, model, accelerator, mixed_precision: str, spec: dict, output_dir: Path) -> dict:
    """The per-step telemetry's parts (FLOPs per token, device peak, timers, TensorBoard) and masking ids."""
    from cpt_core.data.tokenize import PackedSequences, load_fast_tokenizer, separator_id

    seq_len = PackedSequences(Path(spec["tokens_dir"])).seq_len
    peak, peak_from = device_peak_flops(accelerator.device, mixed_precision == "bf16")
    sep_id = separator_id(load_fast_tokenizer(Path(spec["model_dir"]))) if cfg.document_masking else None
    return {
        "sep_id": sep_id, "flash": uses_flash_attention(model), "flops_per_token": flops_per_token(model.config, seq_len),
        "peak_flops": peak, "peak_from": peak_from, "timer": StepTimer(),
        "board": TensorBoard(output_dir / "tensorboard", cfg.tensorboard and accelerator.is_main_process),
    }  # fmt: skip


def _micro_batches(run: _Run, step: int) -> list[tuple[Any, Any]]:
    """The ``(input_ids, labels)`` micro-batches of optimizer step ``step`` on this process.

    Packed rows are full (the tokenizer drops and reports the tail that would not fill one), so every position
    is a target; masked labels (``-100``) are handled all the same by the loss (``loss.py``).
    """
    import numpy as np
    import torch

    acc, out = run.accelerator, []
    for micro in range(run.cfg.grad_accum_steps):
        rows = [run.data[i] for i in run.plan.indices(step, micro, acc.process_index)]
        batch = torch.from_numpy(np.stack(rows)).to(acc.device)
        if run.sep_id is None:
            out.append((batch, batch))
        else:
            labels, inputs = document_inputs(batch, run.sep_id, run.flash)
            out.append((batch, labels, inputs))
    return out


def _train_step(run: _Run, step: int) -> tuple[Any, Any, Any, float]:
    """One optimizer step (all micro batches); returns (loss sum, target tokens, grad norm, the step's LR)."""
    acc, model, optimizer = run.accelerator, run.model, run.optimizer
    # The LR of the main (decay) group; embeddings run at lr * embedding_lr_mult.
    lr = next((g["lr"] for g in optimizer.param_groups if g.get("name") == "decay"), run.scheduler.get_last_lr()[-1])
    run.step_lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)}
    if run.new_rows is not None and "embeddings" in run.step_lrs:
        run.step_lrs["new_tokens"] = run.step_lrs["embeddings"] * run.new_rows.ratio
    run.timer.start_step()
    batches = run.timer.data(lambda: _micro_batches(run, step))
    # The loss is the mean over every target token of the window, not a mean of per-micro-batch means.
    loss_sum, tokens = backward_window(acc, model, batches)
    grad_norm = acc.clip_grad_norm_(model.parameters(), run.cfg.max_grad_norm)
    if run.new_rows is not None:
        run.new_rows.before_step()
    optimizer.step()
    if run.new_rows is not None:
        run.new_rows.after_step()
    optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    run.timer.end_step()
    return loss_sum, tokens, grad_norm, lr


def _log_step(run: _Run, done: int, start_step: int, elapsed: float, loss_sum, tokens, grad_norm, lr: float) -> None:
    """Append the step's metrics row and print the line the parent turns into progress."""
    acc = run.accelerator
    # The window's token mean over all processes, the quantity the gradient was taken of.
    mean_loss = (acc.gather(loss_sum.reshape(1)).sum() / acc.gather(tokens.reshape(1)).sum().clamp(min=1)).item()
    tokens_run = (done - start_step) * run.tokens_per_step
    tokens_per_s = tokens_run / elapsed if elapsed > 0 else None
    row = {
        "step": done,
        "loss": round(mean_loss, 6),
        "lr": lr,
        "lr_groups": run.step_lrs,
        "grad_norm": round(local_value(grad_norm), 6) if grad_norm is not None else None,
        "tokens": done * run.tokens_per_step,
        "tokens_per_s": round(tokens_per_s, 1) if tokens_per_s else None,
        "mfu": _mfu(run, tokens_per_s),
        "data_wait": run.timer.data_fraction(),
        "elapsed": round(elapsed, 3),
    }
    if acc.is_main_process:
        with open(run.output_dir / METRICS, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        run.board.log(row, done)
    acc.print(
        f"step {done}/{run.steps} loss {mean_loss:.4f} lr {lr:.2e} "
        f"grad_norm {row['grad_norm'] or 0:.3f} tok/s {row['tokens_per_s'] or 0:.0f} mfu {row['mfu'] or 0:.3f}",
        flush=True,
    )


def _mfu(run: _Run, tokens_per_s: float | None) -> float | None:
    """Model FLOPs utilisation: useful FLOP/s over the peak of all the run's devices (``telemetry.py``)."""
    if not tokens_per_s or not run.peak_flops:
        return None
    return round(tokens_per_s * run.flops_per_token / (run.peak_flops * run.accelerator.num_processes), 4)


def _summary(run: _Run, start_step: int, resumed_from: int | None, elapsed: float) -> dict:
    rows = [json.loads(r) for r in (run.output_dir / METRICS).read_text().splitlines() if r.strip()]
    trained = (run.steps - start_step) * run.tokens_per_step
    return {
        "steps": run.steps,
        "resumed_from_step": resumed_from,
        "tokens": run.steps * run.tokens_per_step,
        "first_loss": rows[0]["loss"] if rows else None,
        "final_loss": rows[-1]["loss"] if rows else None,
        "tokens_per_s": round(trained / elapsed, 1) if elapsed > 0 else None,
        "mfu": _mfu(run, trained / elapsed if elapsed > 0 else None),
        "peak_tflops": round(run.peak_flops / 1e12, 2) if run.peak_flops else None,
        "peak_from": run.peak_from,
        "flops_per_token": run.flops_per_token,
        "data_wait": run.timer.data_fraction(),
        "train_seconds": round(elapsed, 2),
        "precision": "bf16" if run.mixed_precision == "bf16" else "fp32",
        "device": str(run.accelerator.device),
        "num_processes": run.accelerator.num_processes,
        "sequences": len(run.data),
        "seq_len": run.data.seq_len,
    }


def _save_final(run: _Run, summary: dict) -> None:
    """Write ``final/`` (weights + tokenizer) and the summary."""
    from transformers import AutoTokenizer

    acc = run.accelerator
    # Every process takes part in gathering the weights (FSDP/DeepSpeed shard them); the main one writes.
    state_dict = full_state_dict(run.model) if run.sharded else acc.get_state_dict(run.model)
    if acc.is_main_process:
        unwrapped = _plain_model(run.model, state_dict) if run.sharded else acc.unwrap_model(run.model)
        if run.cfg.mode == "lora":
            # The adapters merged into the base weights: the same ordinary HF folder full fine-tuning writes.
            unwrapped, state_dict = final_model(unwrapped, "lora"), None
        unwrapped.config.use_cache = True
        unwrapped.save_pretrained(run.output_dir / FINAL, state_dict=state_dict, safe_serialization=True)
        AutoTokenizer.from_pretrained(run.model_dir).save_pretrained(run.output_dir / FINAL)
        atomic_write_json(run.output_dir / SUMMARY, summary)
    acc.wait_for_everyone()


def _plain_model(sharded_model, state_dict: dict):
    """An ordinary (unsharded) model of the same class holding ``state_dict``, so the saved config names the
    model's own architecture rather than FSDP's wrapper class."""
    import torch
    from transformers import AutoModelForCausalLM

    config = sharded_model.config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(state_dict, assign=True, strict=False)
    plain.tie_weights()
    return plain


def train(spec: dict) -> dict:
    """Run (or resume) the CPT loop described by ``spec``; returns the summary it also writes to disk."""
    run = _set_up(spec)
    acc, cfg = run.accelerator, run.cfg
    resumed_from = restore_checkpoint(acc, run.checkpoint_dir, run.output_dir, **run.checkpoint_extra())
    start_step = resumed_from or 0
    if resumed_from is not None:
        acc.print(f"resumed from step {start_step}/{run.steps}")

    started = time.monotonic()
    for step in range(start_step, run.steps):
        if run.unfreezer is not None and run.unfreezer.apply(step, run.steps):
            acc.print(f"unfreeze stage {run.unfreezer.current}: {', '.join(cfg.unfreeze[run.unfreezer.current].train)}")
        loss_sum, tokens, grad_norm, lr = _train_step(run, step)
        done = step + 1
        if done % cfg.log_every == 0 or done == run.steps:
            _log_step(run, done, start_step, time.monotonic() - started, loss_sum, tokens, grad_norm, lr)
        if done % cfg.checkpoint_every == 0 and done < run.steps:
            save_checkpoint(acc, run.checkpoint_dir, done, done * run.tokens_per_step, run.output_dir,
                            **run.checkpoint_extra())  # fmt: skip

    acc.wait_for_everyone()
    summary = _summary(run, start_step, resumed_from, time.monotonic() - started)
    run.board.close()
    _save_final(run, summary)
    acc.end_training()
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="cptflow CPT training loop (launch through accelerate)")
    parser.add_argument("--spec", required=True, help="JSON: model_dir, tokens_dir, output_dir, checkpoint_dir, train")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    exit_with_orchestrator()
    train(json.loads(Path(args.spec).read_text()))


if __name__ == "__main__":
    main()
