"""Running datatrove pipelines from a stage: on this machine, on a Slurm cluster, or on Ray.

Every document stage (extract, curate steps) is a list of datatrove ``PipelineStep``s. ``run_pipeline``
executes it with the configured executor (``executor: {kind: local | slurm | ray, ...}``), waits until every
task has finished, and returns the merged per-step stats as a plain dict, which the stage turns into its
summary (documents in/out, drop reasons).

- ``local``: datatrove's ``LocalPipelineExecutor`` (``tasks`` shards, ``workers`` processes).
- ``slurm``: datatrove's ``SlurmPipelineExecutor``. Submission returns at once, so ``run_pipeline`` polls
  ``squeue`` until the job array has left the queue (or ``timeout_s`` passes: then it cancels the job), then
  checks datatrove's ``completions/``: a task without its completion marker is an error naming the task and
  its log files. The stage code must be importable where the job runs (same shared filesystem and venv).
- ``ray``: datatrove's ``RayPipelineExecutor`` on the running Ray (or one started for the run). A failing task
  does not raise there either, so ``completions/`` is checked the same way.

Only ``tasks`` enters stage keys: it decides how the output is split into files. The executor kind and every
kind-specific option (partition, memory, addresses, timeouts) cannot change which documents are written, so
switching a finished stage from ``local`` to ``slurm`` or ``ray`` with the same ``tasks`` reuses its output.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from datatrove.executor.slurm import SlurmPipelineExecutor
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from cpt_core.stage import not_in_key


class ExecutorError(RuntimeError):
    """A distributed run that did not complete every task (failed, cancelled or timed out)."""


class LocalExecutorConfig(BaseModel):
    """Processes on this machine."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["local"] = not_in_key("local")
    tasks: int = Field(1, ge=1, description="shards of the input processed as separate tasks")
    # Each task writes its own files whichever process runs it, so the worker count never changes output
    # (the task count does: it decides how the output is split into files).
    workers: int = not_in_key(1, ge=1, description="local processes running tasks at once")


class SlurmExecutorConfig(BaseModel):
    """A Slurm job array, one array task per datatrove task, submitted with ``sbatch``."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["slurm"] = not_in_key("slurm")
    tasks: int = Field(1, ge=1, description="shards of the input processed as separate tasks")
    workers: int | None = not_in_key(None, ge=1, description="array tasks running at once; none: no limit")
    partition: str = not_in_key(min_length=1, description="Slurm partition to submit to")
    time: str = not_in_key("01:00:00", description="Slurm time limit of each task")
    cpus_per_task: int = not_in_key(1, ge=1)
    mem_per_cpu_gb: int = not_in_key(2, ge=1)
    qos: str | None = not_in_key(None, description="Slurm QOS; none: the cluster's default")
    sbatch_args: dict[str, str | int] = not_in_key(
        default_factory=dict, description="extra #SBATCH options, e.g. {account: x, constraint: y}"
    )
    venv_path: str | None = not_in_key(
        None, description="bin/activate file sourced by the job; none: the venv running cptflow"
    )
    job_name: str = not_in_key("cptflow", min_length=1)
    poll_s: float = not_in_key(2.0, gt=0, description="seconds between squeue polls")
    timeout_s: float | None = not_in_key(
        None, gt=0, description="give up (and scancel) after this long; none: Slurm's time limit ends it"
    )


class RayExecutorConfig(BaseModel):
    """Ray tasks, one per datatrove task, on the connected Ray cluster."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["ray"] = not_in_key("ray")
    tasks: int = Field(1, ge=1, description="shards of the input processed as separate tasks")
    workers: int | None = not_in_key(None, ge=1, description="tasks running at once; none: all")
    address: str | None = not_in_key(
        None,
        description="ray.init address when Ray is not started yet: auto (a running cluster), local (a new "
        "one on this machine), host:port or ray://; none: a running cluster if any, else a local one",
    )
    cpus_per_task: int = not_in_key(1, ge=1)
    # Ray holds a task until this much memory is free: a request larger than the cluster would wait forever
    # (run_pipeline refuses it up front).
    mem_per_cpu_gb: float = not_in_key(0.25, gt=0)
    timeout_s: int | None = not_in_key(None, gt=0, description="kill a task running longer than this")


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("kind", "local"))
    return getattr(value, "kind", "local")


ExecutorConfig = Annotated[
    Annotated[LocalExecutorConfig, Tag("local")]
    | Annotated[SlurmExecutorConfig, Tag("slurm")]
    | Annotated[RayExecutorConfig, Tag("ray")],
    Discriminator(
        _kind,
        custom_error_type="executor_kind",
        custom_error_message="executor.kind must be one of local, slurm, ray",
    ),
]
AnyExecutorConfig = LocalExecutorConfig | SlurmExecutorConfig | RayExecutorConfig


class _SlurmExecutor(SlurmPipelineExecutor):
    """datatrove's Slurm executor without its stats-merging job: ``run_pipeline`` merges the stats itself once
    every task is done (and that job would stay pending behind a failed task on many clusters)."""

    def launch_merge_stats(self) -> None:
        return None


def run_pipeline(pipeline: list, logging_dir: Path, executor: AnyExecutorConfig | None = None) -> dict:
    """Run ``pipeline`` and return its stats: ``{step_name: {stat: value}}`` summed over tasks.

    Raises :class:`ExecutorError` when a Slurm or Ray task did not complete.
    """
    executor = executor or LocalExecutorConfig()
    logging_dir = Path(logging_dir)
    if executor.kind == "local":
        return pipeline_stats_dict(_run_local(pipeline, logging_dir, executor))
    if executor.kind == "slurm":
        _run_slurm(pipeline, logging_dir, executor)
    elif executor.kind == "ray":
        _run_ray(pipeline, logging_dir, executor)
    else:  # pragma: no cover - the config union admits no other kind
        raise ValueError(f"unknown executor kind {executor.kind!r}")
    check_completed(logging_dir, executor.tasks, executor.kind)
    return pipeline_stats_dict(merged_stats(logging_dir, executor.tasks))


def _run_local(pipeline: list, logging_dir: Path, cfg: LocalExecutorConfig):
    from datatrove.executor import LocalPipelineExecutor

    return LocalPipelineExecutor(
        pipeline=pipeline,
        tasks=cfg.tasks,
        workers=cfg.workers,
        logging_dir=str(logging_dir),
        skip_completed=False,
    ).run()


def running_venv_activate() -> str | None:
    """The ``bin/activate`` file of the venv running this process, if it runs in one."""
    activate = Path(sys.prefix) / "bin" / "activate"
    return str(activate) if sys.prefix != sys.base_prefix and activate.is_file() else None


def _run_slurm(pipeline: list, logging_dir: Path, cfg: SlurmExecutorConfig) -> None:
    venv = cfg.venv_path or running_venv_activate()
    if venv and Path(venv).is_dir():
        raise ValueError(f"executor.venv_path must be a venv's bin/activate file, not a folder: {venv}")
    executor = _SlurmExecutor(
        pipeline=pipeline,
        tasks=cfg.tasks,
        workers=cfg.workers or -1,
        time=cfg.time,
        partition=cfg.partition,
        cpus_per_task=cfg.cpus_per_task,
        mem_per_cpu_gb=cfg.mem_per_cpu_gb,
        job_name=cfg.job_name,
        qos=cfg.qos or "",
        venv_path=venv,
        sbatch_args=dict(cfg.sbatch_args),
        logging_dir=str(logging_dir),
        skip_completed=False,
    )
    try:
        executor.run()
    except FileNotFoundError as exc:
        raise ExecutorError(f"slurm executor: cannot submit, {exc.filename or 'sbatch'} not found") from exc
    except subprocess.CalledProcessError as exc:
        raise ExecutorError(f"slurm executor: sbatch failed (exit {exc.returncode}): {exc.output!r}") from exc
    try:
        wait_for_slurm_job(str(executor.job_id), cfg.poll_s, cfg.timeout_s, logging_dir)
    finally:
        # The pickled pipeline holds resolved source credentials, if any: keep it only while jobs need it.
        (logging_dir / "executor.pik").unlink(missing_ok=True)


def wait_for_slurm_job(job_id: str, poll_s: float, timeout_s: float | None, logging_dir: Path) -> None:
    """Poll ``squeue`` until job ``job_id`` (all its array tasks) has left the queue; cancel it on timeout."""
    deadline = time.monotonic() + timeout_s if timeout_s else None
    while True:
        out = subprocess.run(
            ["squeue", "--noheader", "--jobs", job_id, "--format", "%i %T"],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            if "invalid job id" in out.stderr.lower():  # already purged from the controller: finished
                return
            raise ExecutorError(f"slurm executor: squeue failed for job {job_id}: {out.stderr.strip()}")
        if not out.stdout.strip():
            return
        if deadline is not None and time.monotonic() > deadline:
            subprocess.run(["scancel", job_id], capture_output=True)
            raise ExecutorError(
                f"slurm executor: job {job_id} still queued or running after {timeout_s:g}s (executor.timeout_s);"
                f" cancelled it. States: {' '.join(out.stdout.split())}. Logs: {logging_dir}"
            )
        time.sleep(poll_s)


def _run_ray(pipeline: list, logging_dir: Path, cfg: RayExecutorConfig) -> None:
    try:
        import ray
    except ImportError as exc:
        raise ExecutorError(
            "executor.kind ray needs the ray package: pip install 'cptflow[ray]'"
        ) from exc
    from datatrove.executor.ray import RayPipelineExecutor

    if not ray.is_initialized():
        ray.init(address=cfg.address, include_dashboard=False, ignore_reinit_error=True)
    resources = ray.cluster_resources()
    memory = cfg.mem_per_cpu_gb * cfg.cpus_per_task * 1024**3
    if resources.get("CPU", 0) < cfg.cpus_per_task or resources.get("memory", 0) < memory:
        raise ExecutorError(
            f"ray executor: a task asks for {cfg.cpus_per_task} CPU and {memory / 1024**3:.2f} GiB "
            f"(executor.cpus_per_task, executor.mem_per_cpu_gb) but the cluster has "
            f"{resources.get('CPU', 0):g} CPU and {resources.get('memory', 0) / 1024**3:.2f} GiB in all: "
            "it would wait forever"
        )
    RayPipelineExecutor(
        pipeline=pipeline,
        tasks=cfg.tasks,
        workers=cfg.workers or -1,
        logging_dir=str(logging_dir),
        skip_completed=False,
        cpus_per_task=cfg.cpus_per_task,
        mem_per_cpu_gb=cfg.mem_per_cpu_gb,
        time=cfg.timeout_s,
    ).run()


def check_completed(logging_dir: Path, tasks: int, kind: str) -> None:
    """Raise :class:`ExecutorError` naming every task without datatrove's completion marker, and its logs."""
    missing = [r for r in range(tasks) if not (logging_dir / "completions" / f"{r:05d}").is_file()]
    if not missing:
        return
    logs = []
    for rank in missing:
        logs.append(str(logging_dir / "logs" / f"task_{rank:05d}.log"))
        logs.extend(str(p) for p in sorted((logging_dir / "slurm_logs").glob(f"*_{rank}.out")))
    raise ExecutorError(
        f"{kind} executor: {len(missing)} of {tasks} tasks failed (tasks {', '.join(map(str, missing))}); "
        f"see {', '.join(logs)}" + _last_error(logs)
    )


def _last_error(logs: list[str]) -> str:
    """The last lines of the first log that exists, to show the failure without opening a file."""
    for log in logs:
        path = Path(log)
        if path.is_file():
            lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
            if lines:
                return "\n" + "\n".join(lines[-6:])
    return ""


def merged_stats(logging_dir: Path, tasks: int):
    """The per-task ``stats/<rank>.json`` files datatrove writes, summed (a ``PipelineStats``)."""
    from datatrove.utils.stats import PipelineStats

    total = PipelineStats()
    for rank in range(tasks):
        with open(logging_dir / "stats" / f"{rank:05d}.json", encoding="utf-8") as fh:
            total += PipelineStats.from_json(json.load(fh))
    return total


def pipeline_stats_dict(stats) -> dict:
    """datatrove ``PipelineStats`` -> ``{step name: {metric: total}}``."""
    out: dict[str, dict] = {}
    for step in json.loads(stats.to_json()):
        name = step.get("name", "?")
        metrics = {}
        for metric, value in step.get("stats", {}).items():
            if isinstance(value, dict):
                metrics[metric] = value.get("total", value.get("n", 0))
            else:
                metrics[metric] = value
        out[name] = metrics
    return out
