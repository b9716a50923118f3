"""Evaluate flow: base vs trained on domain and general bits-per-byte and lm-eval tasks; then the gate."""

from __future__ import annotations

from prefect import flow

from cpt_core.config import RunConfig
from cpt_core.layout import RunLayout
from flows.run_names import flow_run_name
from tasks.stages import evaluate_task, promote_task, with_retries


@flow(name="evaluate", flow_run_name=flow_run_name("evaluate"), log_prints=True)
def evaluate_flow(config: RunConfig, layout: RunLayout, base_dir: str, lineage: dict) -> dict:
    evaluation = with_retries(evaluate_task, config.retry)(config.evaluate, layout, base_dir, config.knowledge_graph)
    decision = with_retries(promote_task, config.retry)(config.promote, layout, lineage)
    return {"evaluate": evaluation, "promote": decision}
