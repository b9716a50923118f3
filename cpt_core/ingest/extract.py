"""Main-text extraction from every source of a run, as one datatrove pipeline.

Pipeline (one datatrove task per shard of each input's files)::

    SourcesReader -> MainTextExtractor (trafilatura) -> ExtractedTextFilter -> JsonlWriter(documents/)
      |- CharsetAwareWarcReader(the crawl's warc/)                 `-> exclusion JsonlWriter(dropped/)
      |- CharsetAwareWarcReader(each `warc` source)
      `- DocumentFolderReader(each `documents` source)

Readers (``cpt_core.ingest.readers``, ``cpt_core.ingest.documents``) decode pages with the charset detection
of ``cpt_core.ingest.charset`` and give every document ``source``, ``url`` or ``path``, ``fetched_at``,
``charset`` and ``content_hash``; this stage adds ``title`` and ``published_at``. Only HTML goes through
trafilatura; a PDF, DOCX, Markdown or transcript is text already and passes as it is.

Extraction runs in datatrove's ``ExtractorSandbox`` (a forked worker with a per-document timeout), using
trafilatura's ``bare_extraction`` so the publication date that htmldate finds comes out with the text, as
``metadata["published_at"]``; tables are kept by default (``include_tables``). Errors and timeouts do not
crash the stage: the document goes on with empty text and ``metadata["extract_error"]`` and the filter drops it with reason ``extract_error`` into ``dropped/``;
texts shorter than ``min_chars`` are dropped as ``empty``. Trafilatura's cross-document paragraph
deduplication is off: it depends on which documents a worker saw before, so output would change with the
number of tasks; dedup is the curation stage's job.

Document ids are a hash of the URL, so the same page gets the same id in every run. A WARC file cut short
or corrupt part-way is read up to the damage: the records before it are kept, and the file is counted as a
``truncated_warc`` drop and listed in the summary's ``unreadable``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.extractors.base import ExtractorSandbox
from datatrove.pipeline.extractors.trafilatura import Trafilatura
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils.typeshelper import StatHints
from pydantic import BaseModel, ConfigDict, Field

from cpt_core.executor import ExecutorConfig, LocalExecutorConfig, run_pipeline
from cpt_core.faults import fault_point
from cpt_core.ingest.charset import decode_html, header_charset, meta_charset
from cpt_core.ingest.documents import doc_id
from cpt_core.ingest.readers import CharsetAwareWarcReader, SourcesReader, listing_hash, source_readers
from cpt_core.ingest.sources import (
    DocumentsSource,
    SecretLookup,
    WarcSource,
    host_sources,
    storage_options,
)
from cpt_core.io import UNREADABLE_DIR, read_unreadable, unreadable_report
from cpt_core.progress import ProgressFn, no_progress
from cpt_core.stage import not_in_key, run_stage

logger = logging.getLogger(__name__)

__all__ = ["ExtractConfig", "decode_html", "header_charset", "meta_charset", "run_extract", "url_id"]
url_id = doc_id  # stable document id of a page: a hash of its URL

class ExtractConfig(BaseModel):
    """How main text is pulled out of HTML."""

    model_config = ConfigDict(extra="forbid")
    favour_precision: bool = True
    include_tables: bool = True
    # A guard against pathological pages whose effect depends on machine load, not a recipe choice.
    timeout_s: float = not_in_key(5.0, gt=0, description="per-document extraction timeout")
    min_chars: int = Field(50, ge=0, description="pages with less extracted text are dropped as 'empty'")
    executor: ExecutorConfig = Field(default_factory=LocalExecutorConfig)


# --------------------------------------------------------------------------------------------- steps


class MainTextExtractor(Trafilatura):
    """Trafilatura main text plus its publication date; failures are marked for the filter, not raised."""

    name = "⛏ Trafilatura (text + date)"

    def extract(self, text: str, url: str | None = None) -> dict:
        """Runs in the sandbox worker: an exception there would kill it, so errors come back as data."""
        if not text:
            return {"text": ""}
        try:
            from trafilatura import bare_extraction

            result = bare_extraction(
                text,
                url=url,
                favor_precision=self.favour_precision,
                include_comments=False,
                deduplicate=self.deduplicate,
                with_metadata=True,
                **self.kwargs,
            )
        except Exception as err:  # noqa: BLE001 (any trafilatura/lxml failure is one document's problem)
            return {"error": f"{type(err).__name__}: {err}"}
        if not result:
            return {"text": ""}
        return {"text": result.get("text") or "", "date": result.get("date"), "title": result.get("title")}

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import trafilatura  # noqa: F401 (imported here so every forked worker starts with it loaded)

        # a real page as warm-up: trafilatura's lazy set-up then does not eat the first document's timeout
        warmup = ("<html><body><article><p>warm up</p></article></body></html>", None)
        with ExtractorSandbox(timeout=self.timeout, warmup_text=warmup) as sandbox:
            for doc in data:
                self.stat_update(StatHints.total)
                if doc.metadata.get("format", "html") == "html" and not doc.metadata.get("drop_reason"):
                    with self.track_time():
                        self._extract_one(sandbox, doc)
                else:  # already text (a PDF, DOCX, transcript ...) or a file to drop: passes as it is
                    self.stat_update("already_text")
                    doc.metadata.setdefault("published_at", None)
                fault_point("extract:document")
                yield doc

    def _extract_one(self, sandbox: ExtractorSandbox, doc: Document) -> None:
        try:
            result = sandbox.process_document((doc.text, doc.metadata.get("url")), self.extract)
        except TimeoutError:
            result = {"error": f"timeout after {self.timeout}s"}
        except EOFError:
            result = {"error": "extraction worker died"}
        if "error" in result:
            self.stat_update("extract_error")
            doc.text = ""
            doc.metadata["extract_error"] = result["error"]
            return
        self.stat_update("extracted")
        doc.text = result["text"]
        # trafilatura finds the date with htmldate (headers, meta tags, URL, then the text)
        doc.metadata["published_at"] = result.get("date")
        if result.get("title") or not doc.metadata.get("title"):
            doc.metadata["title"] = result.get("title")


class ExtractedTextFilter(BaseFilter):
    """Drops documents whose extraction failed (``extract_error``) or left < ``min_chars`` (``empty``)."""

    name = "🔻 Extracted text"

    def __init__(self, min_chars: int, exclusion_writer=None) -> None:
        super().__init__(exclusion_writer)
        self.min_chars = min_chars

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if doc.metadata.get("drop_reason"):  # a file its reader could not make a document of
            return False, doc.metadata["drop_reason"]
        if doc.metadata.get("extract_error"):
            return False, "extract_error"
        if len(doc.text.strip()) < max(self.min_chars, 1):
            return False, "empty"
        return True


# --------------------------------------------------------------------------------------------- stage


def _summary(stats: dict, reader: str, text_filter: str, partial: Path, seconds: float) -> dict:
    read = stats.get(reader, {})
    kept = stats.get(text_filter, {})
    truncated = int(read.get("dropped_truncated_warc", 0))
    docs_in = int(read.get("documents", 0)) + truncated
    docs_out = int(kept.get(StatHints.forwarded, 0))
    dropped = {
        key.removeprefix("dropped_"): int(n)
        for key, n in sorted([*kept.items(), *read.items()])
        if key.startswith("dropped_") and n
    }

    def prefixed(prefix: str) -> dict[str, int]:
        return {k.removeprefix(prefix): int(n) for k, n in sorted(read.items()) if k.startswith(prefix)}

    chars = int(kept.get("doc_len", 0)) if docs_out else 0
    rate = docs_in / seconds if seconds > 0 else 0.0
    items = read_unreadable(partial / UNREADABLE_DIR)
    return {
        "docs_in": docs_in,
        "docs_out": docs_out,
        "dropped": dropped,
        "chars_out": chars,
        "records_skipped": int(read.get("records_skipped", 0)),
        "files_skipped": int(read.get("files_skipped", 0)),
        "charsets": prefixed("charset_"),
        "formats": prefixed("format_"),
        **({"unreadable": unreadable_report(items)[1]} if items else {}),
        "seconds": round(seconds, 3),
        "docs_per_s": round(rate, 2),
        "log_line": (
            f"extract: {docs_out} of {docs_in} documents kept ({chars} chars) in {seconds:.1f}s "
            f"({rate:.1f} docs/s); dropped " + (", ".join(f"{r} {n}" for r, n in dropped.items()) or "none")
        ),
    }


def run_extract(
    cfg: ExtractConfig,
    crawl_dir: Path | None,
    output: Path,
    progress: ProgressFn = no_progress,
    sources: list | None = None,
    secret_block: SecretLookup | None = None,
) -> dict:
    """Extract main text into ``output/documents`` (dropped: ``output/dropped``).

    Inputs: the crawl's ``crawl_dir/warc`` (None when the run crawls nothing) and the ``documents`` and
    ``warc`` entries of ``sources`` (web and demo entries name the crawled hosts' sources).
    ``secret_block`` resolves a Prefect Secret block name for sources that use one.
    """
    sources = list(sources or [])
    storage = [s for s in sources if isinstance(s, DocumentsSource | WarcSource)]
    options = {s.name: storage_options(s, secret_block) for s in storage}
    readers = source_readers(storage, options, None)
    warc_dir = Path(crawl_dir) / "warc" if crawl_dir is not None else None
    if warc_dir is not None:
        crawled = CharsetAwareWarcReader(str(warc_dir), None, "web", host_sources(sources), glob_pattern="*.warc.gz")
        readers.insert(0, crawled)
    if not readers:
        raise ValueError("extract has no input: give a crawl folder or a documents/warc source")
    extra = {
        "sources": [s.model_dump(mode="json") for s in storage],
        "hosts": host_sources(sources),
        "listing": listing_hash(readers[1:] if warc_dir is not None else readers),
    }

    def work(partial: Path) -> dict:
        if warc_dir is not None and not warc_dir.is_dir():
            raise FileNotFoundError(f"{warc_dir} does not exist: run the crawl stage first")
        progress(0, None, "extract: starting")
        for folder in ("documents", "dropped"):  # present even when no document lands there
            (partial / folder).mkdir()
        for reader in readers:
            reader.unreadable_dir = str(partial / UNREADABLE_DIR)
        started = time.monotonic()
        extractor = MainTextExtractor(
            favour_precision=cfg.favour_precision,
            timeout=cfg.timeout_s,
            deduplicate=False,
            include_tables=cfg.include_tables,
        )
        text_filter = ExtractedTextFilter(cfg.min_chars, exclusion_writer=JsonlWriter(str(partial / "dropped")))
        reader = SourcesReader(readers)
        pipeline = [reader, extractor, text_filter, JsonlWriter(str(partial / "documents"))]
        stats = run_pipeline(pipeline, partial / "logs", cfg.executor)
        summary = _summary(stats, str(reader), str(text_filter), partial, time.monotonic() - started)
        progress(summary["docs_in"], summary["docs_in"], f"extract: {summary['docs_out']} documents kept")
        logger.info(summary["log_line"])
        return summary

    code = ("cpt_core.ingest.extract", "cpt_core.ingest.readers", "cpt_core.ingest.documents",
            "cpt_core.ingest.charset", "cpt_core.executor")
    inputs = [Path(crawl_dir)] if crawl_dir is not None else []
    return run_stage("extract", Path(output), cfg, inputs, work, extra_key=extra, code=code)
