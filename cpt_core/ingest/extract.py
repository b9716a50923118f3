"""Main-text extraction from WARC files with trafilatura, as a datatrove pipeline.

Pipeline (one datatrove task per WARC file shard)::

    CharsetAwareWarcReader -> MainTextExtractor (trafilatura) -> ExtractedTextFilter -> JsonlWriter(documents/)
                                                                   `-> exclusion JsonlWriter(dropped/)

Charset. datatrove's ``WarcReader`` decodes every payload as UTF-8 and, when that fails, guesses with
cchardet; it never looks at what the page declares and silently skips a record it cannot decode. We keep its
reader (file sharding, stats, adapters) and replace only the record decoding, in the order browsers use:

1. a byte-order mark;
2. valid UTF-8: non-ASCII bytes that form valid UTF-8 are practically never another encoding (EUC-KR,
   Shift_JIS or GBK byte pairs are invalid UTF-8, Latin-1 text almost always is), so such a page is read as
   UTF-8 whatever it declares; this is the common "server says ISO-8859-1 by default" mislabelling;
3. otherwise the charset of the HTTP ``Content-Type``, then the one in a ``<meta>`` tag (prescan of the
   first 4 KB), each accepted only if the bytes decode strictly *and* the text is not mojibake:
   charset_normalizer's ``mess_ratio`` is near 0 for real text and far above 0.2 when, say, EUC-KR bytes
   are read as windows-1252;
4. detection with charset_normalizer;
5. UTF-8 with replacement characters, recorded as ``utf_8/replace``, so no page is lost without a trace.

Labels are mapped as the WHATWG encoding standard does (``iso-8859-1``/``ascii`` mean windows-1252,
``euc-kr`` means windows-949, ``gb2312`` means GB18030): real pages labelled so use the superset's bytes.
The codec used is kept in ``metadata["charset"]``.

Extraction runs in datatrove's ``ExtractorSandbox`` (a forked worker with a per-document timeout), using
trafilatura's ``bare_extraction`` so the publication date that htmldate finds comes out with the text.
Errors and timeouts do not crash the stage: the document goes on with empty text and
``metadata["extract_error"]`` and the filter drops it with reason ``extract_error`` into ``dropped/``;
texts shorter than ``min_chars`` are dropped as ``empty``. Trafilatura's cross-document paragraph
deduplication is off: it depends on which documents a worker saw before, so output would change with the
number of tasks; dedup is the curation stage's job.

Document ids are a hash of the URL, so the same page gets the same id in every run. A WARC file cut short
or corrupt part-way is read up to the damage: the records before it are kept, and the file is counted as a
``truncated_warc`` drop and listed in the summary's ``unreadable``.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import re
import time
from pathlib import Path

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.extractors.base import ExtractorSandbox
from datatrove.pipeline.extractors.trafilatura import Trafilatura
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers.warc import WarcReader
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils.typeshelper import StatHints
from pydantic import BaseModel, ConfigDict, Field

from cpt_core.executor import ExecutorConfig, run_pipeline
from cpt_core.faults import fault_point
from cpt_core.ingest.warc import WARC_READ_ERRORS
from cpt_core.io import (
    HTML_TYPES,
    UNREADABLE_DIR,
    Unreadable,
    note_unreadable,
    read_unreadable,
    unreadable_report,
)
from cpt_core.progress import ProgressFn, no_progress
from cpt_core.stage import not_in_key, run_stage

logger = logging.getLogger(__name__)

MESS_THRESHOLD = 0.2  # charset_normalizer's own default ceiling for "this decoding is plausible"
META_PRESCAN_BYTES = 4096
_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
# WHATWG: labels that real pages use for a superset encoding; keys are Python's canonical codec names
_WHATWG_SUPERSETS = {
    codecs.lookup(label).name: superset
    for label, superset in {
        "iso-8859-1": "cp1252",
        "ascii": "cp1252",
        "euc-kr": "cp949",
        "gb2312": "gb18030",
        "gbk": "gb18030",
    }.items()
}
# labels Python's codecs do not know
_EXTRA_LABELS = {
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "x-windows-949": "cp949",
    "windows-874": "cp874",
}


class ExtractConfig(BaseModel):
    """How main text is pulled out of HTML."""

    model_config = ConfigDict(extra="forbid")
    favour_precision: bool = True
    include_tables: bool = False
    # A guard against pathological pages whose effect depends on machine load, not a recipe choice.
    timeout_s: float = not_in_key(5.0, gt=0, description="per-document extraction timeout")
    min_chars: int = Field(50, ge=0, description="pages with less extracted text are dropped as 'empty'")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)


# --------------------------------------------------------------------------------------------- charset


def url_id(url: str) -> str:
    """Stable document id: the first 32 hex digits of the URL's sha256."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    try:
        name = codecs.lookup(_EXTRA_LABELS.get(label, label)).name
    except LookupError:
        return None
    return _WHATWG_SUPERSETS.get(name, name).replace("-", "_")


def header_charset(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type header value, if any."""
    match = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", content_type or "", re.IGNORECASE)
    return match.group(1) if match else None


def meta_charset(body: bytes) -> str | None:
    """The charset of a ``<meta charset>`` or ``<meta http-equiv content="...; charset=">`` tag near the top."""
    match = _META_CHARSET.search(body[:META_PRESCAN_BYTES])
    return match.group(1).decode("ascii", "replace") if match else None


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """``(text, codec used)``: BOM, valid UTF-8, declared charsets that decode cleanly, then detection."""
    from charset_normalizer import from_bytes
    from charset_normalizer.md import mess_ratio

    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body.decode(codec, errors="replace"), codec
    if body.isascii():
        return body.decode("ascii"), "ascii"
    try:
        # non-ASCII bytes that form valid UTF-8 are practically never another encoding (EUC-KR, Shift_JIS and
        # GBK byte pairs are invalid UTF-8): a page declaring otherwise is mislabelled
        return body.decode("utf-8"), "utf_8"
    except UnicodeDecodeError:
        pass
    for label in (header_charset(content_type), meta_charset(body)):
        codec = _codec(label)
        if codec is None:
            continue
        try:
            text = body.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        if mess_ratio(text, MESS_THRESHOLD) < MESS_THRESHOLD:
            return text, codec
    best = from_bytes(body).best()
    if best is not None and best.encoding:
        codec = _codec(best.encoding) or best.encoding
        try:
            return body.decode(codec), codec
        except (UnicodeDecodeError, LookupError):
            return str(best), best.encoding
    return body.decode("utf-8", errors="replace"), "utf_8/replace"


def record_to_dict(record) -> dict | None:
    """A WARC HTML response record -> ``{text, id, metadata}``; None for other records (as datatrove does)."""
    if record.rec_type not in ("response", "conversion"):
        return None
    content_type = record.http_headers.get_header("Content-Type") if record.http_headers else None
    mime = record.rec_headers.get_header("WARC-Identified-Payload-Type")
    if mime is None:  # older crawls without payload types: trust the HTTP header instead of sniffing
        mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime not in HTML_TYPES:
        return None
    body = record.content_stream().read()
    text, charset = decode_html(body, content_type)
    url = record.rec_headers.get_header("WARC-Target-URI") or ""
    return {
        "text": text,
        "id": url_id(url),
        "metadata": {
            "url": url,
            "fetched_at": record.rec_headers.get_header("WARC-Date"),
            "charset": charset,
        },
    }


# --------------------------------------------------------------------------------------------- steps


class CharsetAwareWarcReader(WarcReader):
    """datatrove's WarcReader with charset-aware decoding and URL-hash ids (see the module docstring)."""

    name = "🕷 Warc (charset-aware)"
    # no cchardet / libmagic: decoding uses charset_normalizer, payload types come from the WARC headers
    _requires_dependencies = ["warcio", ("charset_normalizer", "charset-normalizer")]

    def __init__(self, data_folder: str, unreadable_dir: Path | None = None, **kwargs) -> None:
        super().__init__(data_folder, **kwargs)
        self.unreadable_dir = str(unreadable_dir) if unreadable_dir else None
        self._task = 0

    def _document(self, record, filepath: str, index: int) -> Document | None:
        data = record_to_dict(record)
        if not data:
            self.stat_update("records_skipped")
            return None
        self.stat_update(f"charset_{data['metadata']['charset']}")
        return self.get_document_from_dict(data, filepath, index)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self._task = rank
        yield from super().run(data, rank, world_size)

    def read_file(self, filepath: str):
        """The file's HTML records; a truncated or corrupt record ends the file as a ``truncated_warc`` drop."""
        from warcio.archiveiterator import ArchiveIterator

        ri = -1
        try:
            # no outer decompression: warcio reads each record's own gzip member, so the records before a
            # damaged one still come out (a gzip stream over the whole file would fail at its first read)
            size = self.data_folder.size(filepath)
            with self.data_folder.open(filepath, "rb", compression=None) as f:
                records = ArchiveIterator(f)
                end = 0
                for ri, record in enumerate(records):
                    if record.format != "warc":  # warcio reads garbage as an old-style ARC record
                        raise ValueError(f"not a WARC record (read as {record.format})")
                    with self.track_time():
                        document = self._document(record, filepath, ri)
                        records.read_to_end(record)
                        end = records.get_record_offset() + records.get_record_length()
                    if document:
                        yield document
            if end < size:  # warcio stops quietly at a record cut short: the bytes left say so
                raise EOFError(f"{size - end} bytes after the last whole record")
        except WARC_READ_ERRORS as err:
            self.stat_update("dropped_truncated_warc")
            error = f"record {ri + 2} and after are cut short or corrupt: {type(err).__name__}: {err}"
            place = self.data_folder.resolve_paths(filepath)
            logger.warning("extract: %s: %s", place, error)
            if self.unreadable_dir:
                note_unreadable(
                    Path(self.unreadable_dir), self._task, Unreadable(place, None, "truncated_warc", error)
                )


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
        return {"text": result.get("text") or "", "date": result.get("date")}

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        import trafilatura  # noqa: F401 (imported here so every forked worker starts with it loaded)

        # a real page as warm-up: trafilatura's lazy set-up then does not eat the first document's timeout
        warmup = ("<html><body><article><p>warm up</p></article></body></html>", None)
        with ExtractorSandbox(timeout=self.timeout, warmup_text=warmup) as sandbox:
            for doc in data:
                self.stat_update(StatHints.total)
                with self.track_time():
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
                else:
                    self.stat_update("extracted")
                    doc.text = result["text"]
                    if result.get("date"):
                        doc.metadata["date"] = result["date"]
                fault_point("extract:document")
                yield doc


class ExtractedTextFilter(BaseFilter):
    """Drops documents whose extraction failed (``extract_error``) or left < ``min_chars`` (``empty``)."""

    name = "🔻 Extracted text"

    def __init__(self, min_chars: int, exclusion_writer=None) -> None:
        super().__init__(exclusion_writer)
        self.min_chars = min_chars

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if doc.metadata.get("extract_error"):
            return False, "extract_error"
        if len(doc.text.strip()) < max(self.min_chars, 1):
            return False, "empty"
        return True


# --------------------------------------------------------------------------------------------- stage


def run_extract(
    cfg: ExtractConfig, crawl_dir: Path, output: Path, progress: ProgressFn = no_progress
) -> dict:
    """Extract main text from ``crawl_dir/warc`` into ``output/documents`` (dropped: ``output/dropped``)."""
    crawl_dir = Path(crawl_dir)
    warc_dir = crawl_dir / "warc"

    def work(partial: Path) -> dict:
        if not warc_dir.is_dir():
            raise FileNotFoundError(f"{warc_dir} does not exist: run the crawl stage first")
        progress(0, None, "extract: starting")
        for folder in ("documents", "dropped"):  # present even when no document lands there
            (partial / folder).mkdir()
        started = time.monotonic()
        reader = CharsetAwareWarcReader(str(warc_dir), partial / UNREADABLE_DIR, glob_pattern="*.warc.gz")
        extractor = MainTextExtractor(
            favour_precision=cfg.favour_precision,
            timeout=cfg.timeout_s,
            deduplicate=False,
            include_tables=cfg.include_tables,
        )
        text_filter = ExtractedTextFilter(
            cfg.min_chars, exclusion_writer=JsonlWriter(str(partial / "dropped"))
        )
        writer = JsonlWriter(str(partial / "documents"))
        stats = run_pipeline([reader, extractor, text_filter, writer], partial / "logs", cfg.executor)
        seconds = time.monotonic() - started

        read = stats.get(str(reader), {})
        kept = stats.get(str(text_filter), {})
        truncated = int(read.get("dropped_truncated_warc", 0))
        docs_in = int(read.get("documents", 0)) + truncated
        docs_out = int(kept.get(StatHints.forwarded, 0))
        dropped = {
            key.removeprefix("dropped_"): int(n)
            for key, n in sorted([*kept.items(), *read.items()])
            if key.startswith("dropped_") and n
        }
        charsets = {
            key.removeprefix("charset_"): int(n)
            for key, n in sorted(read.items())
            if key.startswith("charset_")
        }
        chars = int(kept.get("doc_len", 0)) if docs_out else 0
        rate = docs_in / seconds if seconds > 0 else 0.0
        progress(docs_in, docs_in, f"extract: {docs_out} documents kept of {docs_in}")
        summary = {
            "docs_in": docs_in,
            "docs_out": docs_out,
            "dropped": dropped,
            "chars_out": chars,
            "records_skipped": int(read.get("records_skipped", 0)),
            "charsets": charsets,
            **(
                {"unreadable": unreadable_report(items)[1]}
                if (items := read_unreadable(partial / UNREADABLE_DIR))
                else {}
            ),
            "seconds": round(seconds, 3),
            "docs_per_s": round(rate, 2),
            "log_line": (
                f"extract: {docs_out} of {docs_in} pages kept ({chars} chars) in {seconds:.1f}s "
                f"({rate:.1f} docs/s); dropped "
                + (", ".join(f"{r} {n}" for r, n in dropped.items()) or "none")
            ),
        }
        logger.info(summary["log_line"])
        return summary

    code = ("cpt_core.ingest.extract", "cpt_core.executor")
    return run_stage("extract", Path(output), cfg, [crawl_dir], work, code=code)
