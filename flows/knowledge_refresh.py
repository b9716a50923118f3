"""The knowledge-refresh flow: sources -> ingest -> curate -> synthesize -> train -> evaluate -> promote -> report.

Every stage writes under ``<root>/runs/<run_id>/`` and ends with a manifest, so running the flow again with
the same ``run_id`` resumes where it stopped (a finished run does no work), and a scheduled run with a new
``run_id`` ingests only what is new or changed (crawl state), deduplicates against every document accepted
before (dedup index), and continues from the current champion (model registry).
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from cpt_core.config import RunConfig
from cpt_core.layout import CURATE_STEPS, RunLayout
from flows.curate import curate_flow
from flows.ingest import demo_sources, ingest_flow
from flows.run_names import flow_run_name
from flows.run_steps import flow_result, open_run, run_config, stage_manifests, train_and_evaluate
from tasks.reporting import write_run_report
from tasks.stages import nothing_new_task


def _nothing_new(config: RunConfig, layout: RunLayout, ingest: dict, curate: dict) -> dict:
    """A quiet week: no new or changed document survived curation. The run ends cleanly, trains nothing."""
    decision = nothing_new_task(layout, curate[CURATE_STEPS[-1]])
    stages = stage_manifests(ingest, curate)
    report = write_run_report(layout, stages, config.base_model.source, [])
    get_run_logger().info("run %s finished: nothing new (%s); report %s", config.run_id, decision["reasons"][0], report)
    return flow_result(config, layout, stages, report, "nothing_new", None)


@flow(name="knowledge-refresh", flow_run_name=flow_run_name("knowledge-refresh"), log_prints=True)
def knowledge_refresh(config: RunConfig, overrides: list[str] | None = None) -> dict:
    """Run every stage of one CPT refresh and return where its report and model are.

    ``overrides`` are dotted ``field=value`` strings applied on top of ``config`` (validated the same way),
    handy with ``prefect deployment run --param overrides='["train.lr=1e-4"]'``.
    """
    config = run_config(config, overrides)
    with open_run(config) as layout:
        return _refresh(config, layout)


def _refresh(config: RunConfig, layout: RunLayout) -> dict:
    """The stages of one run, under the root's lock."""
    logger = get_run_logger()
    logger.info("run %s under %s", config.run_id, layout.run)
    with demo_sources(config, layout) as config:
        ingest = ingest_flow(config, layout)
    curate = curate_flow(config, layout)
    if curate[CURATE_STEPS[-1]]["summary"].get("docs_out", 0) == 0:
        return _nothing_new(config, layout, ingest, curate)
    return train_and_evaluate(config, layout, stage_manifests(ingest, curate))
