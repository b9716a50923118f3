"""The steps the deployable flows share: parameters to a run config, the train-evaluate-promote tail, the
run report and the result every flow returns."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from cpt_core.config import RunConfig, apply_overrides, validate_config
from cpt_core.layout import RunLayout
from cpt_core.storage import open_root
from cpt_core.train.base_model import is_probably_instruct
from flows.evaluate import evaluate_flow
from flows.train import train_flow
from tasks.reporting import write_run_report
from tasks.stages import synthesize_task, with_retries

HELDOUT_NOTES = {
    "parent_heldout": "Too few new documents to hold any out: domain bits/byte is scored on the held-out set of "
    "the run this one continues from ({parent}).",
    "in_sample": "Too few documents to hold any out and no earlier held-out set: domain bits/byte is scored on "
    "the training documents themselves (in-sample, optimistic).",
}


def with_overrides(config: RunConfig, overrides: list[str] | None) -> RunConfig:
    """``config`` with the dotted ``field=value`` overrides applied, validated like the YAML."""
    if overrides:
        config = validate_config(apply_overrides(config.model_dump(mode="json"), overrides), "overrides")
    return config


def run_config(config: RunConfig, overrides: list[str] | None) -> RunConfig:
    """``config`` with its overrides applied and a run id (a timestamp unless given)."""
    return with_overrides(config, overrides).with_run_id()


def open_run(config: RunConfig):
    """Hold the run's root and yield its layout (a URL root through a local mirror, synced stage by stage)."""
    return open_root(config.root, config.run_id, config.storage_options, config.cache_dir)


def with_snapshot(config: RunConfig, snapshot: str | None, source: str) -> RunConfig:
    """``config`` with the documents snapshot ``snapshot`` as one more source (unchanged when None or empty)."""
    if not snapshot or snapshot == "None":  # an event without a path renders its template as "None"
        return config
    data = config.model_dump(mode="json")
    data["ingest"]["sources"].append({"kind": "documents", "name": source or "snapshot", "path": snapshot})
    return validate_config(data, f"snapshot {snapshot}")


@task(name="run-report")
def run_report_task(layout: RunLayout, stages: dict, start: dict, notes: list[str] | None = None) -> str:
    notes = list(notes or [])
    if is_probably_instruct(Path(start["model_dir"])):
        notes.append(
            f"The starting checkpoint ({start['source']}) looks like an instruct model: CPT on raw text erodes "
            "instruction following. Start from a base checkpoint for production runs."
        )
    rule = stages.get("tokenize", {}).get("summary", {}).get("heldout_rule")
    if rule in HELDOUT_NOTES:
        notes.append(HELDOUT_NOTES[rule].format(parent=start["parent"]))
    return str(write_run_report(layout, stages, start["source"], notes))


def stage_manifests(ingest: dict, curate: dict, **later: dict) -> dict:
    """The run's stage manifests in pipeline order, as the report lists them."""
    return {
        "crawl": ingest["crawl"],
        "extract": ingest["extract"],
        **{f"curate/{k}": v for k, v in curate.items()},
        **later,
    }


def flow_result(config: RunConfig, layout: RunLayout, stages: dict, report, outcome: str, model: str | None) -> dict:
    """What a flow returns: where the run's report and model are, and how it ended."""
    return {
        "run_id": config.run_id,
        "run_dir": str(layout.run),
        "report": str(report),
        "model": model,
        "promoted": outcome == "promoted",
        "outcome": outcome,
        "skipped": [name for name, m in stages.items() if m.get("skipped")],
    }


def train_and_evaluate(config: RunConfig, layout: RunLayout, earlier: dict, shards: str | None = None) -> dict:
    """Synthesize, tokenize (or take ``shards``), train, evaluate, gate and promote; then the run report.

    ``earlier`` are the manifests of the stages before (ingest, curate), listed first in the report.
    """
    later = {}
    if shards is None:
        later["synthesize"] = with_retries(synthesize_task, config.retry)(
            config.synthesize, config.tokenize, layout, config.knowledge_graph, config.base_model
        )
    train = train_flow(config, layout, shards=shards)
    lineage = {
        "parent": train["start"]["parent"],
        "base_source": train["start"]["source"],
        "tokens_key": train["tokenize"].get("key"),
        "shards": str(layout.tokens / "train"),
        "source_urls": str(layout.crawl / "fetch_log.jsonl"),
        "config": config.model_dump(mode="json"),
    }
    # Compared against the checkpoint before surgery/extension: bits per byte do not depend on the tokenizer.
    base_dir = train["start"].get("original_model_dir", train["start"]["model_dir"])
    evaluation = evaluate_flow(config, layout, base_dir, lineage)
    stages = {
        **earlier,
        **later,
        "tokenize": train["tokenize"],
        "train": train["train"],
        "evaluate": evaluation["evaluate"],
        "promote": evaluation["promote"],
    }
    report = run_report_task(layout, stages, train["start"])
    promoted = bool(evaluation["promote"]["summary"].get("promote"))
    get_run_logger().info("run %s finished: report %s; promoted: %s", config.run_id, report, promoted)
    outcome = "promoted" if promoted else "rejected"
    return flow_result(config, layout, stages, report, outcome, str(layout.model / "final"))
