"""The training stage: launch the loop under accelerate in a subprocess, stream it, time it out.

``run_train`` writes the spec, launches ``accelerate launch … -m cpt_core.train.loop`` as a subprocess (so a
GPU job never runs inside the orchestrator, can use every GPU of its node and gets its own timeout), streams
its output to the log and to progress, and keeps checkpoints outside the stage's partial folder (which a
rerun wipes), tied to the stage key so checkpoints of a different configuration are never resumed. The key
leaves out the fields that cannot change the weights (``timeout_s``, ``log_every``, ``checkpoint_every``):
a run killed by its timeout resumes when rerun with a longer one.

The subprocess runs in its own process group (accelerate's launcher spawns the real workers); on timeout or
interruption the whole group gets SIGTERM, then SIGKILL, so no orphan keeps a GPU.
"""

from __future__ import annotations

import json
import logging
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

from cpt_core.faults import TransientError, fault_point
from cpt_core.io import atomic_write_json
from cpt_core.progress import ProgressFn, no_progress
from cpt_core.stage import read_manifest, run_stage, stage_key
from cpt_core.train.base_model import model_fingerprint
from cpt_core.train.checkpoint import claim_checkpoints
from cpt_core.train.config import SPEC, SUMMARY, TrainConfig, resolve_precision
from cpt_core.train.orphans import ENV as ORCHESTRATOR_ENV

logger = logging.getLogger(__name__)

STEP_LINE = re.compile(r"^step (\d+)/(\d+) loss ([0-9.naif+-]+)")
LOOP_MODULE = "cpt_core.train.loop"
# The source that makes the trained weights: this package and the packed-sequence reader.
TRAIN_CODE = ("cpt_core.train", "cpt_core.data.tokenize")


def launch_command(spec_path: Path, cfg: TrainConfig, mixed_precision: str) -> list[str]:
    """``python -m accelerate.commands.launch ... -m cpt_core.train.loop --spec spec.json``."""
    import torch

    total = cfg.num_processes * cfg.num_machines
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(total)]
    cmd += ["--num_machines", str(cfg.num_machines), "--dynamo_backend", "no", "--mixed_precision", mixed_precision]
    if cfg.num_machines > 1:
        cmd += _node_arguments()
    if not torch.cuda.is_available():
        if total > 1:
            # accelerate's CPU launcher runs one process (several only through MPI); torch's launcher starts
            # them, and accelerate joins them in a gloo process group from the environment it sets.
            return _torchrun_command(spec_path, cfg)
        # Without this accelerate pins each CPU process to OMP_NUM_THREADS (default 1) on some machines.
        threads = cfg.cpu_threads or max(1, (os.cpu_count() or 1) // cfg.num_processes)
        cmd += ["--cpu", "--num_cpu_threads_per_process", str(threads)]
    elif cfg.num_processes > 1:
        cmd += ["--multi_gpu"]
    return cmd + ["-m", LOOP_MODULE, "--spec", str(spec_path)]


def _torchrun_command(spec_path: Path, cfg: TrainConfig) -> list[str]:
    """Several CPU processes on this node (gloo), e.g. to exercise DDP and FSDP without a GPU."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(cfg.num_processes)]
    cmd += ["--standalone"]  # a free local rendezvous port
    return cmd + ["-m", LOOP_MODULE, "--spec", str(spec_path)]


def _node_arguments() -> list[str]:
    """This node's rank and the main node's address, from the scheduler's environment (Slurm or torchrun's).

    Every node runs the same train task; ``CPTFLOW_MACHINE_RANK`` (else ``SLURM_NODEID``, else
    ``NODE_RANK``) tells them apart and ``MASTER_ADDR``/``MASTER_PORT`` name the rendezvous.
    """
    env = os.environ
    rank = env.get("CPTFLOW_MACHINE_RANK") or env.get("SLURM_NODEID") or env.get("NODE_RANK")
    addr = env.get("MASTER_ADDR")
    if rank is None or addr is None:
        raise ValueError(
            "train.num_machines > 1 needs this node's rank (CPTFLOW_MACHINE_RANK, SLURM_NODEID or NODE_RANK) "
            "and the main node's address (MASTER_ADDR) in the environment"
        )
    return ["--machine_rank", rank, "--main_process_ip", addr, "--main_process_port", env.get("MASTER_PORT", "29500")]


def train_key(cfg: TrainConfig, model_dir: Path, tokens_dir: Path) -> tuple[str, dict]:
    """The training stage's key and the extra key parts (the starting model's content fingerprint)."""
    extra = {"model": model_fingerprint(Path(model_dir))}
    return stage_key("train", cfg, [Path(tokens_dir)], extra, TRAIN_CODE), extra


def run_train(
    cfg: TrainConfig, model_dir: Path, tokens_dir: Path, output: Path, progress: ProgressFn = no_progress
) -> dict:
    """Train ``model_dir`` on the shards in ``tokens_dir`` into ``output`` (``final/`` + metrics)."""
    model_dir, tokens_dir, output = Path(model_dir), Path(tokens_dir), Path(output)
    key, extra = train_key(cfg, model_dir, tokens_dir)
    checkpoint_dir = output.parent / (output.name + ".checkpoints")
    existing = read_manifest(output)
    if not (existing and existing.get("key") == key):
        claim_checkpoints(checkpoint_dir, key)

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
        run_subprocess(launch_command(partial / SPEC, cfg, mixed_precision), cfg.timeout_s, partial, progress)
        summary = json.loads((partial / SUMMARY).read_text())
        summary["seconds"] = round(time.monotonic() - started, 2)
        summary["checkpoints"] = str(checkpoint_dir)
        summary["log_line"] = _log_line(summary)
        logger.info(summary["log_line"])
        return summary

    manifest = run_stage("train", output, cfg, [tokens_dir], work, extra_key=extra, code=TRAIN_CODE)
    # Checkpoints exist to survive a crash; once the stage's output is in place they are dead weight.
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return manifest


def _log_line(summary: dict) -> str:
    resumed = f", resumed from step {summary['resumed_from_step']}" if summary["resumed_from_step"] else ""
    return (
        f"trained {summary['steps']} steps ({summary['tokens']} tokens) in {summary['seconds']:.1f}s "
        f"({summary['tokens_per_s'] or 0:.0f} tok/s, {summary['precision']} on {summary['device']}{resumed}); "
        f"loss {summary['first_loss']:.4f} -> {summary['final_loss']:.4f}"
    )


def _child_env() -> dict:
    env = dict(os.environ)
    # The child must import cpt_core even when the package is not installed (a source checkout).
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    env[ORCHESTRATOR_ENV] = str(os.getpid())  # the trainer dies with this process (see train/orphans.py)
    return env


def run_subprocess(cmd: list[str], timeout_s: int, cwd: Path, progress: ProgressFn) -> None:
    """Run the training command, streaming its output; kill its process group on timeout or interruption."""
    logger.info("launching: %s", " ".join(cmd))
    proc = subprocess.Popen(
        cmd,
        cwd=str(cwd),
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # its own process group: accelerate's launcher spawns the real workers
    )
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        kill_group(proc)

    timer = threading.Timer(timeout_s, on_timeout)
    timer.daemon = True
    timer.start()
    tail: deque[str] = deque(maxlen=40)
    try:
        _stream(proc, tail, progress)
    finally:
        timer.cancel()
        if proc.poll() is None:  # interrupted (an exception in progress, KeyboardInterrupt): leave no orphans
            kill_group(proc)
    if timed_out.is_set():
        raise TimeoutError(
            f"training did not finish within timeout_s={timeout_s}s and was killed; it resumes from its last "
            "checkpoint when rerun (raise train.timeout_s or lower the steps)"
        )
    if proc.returncode != 0:
        # Killed by a signal (the OOM killer, a preempted node): worth a retry, which resumes from a checkpoint.
        # An exit code is the trainer's own error (a bug, a bad config) and would fail the same way again.
        error = TransientError if proc.returncode < 0 else RuntimeError
        raise error(
            f"training exited with code {proc.returncode}: {' '.join(cmd)}\n--- last lines ---\n" + "\n".join(tail)
        )


def _stream(proc: subprocess.Popen, tail: deque, progress: ProgressFn) -> None:
    """Log the child's lines, keep the last ones for an error message, report step lines as progress."""
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.rstrip("\n")
        tail.append(line)
        logger.info("train: %s", line)
        match = STEP_LINE.match(line)
        if match:
            progress(int(match.group(1)), int(match.group(2)), line)
            fault_point("train:step")
    proc.wait()


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL what is left."""
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
