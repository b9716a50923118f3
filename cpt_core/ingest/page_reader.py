"""Reading fetched pages off the crawler's event loop.

Parsing a page (lxml, then resolving and normalising each of its links) costs more CPU than fetching it, and
on the event loop it holds back every request in flight. The crawler hands each fetched page to a small pool
of worker processes as soon as its body arrives, and commits the result in queue order as before: the
output does not depend on which worker read which page or when. ``read_page`` is a pure function of the
body and the URL, so running it inline (no pool) gives the same result.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor

from cpt_core.ingest.fetch import Response
from cpt_core.ingest.urls import PageLinks, feed_links, normalise_url, parse_page, robots_directives

logger = logging.getLogger(__name__)


def read_page(body: bytes, url: str) -> tuple[str, PageLinks]:
    """What the crawler needs of a fetched page: its sha256 and its links (a pure function: any process)."""
    return hashlib.sha256(body).hexdigest(), parse_page(body, url)


def page_pool(workers: int) -> Executor | None:
    """Processes that read pages in parallel with the event loop; None (read inline) when 0 or unavailable."""
    if workers <= 0:
        return None
    try:
        # forkserver/spawn, not fork: the crawl may run in a threaded process (Prefect, the SQLite writer).
        ctx = multiprocessing.get_context(
            "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        )
        return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    except (OSError, ValueError, NotImplementedError) as err:
        logger.warning("crawl: reading pages on the event loop (no worker processes: %s)", err)
        return None


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
