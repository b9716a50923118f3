"""Curate flow: language ID, quality, selection, exact and near dedup, decontamination, one step after another."""

from __future__ import annotations

from prefect import flow

from cpt_core.config import RunConfig
from cpt_core.curate.pipeline import STEPS
from cpt_core.layout import RunLayout
from flows.run_names import flow_run_name
from tasks.stages import (
    commit_dedup_task,
    curate_report_task,
    curate_step_task,
    eval_texts_task,
    with_retries,
)


@flow(name="curate", flow_run_name=flow_run_name("curate"), log_prints=True)
def curate_flow(config: RunConfig, layout: RunLayout) -> dict:
    """Each step reads the previous step's documents/ and writes its own; the dedup index is committed last.

    The evaluation texts (probes, local lm-eval data, general held-out text) are gathered first, for the
    decontaminate step. The curation report (per-language funnel, accepted-corpus profile) comes last.
    """
    manifests = {}
    source = layout.extract
    eval_texts = None
    if config.curate.decontaminate.enabled:
        eval_texts = with_retries(eval_texts_task, config.retry)(config.evaluate, layout, config.knowledge_graph)
    for step in STEPS:
        manifests[step] = with_retries(curate_step_task, config.retry)(
            step, config.curate, layout, source, eval_texts if step == "decontaminate" else None
        )
        source = layout.curate_step(step)
    commit_dedup_task(layout)
    curate_report_task(layout, manifests)
    return manifests
