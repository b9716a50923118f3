"""The crawl's WARC files: ``warc/crawl-00000.warc.gz``, ``crawl-00001.warc.gz``…, and resuming them.

Each record is its own gzip member and is flushed to disk before the crawler logs the page as fetched, so the
fetch log is the commit point: a record whose URL the log does not list as fetched was written by a crawl
killed between the two writes. ``WarcFiles.resume`` reads what an interrupted crawl left, keeps every
committed record, cuts each file after its last committed record (dropping half-written or uncommitted
ones), and appends from there.

Each page is a ``request`` record (the request line and headers as sent) and a ``response`` record bound to
it by ``WARC-Concurrent-To``. The response holds the original status line, the original headers and the
payload bytes as the server sent them, still gzip- or deflate-encoded if they were; readers undo the
``Content-Encoding`` (warcio's ``content_stream()``, and so datatrove's ``WarcReader``). Only the transfer
framing is gone (the client removes chunking), so ``Transfer-Encoding`` is dropped from the stored headers.
Responses are tagged with ``WARC-Identified-Payload-Type`` (datatrove keeps only HTML payload types).
"""

from __future__ import annotations

import io
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from cpt_core import __version__
from cpt_core.ingest.fetch import Response

logger = logging.getLogger(__name__)

WARC_DIR = "warc"
# zlib's fastest levels (1-3) cost a third of its default 6 on HTML; 3 keeps most of the ratio. Any level
# reads back alike (warcio, datatrove's WarcReader): a member is a member.
GZIP_LEVEL = 3
# what a truncated or corrupt gzip member / WARC record raises while it is read
WARC_READ_ERRORS = (ArchiveLoadFailed, EOFError, OSError, zlib.error, ValueError)


@dataclass
class StoredPage:
    """A committed page found again in the WARC files: what resuming needs to re-follow its links."""

    body: bytes
    fetched_at: str


class WarcFiles:
    """Writes response records, starting a new file once one passes ``rotate_bytes``."""

    def __init__(self, folder: Path, rotate_bytes: int, _append_to: Path | None = None) -> None:
        self.folder = Path(folder)
        self.rotate_bytes = rotate_bytes
        self.names: list[str] = []
        self.fh = None
        self.writer = None
        self.folder.mkdir(parents=True, exist_ok=True)
        if _append_to is None:
            self._open()
        else:
            self.names = [f"{WARC_DIR}/{p.name}" for p in _warc_paths(self.folder) if p <= _append_to]
            self.fh = open(_append_to, "ab")  # noqa: SIM115 (closed in close()/_rotate())
            self.writer = WARCWriter(self.fh, gzip=True)

    @classmethod
    def resume(
        cls, folder: Path, rotate_bytes: int, committed: set[str]
    ) -> tuple[WarcFiles, dict[str, StoredPage]]:
        """Reopen an interrupted crawl's files, keeping only records of ``committed`` URLs.

        Returns the writer (appending to the last file kept) and the committed pages found, by URL.
        """
        folder = Path(folder)
        pages: dict[str, StoredPage] = {}
        last: Path | None = None
        cut = False
        for path in _warc_paths(folder):
            if cut:
                path.unlink()  # started after an uncommitted record: nothing in it counts
                continue
            keep_bytes, whole = _committed_prefix(path, committed, pages)
            cut = not whole
            if keep_bytes == 0:
                path.unlink()  # not even its warcinfo record is whole
                continue
            if keep_bytes < path.stat().st_size:
                logger.info("crawl resume: cutting %s after its last committed record", path.name)
                with open(path, "r+b") as fh:
                    fh.truncate(keep_bytes)
            last = path
        if last is None:
            return cls(folder, rotate_bytes), pages
        return cls(folder, rotate_bytes, _append_to=last), pages

    def _open(self) -> None:
        name = f"crawl-{len(self.names):05d}.warc.gz"
        self.names.append(f"{WARC_DIR}/{name}")
        self.fh = open(self.folder / name, "wb")  # noqa: SIM115 (closed in close()/_rotate())
        self.writer = WARCWriter(self.fh, gzip=True)
        info = {"software": f"cptflow/{__version__}", "format": "WARC File Format 1.1"}
        self.writer.write_record(self.writer.create_warcinfo_record(name, info))
        self.fh.flush()

    def append(self, records: bytes) -> None:
        """Append records ``page_records`` serialised (possibly in another process) and flush them, so that a
        later log line is never ahead."""
        self.fh.write(records)
        self.fh.flush()
        if self.fh.tell() >= self.rotate_bytes:
            self.fh.close()
            self._open()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def page_records(url: str, res: Response, fetched_at: str) -> bytes:
    """A page's request and response records, each its own gzip member, as bytes ready to append.

    A pure function of its arguments (record ids aside), so it runs wherever the page is read: compressing
    the records is most of a page's cost on the event loop, and the crawler's page readers take it off.
    warcio serialises each record; each is then gzipped as its own member, as warcio's ``gzip=True`` does,
    but at ``GZIP_LEVEL`` instead of its fixed level 9. On python3.11-doc pages (~90 KB of HTML) level 3
    compresses a page in ~0.6 ms to ~15.6 KB, level 6 in ~1.6 ms to ~13.6 KB (files ~15% smaller for 2.5x
    the CPU), level 1 in ~0.55 ms to ~17 KB.
    """
    writer = WARCWriter(None, gzip=False)
    payload = res.raw if res.raw else res.body
    headers = [(k, v) for k, v in res.headers if k.lower() != "transfer-encoding"]
    if not any(k.lower() == "content-length" for k, _ in headers):
        headers.append(("Content-Length", str(len(payload))))
    response = writer.create_warc_record(
        url,
        "response",
        payload=io.BytesIO(payload),
        length=len(payload),
        http_headers=StatusAndHeaders(res.status_line, headers, protocol="HTTP/1.1"),
        warc_headers_dict={"WARC-Identified-Payload-Type": res.mime, "WARC-Date": fetched_at},
    )
    if res.request_line:
        method, target, protocol = res.request_line.split(" ", 2)
        request = writer.create_warc_record(
            url,
            "request",
            payload=io.BytesIO(b""),
            length=0,
            http_headers=StatusAndHeaders(
                f"{method} {target}", res.request_headers, protocol=protocol, is_http_request=True
            ),
            warc_headers_dict={
                "WARC-Date": fetched_at,
                "WARC-Concurrent-To": response.rec_headers.get_header("WARC-Record-ID"),
            },
        )
        members = [_gzip_member(request)]
    else:
        members = []
    return b"".join([*members, _gzip_member(response)])


def _gzip_member(record) -> bytes:
    out = io.BytesIO()
    WARCWriter(out, gzip=False).write_record(record)  # warcio's serialisation: digests, headers, block
    gz = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS + 16)
    return gz.compress(out.getbuffer()) + gz.flush()


def _warc_paths(folder: Path) -> list[Path]:
    return sorted(Path(folder).glob("crawl-*.warc.gz"))


def _committed_prefix(path: Path, committed: set[str], pages: dict[str, StoredPage]) -> tuple[int, bool]:
    """``(bytes up to the last committed record, whether the file is whole)``; fills ``pages``."""
    keep = 0
    whole = True
    with open(path, "rb") as fh:
        records = ArchiveIterator(fh)
        try:
            for record in records:
                url = record.rec_headers.get_header("WARC-Target-URI")
                is_page = record.rec_type == "response"
                if record.rec_type in ("request", "response") and url not in committed:
                    whole = False
                    break
                body = record.content_stream().read()
                records.read_to_end(record)
                if is_page:
                    pages[url] = StoredPage(body, record.rec_headers.get_header("WARC-Date") or "")
                keep = records.get_record_offset() + records.get_record_length()
        except WARC_READ_ERRORS as err:
            logger.warning("crawl resume: %s is cut short (%s); keeping its whole records", path.name, err)
            whole = False
    return keep, whole
