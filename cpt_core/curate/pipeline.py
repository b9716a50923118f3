"""Curation: language ID, quality heuristics, exact and near dedup, decontamination, each a datatrove step.

Each step of ``STEPS`` is its own resumable stage (``curate/<step>``) and its own datatrove pipeline:

    CountingJsonlReader(<input>/documents) -> <the step's filter> -> language tally -> JsonlWriter(documents/)
            \\-> unreadable/: bad lines      \\-> exclusion writer: dropped/ with metadata.filter_reason

A line that is not JSON or has no text, or the damaged rest of a corrupt ``.jsonl.gz``, is a named drop
(``malformed_json``, ``no_text``, ``corrupt_file``) and its ``file:line`` is listed in the summary's
``unreadable``; the stage goes on with the other documents.

Each step's summary carries ``by_language``: documents in, out and dropped by reason per language, counted
by the filter as it decides (``cpt_core.curate.funnel``). The last step also profiles what it keeps, the
accepted corpus, in the same pass (``cpt_core.curate.profile``): its summary's ``profile``.

Separate stages rather than one long pipeline, so a crash in near dedup does not redo language ID, each
step's output can be inspected on its own, and each step reports its own drop reasons. The cost is one
extra JSONL read/write per step, small next to language ID and quality scoring.

``select`` (after quality, before dedup) keeps recent and, when configured, in-domain documents
(``cpt_core.curate.select``). The last step, ``decontaminate``, drops (or flags) documents overlapping the evaluation texts gathered into
one JSONL file (``cpt_core.curate.decontaminate``); that file is one of the step's inputs, so new probes or
eval tasks redo it.

Language ID, quality and decontamination run on the configured executor (any number of tasks); the dedup steps always run
as one task, because "the first copy in input order is kept" needs one ordered pass (with
``near_dedup.backend: disk``, datatrove's buckets stage in between runs one task per band on the executor).
A disabled step copies its input documents through unchanged and still writes a manifest.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers.base import BaseReader
from pydantic import BaseModel, ConfigDict, Field

from cpt_core.curate.decontaminate import DecontaminateConfig, DecontaminateFilter
from cpt_core.curate.dedup import (
    INDEX_DIR,
    ExactDedupConfig,
    ExactDedupFilter,
    NearDedupConfig,
    NearDedupFilter,
)
from cpt_core.curate.exact_disk import DiskExactDedupFilter
from cpt_core.curate.funnel import by_language, passed_through
from cpt_core.curate.language_id import LanguageIdConfig, LanguageIdFilter
from cpt_core.curate.minhash_disk import NEAR_WORK, prepare_disk_near_dedup
from cpt_core.curate.profile import CorpusProfileStep, Profile, merge_profile
from cpt_core.curate.quality import QualityConfig, QualityFilter
from cpt_core.curate.reader import CountingJsonlReader
from cpt_core.curate.select import (
    MODEL_FILE,
    SelectConfig,
    SelectFilter,
    cutoff_for_fraction,
    domain_score,
    seed_texts,
    train_domain_model,
)
from cpt_core.executor import ExecutorConfig, LocalExecutorConfig, run_pipeline
from cpt_core.faults import fault_point
from cpt_core.io import UNREADABLE_DIR, iter_text_rows, jsonl_files, read_unreadable, unreadable_report
from cpt_core.layout import CURATE_STEPS as STEPS
from cpt_core.progress import ProgressFn, no_progress
from cpt_core.stage import config_hash, read_manifest, run_stage
from cpt_core.state import visible_runs

logger = logging.getLogger(__name__)

DOCS = "documents"  # same names as cpt_core.layout (which imports this module, so they are not imported)
DROPPED = "dropped"
LOGS = "logs"
PROFILE_PARTS = "profile_parts"  # the last step's per-task corpus profiles, merged into its summary

# ProgressFn callbacks cannot travel inside a pipeline (datatrove deep-copies and may pickle it), so the
# progress step holds a token and looks the callback up here; in another process it finds none and is silent.
_PROGRESS_CALLBACKS: dict[str, ProgressFn] = {}


class CurateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    language: LanguageIdConfig = Field(default_factory=LanguageIdConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    exact_dedup: ExactDedupConfig = Field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = Field(default_factory=NearDedupConfig)
    decontaminate: DecontaminateConfig = Field(default_factory=DecontaminateConfig)
    executor: ExecutorConfig = Field(default_factory=LocalExecutorConfig)


class LanguageTally(PipelineStep):
    """Counts the documents passing through by ``metadata["language"]`` (stats ``language_<code>``)."""

    name = "🔢 Language tally"
    type = "📊 - STATS"

    def __init__(self, progress_token: str | None = None, total: int | None = None, every_s: float = 2.0):
        super().__init__()
        self.progress_token = progress_token
        self.total = total
        self.every_s = every_s

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        progress = _PROGRESS_CALLBACKS.get(self.progress_token or "")
        last = time.monotonic()
        for n, doc in enumerate(data, 1):
            self.stat_update("documents", f"language_{doc.metadata.get('language') or 'unknown'}")
            if progress and time.monotonic() - last >= self.every_s:
                last = time.monotonic()
                progress(n, self.total, "documents kept")
            fault_point("curate:document")
            yield doc


def _reader(folder: Path, unreadable_dir: Path):
    if not folder.is_dir():
        raise FileNotFoundError(
            f"curation input {folder} does not exist: run the stage that produces it first"
        )
    if not any(p.is_file() for p in folder.rglob("*")):
        # Every document was dropped upstream. datatrove's readers refuse an empty folder; an empty list
        # as the pipeline's first element is datatrove's way to feed data directly, here none.
        return []
    # add_file_path=False: documents pass through unchanged, with no machine-specific paths in them.
    return CountingJsonlReader(str(folder), unreadable_dir, add_file_path=False)


def _writer(folder: Path):
    from datatrove.pipeline.writers import JsonlWriter

    return JsonlWriter(str(folder))


def _select_filter(cfg: SelectConfig, input_dir: Path, partial: Path, excluded) -> SelectFilter:
    """The select step's filter; with domain relevance on, first trains its classifier on this run's input
    (and, for ``top_fraction``, scores every input document once to find the cut-off score)."""
    if not cfg.domain.enabled:
        return SelectFilter(cfg, exclusion_writer=excluded)
    documents = [
        (row["text"], row.get("metadata") if isinstance(row.get("metadata"), dict) else {})
        for file in jsonl_files(input_dir / DOCS)
        for _, row in iter_text_rows(file, unreadable=[])
    ]
    model_path = partial / MODEL_FILE
    model = train_domain_model(cfg.domain, seed_texts(cfg.domain, documents), model_path)
    min_score = None
    if cfg.domain.top_fraction is not None:
        min_score = cutoff_for_fraction([domain_score(model, t) for t, _ in documents], cfg.domain.top_fraction)
    return SelectFilter(cfg, model_path, min_score, exclusion_writer=excluded)


def _step_filter(
    step: str,
    cfg: CurateConfig,
    input_dir: Path,
    partial: Path,
    dedup_state: Path,
    earlier_runs: list[str],
    eval_texts: Path | None,
):
    excluded = _writer(partial / DROPPED)
    if step == "decontaminate":
        return DecontaminateFilter(cfg.decontaminate, eval_texts, exclusion_writer=excluded)
    if step == "select":
        return _select_filter(cfg.select, input_dir, partial, excluded)
    if step == "language":
        return LanguageIdFilter(cfg.language, exclusion_writer=excluded)
    if step == "quality":
        return QualityFilter(cfg.quality, exclusion_writer=excluded)
    index = partial / INDEX_DIR
    if step == "exact_dedup":
        exact = DiskExactDedupFilter if cfg.exact_dedup.backend == "disk" else ExactDedupFilter
        return exact(dedup_state, earlier_runs, index, exclusion_writer=excluded)
    if cfg.near_dedup.backend == "disk":
        # stages 1-3 of datatrove's on-disk MinHash run now (a second read of the input); the filter is stage 4
        reader = _reader(input_dir / DOCS, partial / NEAR_WORK / UNREADABLE_DIR)
        executor = cfg.executor.model_copy(update={"tasks": 1})
        return prepare_disk_near_dedup(
            cfg.near_dedup, reader, partial, dedup_state, earlier_runs, executor, excluded
        )
    return NearDedupFilter(cfg.near_dedup, dedup_state, earlier_runs, index, exclusion_writer=excluded)


def _input_count(input_dir: Path) -> int | None:
    """The previous stage's document count, from its manifest, for progress totals."""
    summary = (read_manifest(input_dir) or {}).get("summary") or {}
    count = summary.get("docs_out")
    return count if isinstance(count, int) else None


def summarise(step: str, stats: dict, seconds: float) -> dict:
    """datatrove per-step stats -> the stage summary (docs in/out, drop reasons, languages, rate)."""
    docs_in = docs_out = 0
    dropped: Counter[str] = Counter()
    reader_drops: Counter[str] = Counter()
    filter_stats: list[dict] = []
    languages: dict[str, int] = {}
    extra: dict[str, int] = {}
    # Step names are datatrove's "<type>: <name>" (see PipelineStep.__repr__).
    for name, metrics in stats.items():
        if name.startswith(BaseReader.type):
            docs_in += int(metrics.get("documents", 0))
            for key, value in metrics.items():
                if key.startswith("dropped_"):  # lines the reader could not read: in, and dropped
                    dropped[key.removeprefix("dropped_")] += int(value)
                    reader_drops[key.removeprefix("dropped_")] += int(value)
                    docs_in += int(value)
        elif name == f"{LanguageTally.type}: {LanguageTally.name}":
            docs_out += int(metrics.get("documents", 0))
            for key, value in metrics.items():
                if key.startswith("language_"):
                    languages[key.removeprefix("language_")] = int(value)
        elif name.startswith(BaseFilter.type):
            filter_stats.append(metrics)
            named = 0
            for key, value in metrics.items():
                if key.startswith("dropped_"):
                    dropped[key.removeprefix("dropped_")] += int(value)
                    named += int(value)
                elif key.startswith(("earlier_", "tokenizer_fallback_", "lsh_", "pii_", "contamination_", "eval_items_", "select_")):
                    extra[key] = int(value)
            if int(metrics.get("dropped", 0)) > named:  # a filter that gave no reason
                dropped["unspecified"] += int(metrics["dropped"]) - named
    rate = docs_in / seconds if seconds > 0 else 0.0
    n_dropped = sum(dropped.values())
    reasons = ", ".join(f"{k} {v}" for k, v in dropped.most_common())
    return {
        "step": step,
        "enabled": True,
        "docs_in": docs_in,
        "docs_out": docs_out,
        "dropped": dict(sorted(dropped.items())),
        "languages": dict(sorted(languages.items())),
        "by_language": by_language(filter_stats, reader_drops),
        **extra,
        "seconds": round(seconds, 3),
        "docs_per_s": round(rate, 1),
        "log_line": (
            f"curate/{step}: {docs_in} docs in, {docs_out} kept, {n_dropped} dropped"
            + (f" ({reasons})" if reasons else "")
            + f" in {seconds:.1f}s ({rate:.0f} docs/s)"
        ),
    }


def _pass_through(step: str, input_dir: Path, partial: Path) -> dict:
    """A disabled step: the input's document files, copied byte for byte, and counted."""
    started = time.monotonic()
    source = input_dir / DOCS
    if not source.is_dir():
        raise FileNotFoundError(
            f"curation input {source} does not exist: run the stage that produces it first"
        )
    shutil.copytree(source, partial / DOCS)
    languages: dict[str, int] = {}
    count = 0
    profile = Profile() if step == STEPS[-1] else None
    for doc in _reader(partial / DOCS, partial / UNREADABLE_DIR)():
        count += 1
        lang = doc.metadata.get("language") or "unknown"
        languages[lang] = languages.get(lang, 0) + 1
        if profile is not None:
            profile.add(doc.text, doc.metadata)
    seconds = time.monotonic() - started
    return {
        "step": step,
        "enabled": False,
        "docs_in": count,
        "docs_out": count,
        "dropped": {},
        "languages": dict(sorted(languages.items())),
        "by_language": passed_through(languages),
        "seconds": round(seconds, 3),
        "docs_per_s": round(count / seconds, 1) if seconds > 0 else 0.0,
        "log_line": f"curate/{step}: disabled, {count} docs passed through unchanged",
        **_unreadable_places(partial),
        **({"profile": profile.summary()} if profile is not None else {}),
    }


def _unreadable_places(partial: Path) -> dict:
    """``{"unreadable": ["file:line reason: error", ...]}`` when some input lines could not be read."""
    items = read_unreadable(partial / UNREADABLE_DIR)
    if not items:
        return {}
    _, shown = unreadable_report(items)
    for place in shown:
        logger.warning("unreadable input: %s", place)
    return {"unreadable": shown}


def run_curate_step(
    step: str,
    cfg: CurateConfig,
    input_dir: Path,
    output: Path,
    dedup_state: Path,
    run_id: str,
    progress: ProgressFn = no_progress,
    earlier_runs: list[str] | None = None,
    eval_texts: Path | None = None,
) -> dict:
    """Run one curation step as a resumable stage; returns its manifest (``summary`` holds the counts).

    ``input_dir`` holds the previous stage's ``documents/``; ``output`` receives ``documents/``,
    ``dropped/``, ``logs/`` (datatrove's) and, for dedup steps, ``index/`` (commit it with
    ``cpt_core.dedup.commit_dedup_index`` once the run's curation has succeeded). ``eval_texts`` is the
    JSONL of evaluation texts the ``decontaminate`` step checks against (``gather_eval_texts``).
    """
    if step not in STEPS:
        raise ValueError(f"unknown curation step {step!r}; steps are {', '.join(STEPS)}")
    step_cfg = getattr(cfg, step)
    input_dir, output, dedup_state = Path(input_dir), Path(output), Path(dedup_state)
    dedup = step in ("exact_dedup", "near_dedup")
    if dedup and earlier_runs is None:
        earlier_runs = visible_runs(dedup_state.parent, run_id)

    def work(partial: Path) -> dict:
        if not step_cfg.enabled:
            summary = _pass_through(step, input_dir, partial)
            logger.info(summary["log_line"])
            return summary
        total = _input_count(input_dir)
        executor = cfg.executor
        if dedup:
            executor = executor.model_copy(update={"tasks": 1, "workers": 1})
        token = f"{run_id}/{step}/{id(partial)}"
        _PROGRESS_CALLBACKS[token] = progress
        pipeline = [
            _reader(input_dir / DOCS, partial / UNREADABLE_DIR),
            _step_filter(step, cfg, input_dir, partial, dedup_state, earlier_runs or [], eval_texts),
            LanguageTally(progress_token=token, total=total),
            *([CorpusProfileStep(partial / PROFILE_PARTS)] if step == STEPS[-1] else []),
            _writer(partial / DOCS),
        ]
        progress(0, total, f"curate/{step} started")
        started = time.monotonic()
        try:
            stats = run_pipeline(pipeline, partial / LOGS, executor)
        finally:
            _PROGRESS_CALLBACKS.pop(token, None)
        shutil.rmtree(partial / NEAR_WORK, ignore_errors=True)  # the disk near dedup's scratch (its decisions)
        summary = summarise(step, stats, time.monotonic() - started) | _unreadable_places(partial)
        if step == STEPS[-1]:
            summary["profile"] = merge_profile(partial / PROFILE_PARTS)
            shutil.rmtree(partial / PROFILE_PARTS, ignore_errors=True)
        # Downstream stages expect the folders even when every document was dropped (or none were).
        (partial / DOCS).mkdir(exist_ok=True)
        (partial / DROPPED).mkdir(exist_ok=True)
        progress(summary["docs_out"], summary["docs_out"], summary["log_line"])
        logger.info(summary["log_line"])
        return summary

    # The dedup steps' output depends on which earlier runs' documents they were checked against; they
    # run as one task, while the other steps write one file per executor task.
    extra_key = {"earlier_runs": earlier_runs} if dedup else {"executor": config_hash(cfg.executor)}
    code = ("cpt_core.curate", "cpt_core.executor")
    inputs = [input_dir, Path(eval_texts)] if step == "decontaminate" and eval_texts else [input_dir]
    return run_stage(f"curate/{step}", output, step_cfg, inputs, work, extra_key=extra_key, code=code)
