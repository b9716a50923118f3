"""The extract stage's readers: WARC files (a crawl's or a ``warc`` source's) and internal documents.

``CharsetAwareWarcReader`` is datatrove's ``WarcReader`` with the record decoding replaced. datatrove decodes
every payload as UTF-8 and, when that fails, guesses with cchardet; it never looks at what the page declares
and silently skips a record it cannot decode. Ours decodes as ``cpt_core.ingest.charset`` describes and keeps
the codec in ``metadata["charset"]``. Document ids are a hash of the URL, so the same page gets the same id
in every run. A WARC file cut short or corrupt part-way is read up to the damage: the records before it are
kept, and the file is counted as a ``truncated_warc`` drop and listed among the stage's unreadable inputs.

``SourcesReader`` chains one reader per input (the crawl's WARC folder, each ``warc`` source, each
``documents`` source) into one datatrove reader step: each sub-reader shards its own files by rank, and
all of them count into the one step's stats, so the stage reports one set of numbers whatever the mix.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from urllib.parse import urlsplit

from datatrove.data import Document
from datatrove.pipeline.readers.base import BaseReader
from datatrove.pipeline.readers.warc import WarcReader

from cpt_core.ingest.charset import decode_html
from cpt_core.ingest.documents import DocumentFolderReader, doc_id
from cpt_core.ingest.sources import DocumentsSource, HiddenOptions, WarcSource
from cpt_core.ingest.warc import WARC_READ_ERRORS
from cpt_core.io import HTML_TYPES, Unreadable, note_unreadable

logger = logging.getLogger(__name__)

WARC_GLOB = "*.warc*"


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
        "id": doc_id(url),
        "metadata": {
            "url": url,
            "fetched_at": record.rec_headers.get_header("WARC-Date"),
            "charset": charset,
            "content_hash": hashlib.sha256(body).hexdigest(),
            "format": "html",
        },
    }


# --------------------------------------------------------------------------------------------- steps


class CharsetAwareWarcReader(WarcReader):
    """datatrove's WarcReader with charset-aware decoding and URL-hash ids (see the module docstring)."""

    name = "🕷 Warc (charset-aware)"
    # no cchardet / libmagic: decoding uses charset_normalizer, payload types come from the WARC headers
    _requires_dependencies = ["warcio", ("charset_normalizer", "charset-normalizer")]

    def __init__(
        self,
        data_folder,
        unreadable_dir: Path | None = None,
        source: str = "web",
        hosts: dict[str, str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(data_folder, **kwargs)
        self.unreadable_dir = str(unreadable_dir) if unreadable_dir else None
        self.source = source
        self.hosts = dict(hosts or {})  # host[:port] -> source name, for a crawl of several sources
        self._task = 0

    def _document(self, record, filepath: str, index: int) -> Document | None:
        data = record_to_dict(record)
        if not data:
            self.stat_update("records_skipped")
            return None
        self.stat_update(f"charset_{data['metadata']['charset']}")
        host = urlsplit(data["metadata"]["url"]).netloc.lower()
        data["metadata"]["source"] = self.hosts.get(host, self.source)
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




class SourcesReader(BaseReader):
    """Several readers as one step: each shards its own files; all count into this step's stats."""

    name = "📚 Sources"

    def __init__(self, readers: list[BaseReader]) -> None:
        super().__init__()
        self.readers = readers

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        for reader in self.readers:
            reader.stats = self.stats  # one set of counters for the stage's summary
            yield from reader.run(None, rank, world_size)


def _warc_location(path: str) -> tuple[str, str]:
    """``(folder, glob)`` for a WARC file or a folder of WARC files."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if ".warc" in name or name.endswith(".arc.gz"):
        return path[: len(path.rstrip("/")) - len(name)].rstrip("/") or ".", name
    return path, WARC_GLOB


def source_readers(
    sources: list, options: dict[str, HiddenOptions], unreadable_dir: Path
) -> list[BaseReader]:
    """One reader per location of each ``documents`` and ``warc`` source (``options``: by source name)."""
    readers: list[BaseReader] = []
    for source in sources:
        if isinstance(source, DocumentsSource):
            folder = _data_folder(source.path, options[source.name])
            readers.append(DocumentFolderReader(folder, source.name, unreadable_dir, source.recursive))
        elif isinstance(source, WarcSource):
            for path in source.paths:
                folder, glob = _warc_location(path)
                readers.append(
                    CharsetAwareWarcReader(
                        _data_folder(folder, options[source.name]),
                        unreadable_dir,
                        source=source.name,
                        glob_pattern=glob,
                    )
                )
    return readers


def _data_folder(path: str, options: HiddenOptions):
    """A datatrove DataFolder opened with the storage options (its repr shows the path, not the options)."""
    from datatrove.io import DataFolder

    return DataFolder(path, **options.options)


def listing_hash(readers: list[BaseReader]) -> str:
    """A hash of every input file's path, size and modification time: a changed folder is a new input."""
    rows = []
    for reader in readers:
        folder = reader.data_folder
        for path in folder.list_files(recursive=reader.recursive, glob_pattern=reader.glob_pattern):
            info = folder.info(path)
            stamp = next((str(info[k]) for k in ("mtime", "LastModified", "Last-Modified", "ETag", "etag") if info.get(k)), "")
            rows.append(f"{folder.resolve_paths(path)}\t{info.get('size')}\t{stamp}")
    return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()[:16]
