"""One Prefect task per pipeline stage.

Each task calls the cpt_core stage function with paths (never documents or tensors: Prefect hashes and
pickles task inputs), retries transient failures, reports progress, and publishes the stage's report.
Resumability is the stage manifests' job (``cpt_core.stage.run_stage``): a retried or rerun task whose
output is complete returns at once.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from prefect import get_run_logger, task

from cpt_core.curate.decontaminate import gather_eval_texts, write_eval_texts
from cpt_core.curate.dedup import commit_dedup_index
from cpt_core.curate.pipeline import CurateConfig, run_curate_step
from cpt_core.data.tokenize import HELDOUT_FILE, TokenizeConfig, run_tokenize
from cpt_core.evaluate.gate import PromoteConfig
from cpt_core.evaluate.registry import Registry, run_promote
from cpt_core.evaluate.stage import EvalConfig, run_evaluate
from cpt_core.faults import RetryConfig, is_transient
from cpt_core.ingest.crawl import CrawlConfig, crawl_with_state
from cpt_core.ingest.extract import ExtractConfig, run_extract
from cpt_core.ingest.sources import Source
from cpt_core.io import atomic_file, atomic_write_json
from cpt_core.layout import RunLayout
from cpt_core.report.model_card import write_model_card
from cpt_core.stage import MANIFEST, read_manifest
from cpt_core.state import record_outcome, visible_runs
from cpt_core.storage import sync_stage
from cpt_core.synthesize.stage import PROBE_FILE, SynthesizeConfig, run_synthesize
from cpt_core.train.base_model import BaseModelConfig, resolve_base_model
from cpt_core.train.config import ModelConfig, TrainConfig
from cpt_core.train.launch import run_train
from cpt_core.train.prepare import run_prepare_model
from tasks.reporting import PrefectProgress, complete_progress, publish_stage, write_curate_report

# Network and file-system hiccups are worth a retry; a bad config, bad data or a bug is not, and fails the
# same way each time: only transient errors are retried (``transient_only``), few times and soon. The tasks
# are declared with ``RetryConfig``'s defaults; a run's ``retry`` config section sets them per run
# (``with_retries``).


def transient_only(task, task_run, state) -> bool:
    """Prefect's ``retry_condition_fn``: retry a failed stage task only when its error is transient."""
    err = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    retry = is_transient(err if isinstance(err, BaseException) else None)
    if not retry:
        get_run_logger().warning("%s failed with %r: not a transient error, not retried", task.name, err)
    return retry


def retry_options(cfg: RetryConfig, training: bool = False) -> dict:
    """Prefect task options retrying transient errors as ``cfg`` says (training: ``cfg.train_retries`` times)."""
    retries = cfg.train_retries if training else cfg.retries
    return {"retries": retries, "retry_delay_seconds": cfg.delays(retries) or 0, "retry_condition_fn": transient_only}


def with_retries(stage_task, cfg: RetryConfig):
    """``stage_task`` with the run's retry settings."""
    return stage_task.with_options(**retry_options(cfg, training=stage_task.name == "train"))


RETRYING = retry_options(RetryConfig())


def _finish(stage: str, layout: RunLayout, manifest: dict) -> dict:
    publish_stage(stage, layout.run_id, manifest, layout.report)
    sync_stage(layout)  # a URL root gets the stage's output (and the state it added) now, not at the run's end
    return manifest


@task(name="crawl", **RETRYING)
def crawl_task(cfg: CrawlConfig, layout: RunLayout) -> dict:
    manifest = crawl_with_state(
        cfg, layout.crawl, layout.state, layout.run_id, progress=PrefectProgress("crawl", layout.run_id)
    )
    return _finish("crawl", layout, manifest)


def _secret_block(name: str) -> str:
    """The value of a Prefect Secret block: resolved inside the stage, never passed as a task input."""
    from prefect.blocks.system import Secret

    value = Secret.load(name).get()
    return value if isinstance(value, str) else json.dumps(value)


@task(name="extract", **RETRYING)
def extract_task(cfg: ExtractConfig, sources: list[Source], layout: RunLayout, crawled: bool = True) -> dict:
    manifest = run_extract(
        cfg,
        layout.crawl if crawled else None,
        layout.extract,
        progress=PrefectProgress("extract", layout.run_id),
        sources=sources,
        secret_block=_secret_block,
    )
    return _finish("extract", layout, manifest)


@task(name="eval-texts", **RETRYING)
def eval_texts_task(cfg: EvalConfig, layout: RunLayout, knowledge_graph: str | None) -> str:
    """Gather the evaluation texts this run will score (fact probe, earlier auto probes, local lm-eval data,
    general held-out text) into one file, for curation's decontaminate step; returns its path."""
    rows = gather_eval_texts(
        Path(knowledge_graph) if knowledge_graph and cfg.fact_probe else None,
        cfg.lm_eval_tasks,
        cfg.general_heldout,
        list(_earlier_probes(layout).values()) if cfg.auto_probe else [],
    )
    get_run_logger().info("eval-texts: %d evaluation texts to decontaminate against", len(rows))
    return str(write_eval_texts(rows, layout.eval_texts))


@task(name="curate-step", task_run_name="curate-{step}", **RETRYING)
def curate_step_task(
    step: str, cfg: CurateConfig, layout: RunLayout, input_dir: Path, eval_texts: str | None = None
) -> dict:
    manifest = run_curate_step(
        step,
        cfg,
        input_dir,
        layout.curate_step(step),
        layout.dedup_dir,
        layout.run_id,
        progress=PrefectProgress(f"curate-{step}", layout.run_id),
        eval_texts=Path(eval_texts) if eval_texts else None,
    )
    return _finish(f"curate/{step}", layout, manifest)


@task(name="curate-report")
def curate_report_task(layout: RunLayout, manifests: dict) -> str:
    """The curation report: per-language funnel of every step, profile of the accepted corpus, one plot."""
    return str(write_curate_report(layout, manifests))


@task(name="commit-dedup-index")
def commit_dedup_task(layout: RunLayout) -> None:
    """Record this run's accepted documents in the cross-run dedup index (after curation succeeded)."""
    for kind, step in (("exact", "exact_dedup"), ("near", "near_dedup")):
        commit_dedup_index(layout.dedup_dir, layout.run_id, layout.curate_step(step), kind)


@task(name="resolve-base-model", **RETRYING)
def base_model_task(cfg: BaseModelConfig, layout: RunLayout) -> dict:
    """The model this run starts from: the registry's champion, or the configured base checkpoint.

    The choice is pinned in ``<run>/start.json`` the first time: a resumed or repeated run keeps starting
    from the same model even after it has itself been promoted to champion.
    """
    pinned = layout.run / "start.json"
    if pinned.exists():
        start = json.loads(pinned.read_text())
        if Path(start["model_dir"]).exists():
            return start
    # A champion whose folder is gone is an error naming the repair, not a silent restart from the base.
    champion = Registry(layout.registry).champion_model() if cfg.continue_from_champion else None
    if champion:
        start = {"model_dir": champion["model_dir"], "parent": champion["run_id"], "source": cfg.source}
    else:
        model_dir = resolve_base_model(cfg, layout.cache, progress=PrefectProgress("base-model", layout.run_id))
        complete_progress("base-model", layout.run_id)
        start = {"model_dir": str(model_dir), "parent": cfg.source, "source": cfg.source}
    atomic_write_json(pinned, start)
    return start


@task(name="prepare-model", **RETRYING)
def prepare_model_task(cfg: ModelConfig, layout: RunLayout, start: dict) -> dict:
    """Surgery and tokenizer extension on the base checkpoint; ``start`` with the prepared ``model_dir``.

    Only a run that starts from the configured base checkpoint is prepared: a champion already carries the
    surgery and the extended tokenizer, and growing it again every refresh would compound them.
    """
    if not cfg.changes_model:
        return start
    if start["parent"] != start["source"]:
        get_run_logger().info("prepare-model: champion %s is already prepared; nothing to do", start["parent"])
        return start
    manifest = run_prepare_model(
        cfg, Path(start["model_dir"]), layout.curated, layout.start_model,
        progress=PrefectProgress("prepare-model", layout.run_id),
    )  # fmt: skip
    _finish("prepare-model", layout, manifest)
    return {**start, "model_dir": str(layout.start_model), "original_model_dir": start["model_dir"]}


@task(name="synthesize", **RETRYING)
def synthesize_task(
    cfg: SynthesizeConfig,
    tokenize: TokenizeConfig,
    layout: RunLayout,
    knowledge_graph: str | None,
    base_model: BaseModelConfig | None = None,
) -> dict:
    """Synthetic training documents from the curated training split, and the run's auto probe.

    The ``model`` strategy's generator is ``synthesize.generator.model``, or with ``base`` the run's
    configured base checkpoint, resolved like it (``resolve_base_model``); its outputs are cached under
    ``<root>/cache/synthesize``. The probe is kept under ``state/probes/<run_id>.jsonl`` (like all state, it counts for other runs once
    this run has finished), so later refreshes can re-run it.
    """
    manifest = run_synthesize(
        cfg,
        layout.curated,
        layout.synthesize,
        tokenize.heldout_fraction,
        tokenize.heldout_max_docs,
        has_knowledge_graph=knowledge_graph is not None,
        progress=PrefectProgress("synthesize", layout.run_id),
        generator_dir=_generator_dir(cfg, base_model or BaseModelConfig(), layout, knowledge_graph is not None),
        cache_dir=layout.cache / "synthesize",
    )
    probe = layout.synthesize / PROBE_FILE
    if probe.is_file() and probe.stat().st_size:
        with atomic_file(layout.probes_dir / f"{layout.run_id}.jsonl") as tmp:
            tmp.write_bytes(probe.read_bytes())
    return _finish("synthesize", layout, manifest)


def _generator_dir(cfg: SynthesizeConfig, base: BaseModelConfig, layout: RunLayout, has_kg: bool) -> Path | None:
    if "model" not in cfg.active_strategies(has_kg):
        return None
    source = base if cfg.generator.model == "base" else base.model_copy(update={"source": cfg.generator.model})
    return resolve_base_model(source, layout.cache, progress=PrefectProgress("generator-model", layout.run_id))


def _auto_probe(layout: RunLayout) -> Path | None:
    """This run's auto probe, when the synthesize stage made one."""
    probe = layout.synthesize / PROBE_FILE
    return probe if probe.is_file() and probe.stat().st_size else None


def _earlier_probes(layout: RunLayout) -> dict[str, Path]:
    """The auto probes of the earlier runs this run may see (its pinned state view), by run id."""
    probes = {run_id: layout.probes_dir / f"{run_id}.jsonl" for run_id in visible_runs(layout.state, layout.run_id)}
    return {run_id: path for run_id, path in probes.items() if path.is_file() and path.stat().st_size}


@task(name="tokenize", **RETRYING)
def tokenize_task(cfg: TokenizeConfig, layout: RunLayout, start: dict, knowledge_graph: str | None) -> dict:
    # Too few documents for a held-out split: score on the held-out set of the run this one continues from.
    parent_heldout = layout.root / "runs" / str(start["parent"]) / "tokens" / HELDOUT_FILE
    manifest = run_tokenize(
        cfg,
        layout.curated,
        Path(start["model_dir"]),
        layout.tokens,
        knowledge_graph=Path(knowledge_graph) if knowledge_graph else None,
        progress=PrefectProgress("tokenize", layout.run_id),
        fallback_heldout=parent_heldout if parent_heldout.is_file() else None,
        synthetic_dir=layout.synthesize if (layout.synthesize / MANIFEST).is_file() else None,
    )
    return _finish("tokenize", layout, manifest)


# Training runs in its own subprocess with its own timeout (TrainConfig.timeout_s); a retry resumes from
# the latest checkpoint rather than starting over.
def gpu_slot(name: str):
    """Hold the one slot of the global concurrency limit ``name`` (created with limit 1 when missing).

    Every training on a machine takes the same slot, so two trainings never share its GPUs: the second
    waits until the first is done (it shows as waiting on the limit in the UI).
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:
                pass  # another training created it first
    return concurrency(name, occupy=1, strict=True)


@task(name="train", **retry_options(RetryConfig(), training=True))
def train_task(cfg: TrainConfig, layout: RunLayout, model_dir: str) -> dict:
    slot = cfg.gpu_slot.format(host=socket.gethostname())
    get_run_logger().info("train: waiting for the GPU slot %r (one training per machine)", slot)
    with gpu_slot(slot):
        manifest = run_train(
            cfg, Path(model_dir), layout.tokens, layout.model, progress=PrefectProgress("train", layout.run_id)
        )
    return _finish("train", layout, manifest)


@task(name="evaluate", **RETRYING)
def evaluate_task(
    cfg: EvalConfig,
    layout: RunLayout,
    base_dir: str,
    knowledge_graph: str | None,
    trained_dir: str | None = None,
    domain_heldout: str | None = None,
) -> dict:
    """``base_dir`` against the run's trained model (or ``trained_dir``) on its held-out text (or ``domain_heldout``)."""
    manifest = run_evaluate(
        cfg,
        Path(base_dir),
        Path(trained_dir) if trained_dir else layout.model / "final",
        Path(domain_heldout) if domain_heldout else layout.tokens / HELDOUT_FILE,
        Path(knowledge_graph) if knowledge_graph else None,
        layout.eval,
        progress=PrefectProgress("evaluate", layout.run_id),
        auto_probe=_auto_probe(layout),
        earlier_probes=_earlier_probes(layout),
    )
    write_model_card(layout)  # rewritten with the gate decision once promote has run
    return _finish("evaluate", layout, manifest)


@task(name="promote", **RETRYING)
def promote_task(cfg: PromoteConfig, layout: RunLayout, lineage: dict, model_dir: str | None = None) -> dict:
    manifest = run_promote(
        cfg,
        layout.registry,
        layout.run_id,
        Path(model_dir) if model_dir else layout.model / "final",
        layout.eval / "results.json",
        lineage,
        layout.run / "promote",
    )
    outcome = "promoted" if manifest["summary"].get("promote") else "rejected"
    record_outcome(layout.state, layout.run_id, outcome, {"reasons": manifest["summary"].get("reasons", [])})
    write_model_card(layout)
    return _finish("promote", layout, manifest)


@task(name="nothing-new")
def nothing_new_task(layout: RunLayout, curated: dict) -> dict:
    """End a run whose curation kept no new or changed document: a decision that says so, no training."""
    reason = (
        f"curation kept no new or changed document ({curated['summary'].get('docs_in', 0)} in, 0 out): "
        "nothing to train on this time; the champion stays as it is"
    )
    decision = {"promote": False, "outcome": "nothing_new", "reasons": [reason]}
    atomic_write_json(layout.run / "promote" / "decision.json", decision)
    record_outcome(layout.state, layout.run_id, "nothing_new", {"reasons": [reason]})
    return decision


@task(name="data-only")
def data_only_task(layout: RunLayout, curated: dict) -> dict:
    """End a data-refresh run: its crawl state and dedup entries count for later runs; no model is trained."""
    docs = curated["summary"].get("docs_out", 0)
    reason = f"data refresh: {docs} curated documents kept for a later train-eval run; no model trained"
    record_outcome(layout.state, layout.run_id, "data_only", {"reasons": [reason], "docs": docs})
    return {"promote": False, "outcome": "data_only", "reasons": [reason]}


@task(name="use-shards")
def use_shards_task(layout: RunLayout, shards: str) -> dict:
    """Train on a tokenize stage's output from elsewhere: ``<run>/tokens`` becomes a link to ``shards``.

    The shards must have been made with the tokenizer of the model this run starts from.
    """
    folder = Path(shards).expanduser().resolve()
    if not any((folder / "train").glob("*.arrow")):
        raise ValueError(f"shards: {folder} holds no train/*.arrow files (the tokenize stage's output folder)")
    if not (folder / HELDOUT_FILE).is_file():
        raise ValueError(f"shards: {folder} holds no {HELDOUT_FILE} (the held-out text evaluate scores)")
    if layout.tokens.is_symlink() and layout.tokens.resolve() != folder:
        raise ValueError(f"run {layout.run_id} already trains on {layout.tokens.resolve()}, not {folder}")
    if not layout.tokens.exists():
        layout.tokens.symlink_to(folder, target_is_directory=True)
    elif not layout.tokens.is_symlink():
        raise ValueError(f"run {layout.run_id} already has its own tokens/ folder: give a new run_id for {folder}")
    manifest = read_manifest(folder) or {"stage": "tokenize", "summary": {}}
    return {**manifest, "skipped": True, "summary": {**manifest.get("summary", {}), "shards": str(folder)}}
