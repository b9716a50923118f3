"""Internal documents (a folder or fsspec URL of files) as datatrove documents.

Parsers, chosen by file extension, are maintained libraries where the format needs one:

    .pdf            pypdf: the text of every page; an encrypted file that opens with the empty password
                    (owner-password only, common for "protected" PDFs) is read, any other is dropped
    .docx           python-docx: paragraphs, then table rows (cells joined by " | ")
    .html .htm      decoded here (charset detection as for crawled pages); trafilatura extracts the main
                    text later in the extract pipeline, exactly as for crawled pages
    .md .markdown   the text as it is; title: the first ``#`` heading
    .txt            the text as it is
    .vtt .srt       transcripts: cue text only (no header, cue numbers, timings, NOTE blocks or voice tags),
                    consecutive repeated lines said once

Every document carries ``source``, ``path``, ``title``, ``modified_at``, ``fetched_at``, ``published_at``
(a PDF's creation date when it has one), ``charset``, ``content_hash`` (sha256 of the file's bytes) and
``format``. Files of other types are counted (``files_skipped``), not read.

A file that cannot be a document (``encrypted``, ``corrupt``, ``empty_file``) never stops the stage: it goes
on as an empty document carrying ``drop_reason`` and ``drop_error`` (which name the file), so the extract
filter counts it as a drop of that reason and writes it to ``dropped/``; the reader also lists it among the
stage's unreadable inputs.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.readers.base import BaseDiskReader

from cpt_core.ingest.charset import decode_html
from cpt_core.io import Unreadable, note_unreadable

logger = logging.getLogger(__name__)

TEXT_FORMATS = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".vtt": "vtt", ".srt": "srt"}
FORMATS = {".pdf": "pdf", ".docx": "docx", ".html": "html", ".htm": "html", **TEXT_FORMATS}
_TIMING = re.compile(r"^\s*(\d+:)?\d+:\d+[.,]\d+\s*-->\s*(\d+:)?\d+:\d+[.,]\d+")
_TAG = re.compile(r"<[^>]+>")


def doc_id(location: str) -> str:
    """Stable document id: the first 32 hex digits of the URL's (or path's) sha256."""
    return hashlib.sha256(location.encode("utf-8")).hexdigest()[:32]


class DocumentError(Exception):
    """A file that cannot become a document; ``reason`` is the drop reason counted for it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Parsed:
    text: str
    title: str | None
    charset: str | None
    published_at: str | None = None


def _pdf(data: bytes) -> Parsed:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError("encrypted", "encrypted PDF (needs a password)")
        text = "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)
        info = reader.metadata
        title = (info.title if info else None) or None
        created = info.creation_date if info else None
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as err:
        raise DocumentError("corrupt", f"unreadable PDF: {type(err).__name__}: {err}") from None
    except Exception as err:  # noqa: BLE001 (pypdf raises many types on damaged files; one file's problem)
        raise DocumentError("corrupt", f"unreadable PDF: {type(err).__name__}: {err}") from None
    return Parsed(text, title, None, created.isoformat() if created else None)


def _docx(data: bytes) -> Parsed:
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise DocumentError("corrupt", f"unreadable DOCX: {type(err).__name__}: {err}") from None
    parts = [p.text for p in document.paragraphs if p.text.strip()]
    for table in document.tables:
        parts.extend(" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows)
    return Parsed("\n".join(parts), document.core_properties.title or None, None)


def _transcript(text: str) -> str:
    """Cue text of a WebVTT or SubRip file."""
    lines: list[str] = []
    in_note = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            in_note = False
            continue
        if in_note or line.startswith(("WEBVTT", "NOTE", "STYLE", "REGION")):
            in_note = not line.startswith("WEBVTT")
            continue
        if line.isdigit() or _TIMING.match(line):
            continue
        line = _TAG.sub("", line).strip()
        if line and (not lines or lines[-1] != line):
            lines.append(line)
    return "\n".join(lines)


def parse_document(name: str, data: bytes) -> Parsed:
    """Text, title and charset of one file's bytes; raises :class:`DocumentError` for a file to drop."""
    suffix = Path(name).suffix.lower()
    if not data.strip():
        raise DocumentError("empty_file", "empty file")
    if suffix == ".pdf":
        parsed = _pdf(data)
    elif suffix == ".docx":
        parsed = _docx(data)
    else:
        text, charset = decode_html(data)
        title = None
        if FORMATS[suffix] == "markdown":
            heading = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
            title = heading.group(1).strip() if heading else None
        elif FORMATS[suffix] in ("vtt", "srt"):
            text = _transcript(text)
        parsed = Parsed(text, title, charset)
    if FORMATS[suffix] != "html" and not parsed.text.strip():
        raise DocumentError("empty_file", f"no text in this {FORMATS[suffix]} file")
    if parsed.title is None and FORMATS[suffix] != "html":
        parsed.title = Path(name).stem
    return parsed


class DocumentFolderReader(BaseDiskReader):
    """Every supported file under a folder (local or fsspec URL) as one document; see the module docstring."""

    name = "📄 Internal documents"
    _requires_dependencies = ["pypdf", ("docx", "python-docx"), ("charset_normalizer", "charset-normalizer")]

    def __init__(
        self, data_folder, source: str, unreadable_dir: Path | None = None, recursive: bool = True
    ) -> None:
        super().__init__(data_folder, recursive=recursive)
        self.source = source
        self.unreadable_dir = str(unreadable_dir) if unreadable_dir else None
        self._task = 0

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self._task = rank
        yield from super().run(data, rank, world_size)

    def read_file(self, filepath: str):
        suffix = Path(filepath).suffix.lower()
        if suffix not in FORMATS:
            self.stat_update("files_skipped")
            return
        place = self.data_folder.resolve_paths(filepath)
        with self.track_time():
            info = self.data_folder.info(filepath)
            with self.data_folder.open(filepath, "rb") as f:
                data = f.read()
            metadata = {
                "source": self.source,
                "path": place,
                "format": FORMATS[suffix],
                "modified_at": _mtime(info),
                "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "content_hash": hashlib.sha256(data).hexdigest(),
            }
            try:
                parsed = parse_document(filepath, data)
            except DocumentError as err:
                yield self._dropped(place, metadata, err)
                return
        self.stat_update(f"format_{metadata['format']}")
        metadata.update(title=parsed.title, charset=parsed.charset, published_at=parsed.published_at)
        yield Document(text=parsed.text, id=doc_id(place), metadata=metadata)

    def _dropped(self, place: str, metadata: dict, err: DocumentError) -> Document:
        message = f"{place}: {err}"
        logger.warning("extract: %s dropped as %s: %s", place, err.reason, err)
        if self.unreadable_dir:
            note_unreadable(Path(self.unreadable_dir), self._task, Unreadable(place, None, err.reason, str(err)))
        metadata.update(drop_reason=err.reason, drop_error=message)
        return Document(text="", id=doc_id(place), metadata=metadata)


def _mtime(info: dict) -> str | None:
    """An fsspec ``info()``'s modification time as ISO 8601 (file systems name and type it differently)."""
    for key in ("mtime", "LastModified", "Last-Modified", "last_modified", "updated", "modified"):
        value = info.get(key)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="seconds")
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc).isoformat(timespec="seconds")
        if isinstance(value, str) and value:
            return value
    return None
