"""Running datatrove pipelines from a stage, locally or on a cluster.

Every document stage (extract, curate steps) is a list of datatrove ``PipelineStep``s. ``run_pipeline``
executes it on the executor the config names and returns datatrove's merged per-step stats as a plain dict,
which the stage turns into its summary (documents in/out, drop reasons).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExecutorConfig(BaseModel):
    """Where datatrove pipelines run. ``local`` uses processes on this machine; ``slurm`` submits jobs."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["local", "slurm"] = "local"
    tasks: int = Field(1, ge=1, description="shards of the input processed as separate tasks")
    workers: int = Field(1, ge=1, description="local processes running tasks at once")
    slurm_partition: str | None = None
    slurm_time: str = "02:00:00"
    slurm_venv_activate: str | None = Field(None, description="path to the venv's bin/activate file")


def run_pipeline(pipeline: list, logging_dir: Path, executor: ExecutorConfig | None = None) -> dict:
    """Run ``pipeline`` and return its stats: ``{step_name: {stat: value}}`` summed over tasks."""
    from datatrove.executor import LocalPipelineExecutor

    executor = executor or ExecutorConfig()
    logging_dir = Path(logging_dir)
    if executor.kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        if not executor.slurm_partition:
            raise ValueError("executor.slurm_partition must be set when executor.kind is 'slurm'")
        SlurmPipelineExecutor(
            pipeline=pipeline,
            tasks=executor.tasks,
            time=executor.slurm_time,
            partition=executor.slurm_partition,
            logging_dir=str(logging_dir),
            venv_path=executor.slurm_venv_activate,
            mem_per_cpu_gb=1,
        ).run()
        raise NotImplementedError("slurm runs return at submission; poll squeue and rerun the stage")
    stats = LocalPipelineExecutor(
        pipeline=pipeline,
        tasks=executor.tasks,
        workers=executor.workers,
        logging_dir=str(logging_dir),
        skip_completed=False,
    ).run()
    return pipeline_stats_dict(stats)


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
