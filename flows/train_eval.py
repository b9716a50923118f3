"""The train-eval flow: train, evaluate, gate and promote on data that already exists.

Either ``data_run``, a run whose curated documents exist (a ``data-refresh`` run, or any run that got past
curation): the flow continues *that* run (same run id and folder), synthesizing and tokenizing as needed,
and its outcome becomes ``promoted`` or ``rejected`` in place of ``data_only``. Or ``shards``, a tokenize
stage's output folder (``train/*.arrow``, ``heldout/domain.jsonl``) made with the starting model's
tokenizer: a new run trains on it as it is.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from cpt_core.config import RunConfig
from cpt_core.layout import CURATE_STEPS, RunLayout
from cpt_core.stage import read_manifest
from flows.run_names import flow_run_name
from flows.run_steps import open_run, train_and_evaluate, with_overrides


def _data_run_config(config: RunConfig, data_run: str) -> RunConfig:
    if config.run_id not in (None, data_run):
        raise ValueError(f"data_run: {data_run!r} continues that run; config.run_id {config.run_id!r} differs")
    return config.model_copy(update={"run_id": data_run})


def _with_demo_graph(config: RunConfig, layout: RunLayout) -> RunConfig:
    """``config`` with the knowledge graph the data run's demo site was built from, as its ingest saved it."""
    kg = layout.sources / "knowledge_graph.jsonl"
    demo = config.ingest.demo
    if config.knowledge_graph is None and demo is not None and demo.knowledge_graph and kg.is_file():
        config = config.model_copy(update={"knowledge_graph": str(kg)})  # the demo site's graph, as ingest saved it
    return config


def _earlier_stages(layout: RunLayout, data_run: str) -> dict:
    """The ingest and curate manifests of ``data_run``, as the report lists them; an error when it has none."""
    curated = read_manifest(layout.curated)
    if curated is None:
        raise ValueError(
            f"data_run: run {data_run!r} under {layout.root} has no curated documents ({layout.curated} has no "
            "manifest): run data-refresh first, or give a run id that got past curation"
        )
    if curated["summary"].get("docs_out", 0) == 0:
        raise ValueError(f"data_run: run {data_run!r} kept no curated document: nothing to train on")
    stages = {"crawl": read_manifest(layout.crawl), "extract": read_manifest(layout.extract)}
    stages.update({f"curate/{s}": read_manifest(layout.curate_step(s)) for s in CURATE_STEPS})
    return {name: {**m, "skipped": True} for name, m in stages.items() if m is not None}


@flow(name="train-eval", flow_run_name=flow_run_name("train-eval"), log_prints=True)
def train_eval(
    config: RunConfig, overrides: list[str] | None = None, data_run: str | None = None, shards: str | None = None
) -> dict:
    """Train on ``data_run``'s curated documents or on ``shards`` (exactly one), evaluate, gate, promote."""
    if (data_run is None) == (shards is None):
        raise ValueError("train-eval needs exactly one of the parameters data_run (a run id) and shards (a folder)")
    config = with_overrides(config, overrides)
    config = config.with_run_id() if data_run is None else _data_run_config(config, data_run)
    with open_run(config) as layout:
        get_run_logger().info("train-eval %s under %s", config.run_id, layout.run)
        earlier = {}
        if data_run is not None:
            earlier, config = _earlier_stages(layout, data_run), _with_demo_graph(config, layout)
        return train_and_evaluate(config, layout, earlier, shards=shards)
