"""Reading fetched pages off the crawler's event loop.

Parsing a page (lexbor, then resolving and normalising each of its links) and compressing its WARC records cost
more CPU than fetching it, and on the event loop they hold back every request in flight. The crawler hands
each fetched page to a small pool of worker processes as soon as its body arrives, and commits the result in
queue order as before: the output does not depend on which worker read which page or when. ``read_page`` is
a pure function of the response, the URL and the fetch time (WARC record ids aside), so running it inline
(no pool) gives the same result.

Pages go to the workers in batches: a page that arrives while every worker is busy waits for the next
free one together with the others that arrived meanwhile, so a busy crawl pays the round trip to a worker
once per batch, not once per page, and an idle one sends each page at once. A batch comes back whole, so
its first page's links wait for its last page: batches of at most ``MAX_BATCH`` = 8 pages (~40 ms of
reading) cost little more in round trips than 32 did and brought a 300-page crawl in ~10% sooner.

The workers are forked from a forkserver that has this module (selectolax, courlan, aiohttp) imported already, and
the pool starts its workers as soon as it is made. Until the first worker answers (the forkserver's imports
take about a second on a busy machine, longer than the first pages take to arrive) pages are read on the
event loop, so a crawl never waits for its workers to start; the result is the same either way.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import os
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import NamedTuple

from cpt_core.ingest.fetch import Response
from cpt_core.ingest.urls import PageLinks, feed_links, normalise_url, parse_page, robots_directives
from cpt_core.ingest.warc import page_records

logger = logging.getLogger(__name__)
# what the forkserver imports once, so that each worker starts forked from it
PRELOAD = ["__main__", __name__]
MAX_BATCH = 8  # most pages sent to a worker at once


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# One reader per CPU, 1 to 4. A page costs its reader more CPU than it costs the event loop (python3.11-doc
# pages: ~2.5 ms against ~1.8 ms; ~3.5 ms with lxml's parse), so with one reader fewer than CPUs (the loop
# keeping a CPU to itself) the reader was the limit: on 2 CPUs it read ~220 pages/s while the loop idled a
# third of the time; two readers sharing both CPUs with the loop read a 300-page crawl ~25 % sooner. Past 4
# the loop is the limit.
DEFAULT_READERS = max(1, min(4, _cpus()))


class PageRead(NamedTuple):
    """A fetched page as read: its sha256, its links and, unless its body is unchanged, its WARC records."""

    sha256: str
    page: PageLinks
    records: bytes | None


def read_page(url: str, res: Response, fetched_at: str, prev_sha256: str | None = None) -> PageRead:
    """What the crawler needs of a fetched page (a pure function: any process).

    The WARC records are left out when the body's sha256 equals ``prev_sha256``: such a page is not stored.
    """
    sha = hashlib.sha256(res.body).hexdigest()
    records = None if sha == prev_sha256 else page_records(url, res, fetched_at)
    return PageRead(sha, parse_page(res.body, url, res.content_type), records)


def read_pages(batch: list[tuple]) -> list[PageRead]:
    return [read_page(*args) for args in batch]


class PageReaders:
    """Reads pages in ``pool``'s worker processes, batching what arrives while all ``workers`` are busy.

    ``started``: a task submitted to the pool when it was made; until it is done, pages are read inline.
    """

    def __init__(self, pool: Executor, workers: int, started: Future | None = None) -> None:
        self.pool, self.workers, self.started = pool, workers, started
        self.waiting: list[tuple[tuple, asyncio.Future]] = []
        self.busy = 0

    async def read(self, url: str, res: Response, fetched_at: str, prev_sha256: str | None) -> PageRead:
        if self.started is not None and not self.started.done():
            return read_page(url, res, fetched_at, prev_sha256)  # the workers are still starting
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(((url, res, fetched_at, prev_sha256), future))
        self._send()
        return await future

    def _send(self) -> None:
        while self.waiting and self.busy < self.workers:
            batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            self.busy += 1
            done = asyncio.get_running_loop().run_in_executor(self.pool, read_pages, [a for a, _ in batch])
            done.add_done_callback(lambda d, batch=batch: self._received(d, batch))

    def _received(self, done: asyncio.Future, batch: list[tuple[tuple, asyncio.Future]]) -> None:
        self.busy -= 1
        error = None if done.cancelled() else done.exception()
        for i, (_, future) in enumerate(batch):
            if future.done():  # its crawl task was cancelled
                continue
            if done.cancelled():
                future.cancel()
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(done.result()[i])
        self._send()

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def page_readers(workers: int) -> PageReaders | None:
    """Processes that read pages in parallel with the event loop; None (read inline) when 0 or unavailable."""
    if workers <= 0:
        return None
    try:
        # forkserver/spawn, not fork: the crawl may run in a threaded process (Prefect, the SQLite writer).
        forkserver = "forkserver" in multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if forkserver else "spawn")
        if forkserver:
            ctx.set_forkserver_preload(PRELOAD)  # no effect once the forkserver runs: it has them already
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        started: Future = Future()
        # Start the workers now, while the crawl reads robots.txt and its seeds, from a thread: starting one
        # waits for the forkserver's imports, which would hold up the event loop.
        threading.Thread(target=_start, args=(pool, started), name="page-readers-start", daemon=True).start()
        return PageReaders(pool, workers, started)
    except (OSError, ValueError, NotImplementedError) as err:
        logger.warning("crawl: reading pages on the event loop (no worker processes: %s)", err)
        return None


def _start(pool: Executor, started: Future) -> None:
    try:
        pool.submit(int).result()
        started.set_result(None)
    except Exception as err:  # noqa: BLE001 (a pool that cannot start: reading a page raises it again)
        started.set_exception(err)


def directives(page: PageLinks, res: Response) -> PageLinks:
    """``page`` with the ``X-Robots-Tag`` headers' noindex/nofollow added to its meta robots."""
    for name, value in res.headers:
        if name.lower() == "x-robots-tag":
            found = robots_directives(value)
            page.noindex |= "noindex" in found
            page.nofollow |= "nofollow" in found
    return page


def feed_links_safe(body: bytes) -> list[str]:
    try:
        return feed_links(body)
    except (ValueError, OSError) as err:  # lxml's XMLSyntaxError is a ValueError
        logger.warning("feed is not readable XML: %s", err)
        return []


def normalised(raws: list[str], base: str) -> list[str]:
    return list(dict.fromkeys(u for u in (normalise_url(raw, base) for raw in raws) if u))
