"""The knowledge-refresh flow: sources -> ingest -> curate -> synthesize -> train -> evaluate -> promote -> report.

Every stage writes under ``<root>/runs/<run_id>/`` and ends with a manifest, so running the flow again with
the same ``run_id`` resumes where it stopped (a finished run does no work), and a scheduled run with a new
``run_id`` ingests only what is new or changed (crawl state), deduplicates against every document accepted
before (dedup index), and continues from the current champion (model registry).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task

from cpt_core.config import RunConfig, apply_overrides, validate_config
from cpt_core.layout import CURATE_STEPS, RunLayout
from cpt_core.lock import RootLock
from cpt_core.train.base_model import is_probably_instruct
from flows.curate import curate_flow
from flows.evaluate import evaluate_flow
from flows.ingest import demo_sources, ingest_flow
from flows.run_names import flow_run_name
from flows.train import train_flow
from tasks.reporting import write_run_report
from tasks.stages import nothing_new_task, synthesize_task

HELDOUT_NOTES = {
    "parent_heldout": "Too few new documents to hold any out: domain bits/byte is scored on the held-out set of "
    "the run this one continues from ({parent}).",
    "in_sample": "Too few documents to hold any out and no earlier held-out set: domain bits/byte is scored on "
    "the training documents themselves (in-sample, optimistic).",
}


@task(name="run-report")
def run_report_task(layout: RunLayout, stages: dict, start: dict) -> str:
    notes = []
    if is_probably_instruct(Path(start["model_dir"])):
        notes.append(
            f"The starting checkpoint ({start['source']}) looks like an instruct model: CPT on raw text erodes "
            "instruction following. Start from a base checkpoint for production runs."
        )
    rule = stages.get("tokenize", {}).get("summary", {}).get("heldout_rule")
    if rule in HELDOUT_NOTES:
        notes.append(HELDOUT_NOTES[rule].format(parent=start["parent"]))
    return str(write_run_report(layout, stages, start["source"], notes))


def _stage_manifests(ingest: dict, curate: dict, **later: dict) -> dict:
    """The run's stage manifests in pipeline order, as the report lists them."""
    return {
        "crawl": ingest["crawl"],
        "extract": ingest["extract"],
        **{f"curate/{k}": v for k, v in curate.items()},
        **later,
    }


def _result(config: RunConfig, layout: RunLayout, stages: dict, report, outcome: str, model: str | None) -> dict:
    """What the flow returns: where the run's report and model are, and how it ended."""
    return {
        "run_id": config.run_id,
        "run_dir": str(layout.run),
        "report": str(report),
        "model": model,
        "promoted": outcome == "promoted",
        "outcome": outcome,
        "skipped": [name for name, m in stages.items() if m.get("skipped")],
    }


def _nothing_new(config: RunConfig, layout: RunLayout, ingest: dict, curate: dict) -> dict:
    """A quiet week: no new or changed document survived curation. The run ends cleanly, trains nothing."""
    decision = nothing_new_task(layout, curate[CURATE_STEPS[-1]])
    stages = _stage_manifests(ingest, curate)
    report = write_run_report(layout, stages, config.base_model.source, [])
    get_run_logger().info("run %s finished: nothing new (%s); report %s", config.run_id, decision["reasons"][0], report)
    return _result(config, layout, stages, report, "nothing_new", None)


@flow(name="knowledge-refresh", flow_run_name=flow_run_name("knowledge-refresh"), log_prints=True)
def knowledge_refresh(config: RunConfig, overrides: list[str] | None = None) -> dict:
    """Run every stage of one CPT refresh and return where its report and model are.

    ``overrides`` are dotted ``field=value`` strings applied on top of ``config`` (validated the same way),
    handy with ``prefect deployment run --param overrides='["train.lr=1e-4"]'``.
    """
    if overrides:
        config = validate_config(apply_overrides(config.model_dump(mode="json"), overrides), "overrides")
    config = config.with_run_id()
    with RootLock(config.root, config.run_id):
        layout = RunLayout.create(config.root, config.run_id)
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
    synthesize = synthesize_task(
        config.synthesize, config.tokenize, layout, config.knowledge_graph, config.base_model
    )
    train = train_flow(config, layout)
    lineage = {
        "parent": train["start"]["parent"],
        "base_source": train["start"]["source"],
        "tokens_key": train["tokenize"]["key"],
        "shards": str(layout.tokens / "train"),
        "source_urls": str(layout.crawl / "fetch_log.jsonl"),
        "config": config.model_dump(mode="json"),
    }
    # Compared against the checkpoint before surgery/extension: bits per byte do not depend on the tokenizer.
    base_dir = train["start"].get("original_model_dir", train["start"]["model_dir"])
    evaluation = evaluate_flow(config, layout, base_dir, lineage)
    stages = _stage_manifests(
        ingest,
        curate,
        synthesize=synthesize,
        tokenize=train["tokenize"],
        train=train["train"],
        evaluate=evaluation["evaluate"],
        promote=evaluation["promote"],
    )
    report = run_report_task(layout, stages, train["start"])
    promoted = bool(evaluation["promote"]["summary"].get("promote"))
    logger.info("run %s finished: report %s; promoted: %s", config.run_id, report, promoted)
    return _result(config, layout, stages, report, "promoted" if promoted else "rejected", str(layout.model / "final"))
