"""The data-refresh flow: ingest and curate only, no training.

It records the outcome ``data_only`` (``cpt_core.state``): later refreshes see its crawl state and dedup
entries (they do not refetch or re-keep its documents), but no model comes of it until a ``train-eval`` run
trains on its curated data. A run whose curation keeps nothing ends as ``nothing_new``, like a quiet week.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from cpt_core.config import RunConfig
from cpt_core.layout import CURATE_STEPS
from flows.curate import curate_flow
from flows.ingest import demo_sources, ingest_flow
from flows.run_names import flow_run_name
from flows.run_steps import flow_result, open_run, run_config, stage_manifests, with_snapshot
from tasks.reporting import write_run_report
from tasks.stages import data_only_task, nothing_new_task


@flow(name="data-refresh", flow_run_name=flow_run_name("data-refresh"), log_prints=True)
def data_refresh(
    config: RunConfig,
    overrides: list[str] | None = None,
    snapshot: str | None = None,
    snapshot_source: str = "snapshot",
) -> dict:
    """Crawl and extract what is new or changed, curate it, and end the run with its report.

    ``overrides`` are dotted ``field=value`` strings applied on top of ``config``, as for knowledge-refresh.
    ``snapshot`` (a folder or fsspec URL of documents, as ``cptflow notify snapshot`` announces it) is ingested
    as one more documents source, named ``snapshot_source``.
    """
    config = with_snapshot(run_config(config, overrides), snapshot, snapshot_source)
    with open_run(config) as layout:
        with demo_sources(config, layout) as served:
            ingest = ingest_flow(served, layout)
        curate = curate_flow(config, layout)
        curated = curate[CURATE_STEPS[-1]]
        empty = curated["summary"].get("docs_out", 0) == 0
        decision = nothing_new_task(layout, curated) if empty else data_only_task(layout, curated)
        stages = stage_manifests(ingest, curate)
        # No model is involved: the outcome is the report's decision, not a warning.
        report = write_run_report(layout, stages, "", [], decision)
        get_run_logger().info("run %s finished: %s; report %s", config.run_id, decision["outcome"], report)
        return flow_result(config, layout, stages, report, decision["outcome"], None)
