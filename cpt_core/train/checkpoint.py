"""Resumable checkpoints of the CPT loop.

Every ``checkpoint_every`` steps ``accelerator.save_state`` (model, optimizer, scheduler, RNG) goes into
``checkpoint_dir/.tmp-step-N``, then ``step.json`` is written and the folder renamed to ``step-N``: a
checkpoint without ``step.json`` never completed and is ignored. Only the newest checkpoint is kept (a full
optimizer state is twice the model). The metrics so far travel with the checkpoint, so a resumed run
reports the whole loss curve.

The folder lives outside the stage's partial output (which a rerun wipes) and records the stage key it
belongs to in ``key.json``: checkpoints of a different configuration, data or model are never resumed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from cpt_core.io import atomic_write_json
from cpt_core.train.config import METRICS
from cpt_core.train.sharding import load_sharded, save_sharded

logger = logging.getLogger(__name__)

CHECKPOINT_INFO = "step.json"
CHECKPOINT_KEY = "key.json"


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest checkpoint whose ``step.json`` was written (i.e. whose save completed)."""
    if not checkpoint_dir.is_dir():
        return None
    done = [p for p in checkpoint_dir.glob("step-*") if (p / CHECKPOINT_INFO).exists()]
    return max(done, key=lambda p: json.loads((p / CHECKPOINT_INFO).read_text())["step"], default=None)


def save_checkpoint(
    accelerator, checkpoint_dir: Path, step: int, tokens: int, output_dir: Path, sharded: tuple | None = None
) -> None:
    """Save the full training state at ``step`` (all processes take part) and drop older checkpoints.

    ``sharded``: the FSDP ``(model, optimizer)``, whose shards each rank writes (``sharding.py``); accelerate
    then saves only the RNG states and the scheduler.
    """
    final = checkpoint_dir / f"step-{step:08d}"
    tmp = checkpoint_dir / f".tmp-step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)  # before any rank writes its RNG state into it
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if sharded:
        save_sharded(*sharded, tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if (output_dir / METRICS).exists():
            shutil.copy2(output_dir / METRICS, tmp / METRICS)
        atomic_write_json(tmp / CHECKPOINT_INFO, {"step": step, "tokens": tokens, "saved_at": time.time()})
        os.replace(tmp, final)
        for old in checkpoint_dir.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def restore_checkpoint(
    accelerator, checkpoint_dir: Path, output_dir: Path, sharded: tuple | None = None
) -> int | None:
    """Load the newest complete checkpoint and its metrics; returns its step, or None to start fresh."""
    checkpoint = latest_checkpoint(checkpoint_dir)
    if checkpoint is None:
        if accelerator.is_main_process:
            (output_dir / METRICS).write_text("")
        return None
    accelerator.load_state(str(checkpoint))
    if sharded:
        load_sharded(*sharded, checkpoint)
    step = json.loads((checkpoint / CHECKPOINT_INFO).read_text())["step"]
    if accelerator.is_main_process:
        rows = []
        if (checkpoint / METRICS).exists():
            rows = [r for r in checkpoint.joinpath(METRICS).read_text().splitlines() if r.strip()]
        (output_dir / METRICS).write_text("".join(r + "\n" for r in rows))
    return step


def claim_checkpoints(checkpoint_dir: Path, key: str) -> None:
    """Keep checkpoints only if they belong to this stage key (same config, data, model and code)."""
    key_file = checkpoint_dir / CHECKPOINT_KEY
    if checkpoint_dir.exists():
        owner = json.loads(key_file.read_text()).get("key") if key_file.exists() else None
        if owner == key:
            return
        logger.info("discarding checkpoints in %s: they belong to another configuration", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True)
    atomic_write_json(key_file, {"key": key})
