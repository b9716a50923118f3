"""Running datatrove pipelines from a stage.

Every document stage (extract, curate steps) is a list of datatrove ``PipelineStep``s. ``run_pipeline``
executes it with datatrove's local executor (``tasks`` shards of the input, ``workers`` processes) and
returns the merged per-step stats as a plain dict, which the stage turns into its summary (documents in/out,
drop reasons). Because the steps are plain datatrove steps, the same pipeline can be handed to datatrove's
Slurm or Ray executors; wiring those into the stage contract (submission, polling, completion checks) is a
separate piece of work and is not offered as a config option until it is done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.stage import not_in_key


class ExecutorConfig(BaseModel):
    """Where datatrove pipelines run: processes on this machine."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["local"] = "local"
    tasks: int = Field(1, ge=1, description="shards of the input processed as separate tasks")
    # Each task writes its own files whichever process runs it, so the worker count never changes output
    # (the task count does: it decides how the output is split into files).
    workers: int = not_in_key(1, ge=1, description="local processes running tasks at once")


def run_pipeline(pipeline: list, logging_dir: Path, executor: ExecutorConfig | None = None) -> dict:
    """Run ``pipeline`` and return its stats: ``{step_name: {stat: value}}`` summed over tasks."""
    from datatrove.executor import LocalPipelineExecutor

    executor = executor or ExecutorConfig()
    logging_dir = Path(logging_dir)
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
