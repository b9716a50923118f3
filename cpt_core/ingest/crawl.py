"""Crawling websites into WARC files: a polite, concurrent, resumable breadth-first walk.

Algorithm: a breadth-first walk from the seeds: the configured URLs, the page URLs of the configured sitemaps
and of the sitemaps the seed hosts' robots.txt names (indexes and ``.gz`` children followed), and the entries
of the configured RSS/Atom feeds. Pages lead on through their ``<a href>`` links and the feeds they announce
with ``<link rel="alternate">``, to the allowed hosts only, up to ``max_depth`` links from a seed and
``max_pages`` requests. URLs are normalised and stripped of tracking parameters (``cpt_core.ingest.urls``),
and each is handled once.

Concurrency without losing determinism: requests run concurrently (``cpt_core.ingest.fetch``: a global cap,
per-host concurrency and delay, robots Crawl-delay), but their results are *committed in queue order*: a
window of up to ``WINDOW_PER_SLOT * concurrency`` queued URLs is in flight, and the oldest is committed (fetch
log line, WARC record, links queued) before any later one. The queue therefore grows exactly as a
sequential walk's would, and the same site gives the same log, state rows and WARC records on every rerun.
The page budget counts a request for every URL in flight and is settled as they commit, so which URLs are
visited does not depend on timing either. Trade-off: one slow page holds back the commits behind it (not
their requests), at most ``timeout_s`` times a small factor.

Per page: robots.txt (protego), the address guard (no private addresses unless allowed), then the request.
``X-Robots-Tag`` or meta robots ``noindex`` drops the page (``noindex``) and ``nofollow`` keeps its links
from being followed; a ``<link rel="canonical">`` naming another allowed URL drops the page
(``non_canonical``) and queues the canonical URL at the same depth, like a redirect.

Incremental crawling: the crawl state of the runs this one may see (``cpt_core.ingest.crawl_db``: ETag,
Last-Modified, content hash, fetch time, sitemap lastmod, links) turns each request into a conditional GET.
A ``304 Not Modified`` or a body whose sha256 is unchanged is a counted drop ``unchanged``; the page's links
(remembered in the state for 304s, which have no body) are still followed. With ``recrawl_after_hours`` a
page fetched recently enough, and not newer by its sitemap ``<lastmod>``, is not requested at all: a counted
drop ``fresh`` whose stored links are followed. The run's own rows are written to the database under its run
id as pages commit; other runs see them only once the run finished with its data learned (``cpt_core.state``).

Every URL ends in ``fetch_log.jsonl`` with a reason: ``fetched``, ``redirect`` (its target is queued at the
same depth, up to ``max_redirects`` hops), ``feed`` (a discovered feed; its entries are queued) or a drop
among ``timeout``, ``unreachable``, ``invalid_url``, ``http_<code>``, ``non_html`` (type not in
``content_types``), ``empty``, ``too_large``, ``robots``, ``unchanged``, ``offsite``, ``private_address``,
``too_many_redirects``, ``noindex``, ``non_canonical``, ``fresh``, with the retries it took. Links beyond ``max_depth``
and URLs queued when ``max_pages`` is reached are counted in the summary (``not_visited``).

Resuming: the stage keeps its ``.partial`` folder across a retry with the same key. Each WARC record is
flushed before its fetch-log line is written, so the log says what is committed; a retry reads the log,
cuts the WARC files after their last committed record, and walks again, replaying logged URLs (their links
come from the stored records, a feed's from its log row) instead of fetching them. The output equals an
uninterrupted crawl's: the same fetch-log URLs and WARC records, none twice. The run's state rows are
reset to what the kept log says (so rows of an abandoned attempt never linger) and grow again from there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import Counter, deque
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.faults import fault_point
from cpt_core.ingest.crawl_db import CrawlDB, RunRows, is_fresh, row_from_log
from cpt_core.ingest.fetch import XML_TYPES, Fetcher, FetchSettings, Response
from cpt_core.ingest.page_reader import (
    DEFAULT_READERS,
    PageRead,
    directives,
    feed_links_safe,
    normalised,
    page_readers,
    read_page,
)
from cpt_core.ingest.seeds import SeedFinder
from cpt_core.ingest.urls import host_keys, normalise_url
from cpt_core.ingest.warc import WARC_DIR, StoredPage, WarcFiles
from cpt_core.io import HTML_TYPES, atomic_write_text, stable_json
from cpt_core.progress import ProgressFn, RateMeter, no_progress
from cpt_core.stage import not_in_key, run_stage
from cpt_core.state import visible_runs

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 10
FETCH_LOG = "fetch_log.jsonl"
WINDOW_PER_SLOT = 4
NOT_DOCS = ("fetched", "redirect", "feed")
CRAWL_CODE = (
    "cpt_core.ingest.crawl",
    "cpt_core.ingest.crawl_db",
    "cpt_core.ingest.page_reader",
)  # the recrawl policy lives there


class CrawlConfig(BaseModel):
    """What to fetch (seeds, sitemaps, feeds, scope), limits, politeness and the address allowlist."""

    model_config = ConfigDict(extra="forbid")
    seed_urls: list[str] = Field(default_factory=list, description="start pages (http/https URLs)")
    sitemaps: list[str] = Field(default_factory=list, description="sitemap.xml URLs whose <loc>s are seeds")
    feeds: list[str] = Field(default_factory=list, description="RSS/Atom feed URLs whose entries are seeds")
    robots_sitemaps: bool = Field(True, description="also read the sitemaps the seed hosts' robots.txt names")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="hosts links may lead to (exact host names, or host:port); empty: the seeds' hosts",
    )
    allow_private_hosts: list[str] = Field(
        default_factory=list,
        description="hosts (as written in URLs, or host:port) that may be private/loopback addresses, "
        "e.g. 127.0.0.1 for a local server; every other host resolving to one is refused",
    )
    max_pages: int = Field(1000, ge=1, description="most page requests in one crawl")
    max_depth: int = Field(5, ge=0, description="most links followed from a seed")
    max_redirects: int = Field(5, ge=0, description="most redirect hops from a URL to the page")
    max_sitemaps: int = Field(100, ge=0, description="most sitemap files read (indexes included)")
    timeout_s: float = not_in_key(10.0, gt=0, description="per-request connect+read timeout")
    max_bytes: int = Field(
        5_000_000, ge=1, description="responses larger than this (decoded too) are dropped"
    )
    content_types: list[str] = Field(default_factory=lambda: sorted(HTML_TYPES), description="types kept")
    retries: int = Field(2, ge=0, description="retries of a transient failure (connect error, 429, 5xx)")
    max_retry_after_s: float = not_in_key(60.0, ge=0, description="a longer Retry-After ends the retries")
    user_agent: str = "cptflow/0.1"
    contact_url: str | None = Field(None, description="where site owners reach the crawl's operator")
    respect_robots: bool = True
    revisit_unchanged: bool = Field(False, description="refetch pages the crawl state says are unchanged")
    recrawl_after_hours: float = Field(
        0.0,
        ge=0,
        description="pages a visible run fetched less than this many hours ago (and not newer by their "
        "sitemap <lastmod>) are not requested at all (counted 'fresh'); 0: always ask, conditionally",
    )
    concurrency: int = not_in_key(32, ge=1, description="most requests in flight over all hosts")
    per_host_concurrency: int = not_in_key(2, ge=1, description="most requests in flight to one host")
    delay_s: float = not_in_key(
        0.5, ge=0, description="pause between request starts to one host; robots Crawl-delay raises it"
    )
    warc_file_mb: int = Field(100, ge=1, description="start a new WARC file once one reaches this size")
    parse_workers: int = not_in_key(
        DEFAULT_READERS,
        ge=0,
        description="processes that read fetched pages (links, robots meta, WARC records) while the event "
        "loop keeps fetching; 0: read them on the event loop; default: one per CPU, 1 to 4",
    )

    def full_user_agent(self) -> str:
        return f"{self.user_agent} (+{self.contact_url})" if self.contact_url else self.user_agent


class _Crawler:
    """The walk: queue, seen URLs, fetch log, this run's state rows and the counts.

    On a resumed crawl, ``done`` holds the fetch-log rows an interrupted attempt committed: those URLs are
    replayed from the log instead of fetched, so the walk visits the same URLs in the same order as an
    uninterrupted one.
    """

    def __init__(
        self,
        cfg: CrawlConfig,
        partial: Path,
        known: dict[str, dict],
        progress: ProgressFn,
        store: RunRows | None = None,
    ) -> None:
        self.cfg = cfg
        self.partial = partial
        self.known = known
        self.store = store
        self.now = datetime.now(timezone.utc)
        self.progress = progress
        self.allowed = _allowed_hosts(cfg)
        self.queue: deque[tuple[str, int, int, str]] = deque()  # url, depth, redirect hops, kind
        self.seen: set[str] = set()
        self.too_deep: set[str] = set()
        self.requests = 0
        self.reasons: Counter[str] = Counter()
        self.bytes = 0
        self.retried = 0
        self.sitemaps: dict[str, str] = {}
        self.lastmods: dict[str, str] = {}
        self.feeds: dict[str, str] = {}
        self.meter = RateMeter()
        self.done, self.stored, self.warc = _resume(partial, cfg.warc_file_mb * 1024 * 1024)
        if store is not None:
            store.reset([r for r in map(row_from_log, self.done.values()) if r])
        self.log_fh = open(partial / FETCH_LOG, "a", encoding="utf-8")  # noqa: SIM115 (closed in run())

    # ---- the walk

    def run(self) -> dict:
        try:
            asyncio.run(self._walk())
        finally:
            self.log_fh.close()
            self.warc.close()
            if self.store is not None:
                self.store.flush()  # rows of committed log lines only: safe after a failure too
        self._report()
        return self._summary()

    async def _walk(self) -> None:
        self.fetcher = Fetcher(_fetch_settings(self.cfg))
        self.readers = page_readers(self.cfg.parse_workers)
        inflight: deque[tuple[tuple[str, int, int, str], asyncio.Future]] = deque()
        try:
            finder = SeedFinder(self.fetcher, self.cfg)
            seeds = await finder.seeds()
            self.sitemaps, self.feeds, self.lastmods = finder.sitemaps, finder.feeds, finder.lastmods
            for raw, where in finder.invalid:
                self._log(raw, 0, "invalid_url", error=f"not an absolute http(s) URL ({where})")
            for url in seeds:
                self._enqueue(url, 0)
            window = WINDOW_PER_SLOT * self.cfg.concurrency
            visits = 0
            while True:
                while (
                    self.queue
                    and len(inflight) < window
                    and self.requests + len(inflight) < self.cfg.max_pages
                ):
                    item = self.queue.popleft()
                    inflight.append((item, self._start(item)))
                if not inflight:
                    break
                item, task = inflight.popleft()
                self._commit(item, await task)
                visits += 1
                if visits % PROGRESS_EVERY == 0:
                    self._report()
        finally:
            for _, task in inflight:
                task.cancel()
            await self.fetcher.close()
            if self.readers is not None:
                self.readers.shutdown()

    def _start(self, item: tuple[str, int, int, str]) -> asyncio.Future:
        url = item[0]
        prev = None if self.cfg.revisit_unchanged or item[3] == "feed" else self.known.get(url)
        if url in self.done or is_fresh(prev, self.lastmods.get(url), self.cfg.recrawl_after_hours, self.now):
            future = asyncio.get_running_loop().create_future()
            future.set_result(
                ("replay", self.done[url], 0.0, None) if url in self.done else ("fresh", None, 0, prev)
            )
            return future
        return asyncio.ensure_future(self._fetch(url, item[3], prev))

    async def _fetch(self, url: str, kind: str, prev: dict | None) -> tuple:
        if self.cfg.respect_robots and not await self.fetcher.robots_allow(url):
            return ("robots", None, 0.0, None)
        started = time.monotonic()
        types = XML_TYPES if kind == "feed" else None
        res = await self.fetcher.get(url, _conditional_headers(prev), types)
        seconds, fetched_at = time.monotonic() - started, _now_iso()
        read = None
        if kind == "page" and res.reason is None and self.readers is not None:
            # Read (and its WARC records compressed) while later requests proceed; it commits in queue order.
            read = await self.readers.read(url, res, fetched_at, (prev or {}).get("sha256"))
        return ("fetch", res, seconds, prev, fetched_at, read)

    def _enqueue(self, url: str, depth: int, hops: int = 0, kind: str = "page") -> None:
        if url in self.seen:
            return
        if depth > self.cfg.max_depth:
            self.too_deep.add(url)
            return
        self.seen.add(url)
        if not self._in_scope(url):
            self._log(url, depth, "offsite")
        elif hops > self.cfg.max_redirects:
            self._log(url, depth, "too_many_redirects")
        else:
            self.queue.append((url, depth, hops, kind))

    def _in_scope(self, url: str) -> bool:
        host, netloc = host_keys(url)
        return host in self.allowed or netloc in self.allowed

    def _follow(self, links: list[str], feeds: list[str], depth: int) -> None:
        for link in links:
            self._enqueue(link, depth + 1)
        for feed in feeds:
            self._enqueue(feed, depth + 1, kind="feed")

    def _commit(self, item: tuple[str, int, int, str], outcome: tuple) -> None:
        url, depth, hops, kind = item
        what, res, seconds, prev, *fetch = outcome  # fetch: (fetched_at, read) for a request
        if what == "replay":
            self._replay(url, depth, hops, res)
            return
        if what == "robots":
            self._log(url, depth, "robots")
            return
        if what == "fresh":  # fetched recently by a visible run: no request, its stored links followed
            self._log(url, depth, "fresh", sha256=prev["sha256"], extra={"links": prev["links"]})
            self._follow(prev["links"], [], depth)
            return
        self.requests += 1
        self.retried += res.retries
        self.meter.add()
        if res.reason == "redirect":
            self._log(url, depth, "redirect", res, seconds)
            self._redirect(url, res.location, depth, hops)
        elif res.reason == "unchanged":  # 304: no body, so follow the links remembered from the last fetch
            prev = prev or {}
            kept = {"links": prev.get("links", []), "etag": res.etag or prev.get("etag")}
            kept["last_modified"] = res.last_modified or prev.get("last_modified")
            self._log(
                url, depth, "unchanged", res, seconds, prev.get("sha256"), fetched_at=fetch[0], extra=kept
            )
            self._follow(kept["links"], [], depth)
        elif res.reason:
            self._log(url, depth, res.reason, res, seconds)
        elif kind == "feed":
            links = normalised(feed_links_safe(res.body), url)
            self._log(url, depth, "feed", res, seconds, extra={"links": links})
            self._follow(links, [], depth)
        else:
            self._fetched(url, depth, hops, res, seconds, prev, *fetch)

    def _fetched(
        self,
        url: str,
        depth: int,
        hops: int,
        res: Response,
        seconds: float,
        prev: dict | None,
        fetched_at: str,
        read: PageRead | None,
    ) -> None:
        sha, page, records = read or read_page(url, res, fetched_at, (prev or {}).get("sha256"))
        page = directives(page, res)
        links, feeds = ([], []) if page.nofollow else (page.links, page.feeds)
        follow = {"links": links, "feeds": feeds}
        canonical = page.canonical if page.canonical and page.canonical != url else None
        if page.noindex:
            self._log(url, depth, "noindex", res, seconds, sha256=sha, extra=follow)
        elif canonical and self._in_scope(canonical):
            self._log(
                url,
                depth,
                "non_canonical",
                res,
                seconds,
                sha256=sha,
                extra={**follow, "canonical": canonical},
            )
            self._enqueue(canonical, depth, hops)
        elif prev and prev.get("sha256") == sha:
            self._log(url, depth, "unchanged", res, seconds, sha256=sha, fetched_at=fetched_at, extra=follow)
        else:
            self.warc.append(records)  # flushed before the log line: the log never runs ahead
            self.bytes += len(res.body)
            self._log(url, depth, "fetched", res, seconds, sha256=sha, fetched_at=fetched_at, extra=follow)
        self._follow(links, feeds, depth)

    def _redirect(self, url: str, location: str | None, depth: int, hops: int) -> None:
        target = normalise_url(location or "", url)
        if target:
            self._enqueue(target, depth, hops + 1)  # the same page under another name: same depth

    def _replay(self, url: str, depth: int, hops: int, row: dict) -> None:
        """A URL an interrupted attempt already handled: its counts and links again, without a request."""
        reason = row["reason"]
        self.reasons[reason] += 1
        if reason not in ("robots", "fresh"):
            self.requests += 1
        self.retried += row.get("retries") or 0
        links, feeds = row.get("links", []), row.get("feeds", [])
        if reason == "redirect":
            self._redirect(url, row.get("location"), depth, hops)
        elif reason in ("fresh", "feed") or (reason == "unchanged" and row.get("status") == 304):
            self._follow(links, [], depth)
        elif reason in ("fetched", "unchanged", "noindex", "non_canonical"):
            if reason == "fetched":
                self.bytes += len(self.stored[url].body)
            if reason == "non_canonical":
                self._enqueue(row["canonical"], depth, hops)
            self._follow(links, feeds, depth)

    # ---- records

    def _log(
        self,
        url: str,
        depth: int,
        reason: str,
        res: Response | None = None,
        seconds: float = 0.0,
        sha256: str | None = None,
        error: str | None = None,
        fetched_at: str | None = None,
        extra: dict | None = None,
    ) -> None:
        self.reasons[reason] += 1
        if url in self.done:  # written by the interrupted attempt (an offsite link, a bad seed)
            return
        res = res or Response()
        row = {
            "url": url,
            "status": res.status,
            "reason": reason,
            "depth": depth,
            "content_type": res.content_type or None,
            "bytes": res.size,
            "seconds": round(seconds, 3),
            "etag": res.etag,
            "last_modified": res.last_modified,
            "sha256": sha256,
        }
        if fetched_at:
            row["fetched_at"] = fetched_at
        if error or res.error:
            row["error"] = error or res.error
        if res.location:
            row["location"] = res.location
        if res.retries:
            row["retries"] = res.retries
        if url in self.lastmods:
            row["sitemap_lastmod"] = self.lastmods[url]
        row.update(extra or {})
        self.log_fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.log_fh.flush()
        state_row = row_from_log(row) if self.store is not None else None
        if state_row:
            self.store.add(state_row)  # after the log line: the state never runs ahead of the log
        fault_point("crawl:page")

    def _report(self) -> None:
        self.progress(
            sum(self.reasons.values()),
            None,
            f"crawl: {self.reasons['fetched']} fetched, {len(self.queue)} queued, {self.meter.rate:.1f} req/s",
        )

    def _summary(self) -> dict:
        dropped = {r: n for r, n in sorted(self.reasons.items()) if r not in NOT_DOCS}
        fetched = self.reasons["fetched"]
        seconds = self.meter.elapsed
        pages_per_s = fetched / seconds if seconds > 0 else 0.0
        not_visited = {"max_depth": len(self.too_deep - self.seen), "max_pages": len(self.queue)}
        urls = sum(self.reasons.values())
        return {
            "docs_in": urls,
            "docs_out": fetched,
            "urls": urls,
            "fetched": fetched,
            "redirected": self.reasons["redirect"],
            "feeds_read": self.reasons["feed"],
            "retries": self.retried,
            "dropped": dropped,
            "requests": self.requests,
            "resumed": len(self.done),
            "bytes": self.bytes,
            "seconds": round(seconds, 3),
            "pages_per_s": round(pages_per_s, 2),
            "not_visited": not_visited,
            "warc_files": self.warc.names,
            "sitemaps": self.sitemaps,
            "feeds": self.feeds,
            "log_line": (
                f"crawl: {fetched} pages fetched of {urls} URLs ({self.bytes / 1e6:.2f} MB) in {seconds:.1f}s "
                f"({pages_per_s:.1f} pages/s); dropped "
                + (", ".join(f"{r} {n}" for r, n in dropped.items()) or "none")
                + (f"; not visited: {not_visited}" if any(not_visited.values()) else "")
                + (f"; {len(self.done)} URLs resumed from an interrupted attempt" if self.done else "")
            ),
        }


def _allowed_hosts(cfg: CrawlConfig) -> set[str]:
    allowed = {h.lower() for h in cfg.allowed_hosts}
    if not allowed:
        seeds = [*cfg.seed_urls, *cfg.sitemaps, *cfg.feeds]
        allowed = {host_keys(u)[0] for u in seeds if host_keys(u)[0]}
    return allowed


def _fetch_settings(cfg: CrawlConfig) -> FetchSettings:
    return FetchSettings(
        user_agent=cfg.full_user_agent(),
        timeout_s=cfg.timeout_s,
        max_bytes=cfg.max_bytes,
        retries=cfg.retries,
        delay_s=cfg.delay_s,
        respect_robots=cfg.respect_robots,
        concurrency=cfg.concurrency,
        per_host_concurrency=cfg.per_host_concurrency,
        max_retry_after_s=cfg.max_retry_after_s,
        content_types=tuple(t.lower() for t in cfg.content_types),
        allow_private_hosts=cfg.allow_private_hosts,
        robots_agent=cfg.user_agent.split("/", 1)[0].strip() or "cptflow",
    )


def _conditional_headers(prev: dict | None) -> dict[str, str]:
    headers = {}
    if prev and prev.get("etag"):
        headers["If-None-Match"] = prev["etag"]
    if prev and prev.get("last_modified"):
        headers["If-Modified-Since"] = prev["last_modified"]
    return headers


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _resume(partial: Path, rotate_bytes: int) -> tuple[dict[str, dict], dict[str, StoredPage], WarcFiles]:
    """What an interrupted attempt in ``partial`` committed: fetch-log rows by URL, stored pages, the writer.

    A half-written last log line is dropped; a ``fetched`` row whose WARC record is not whole is dropped too
    (that page is fetched again), and the log is rewritten to the rows kept.
    """
    log_path = partial / FETCH_LOG
    rows = _read_committed_log(log_path)
    committed = {row["url"] for row in rows if row["reason"] == "fetched"}
    warc, pages = WarcFiles.resume(partial / WARC_DIR, rotate_bytes, committed)
    rows = [row for row in rows if row["reason"] != "fetched" or row["url"] in pages]
    if rows or log_path.exists():
        atomic_write_text(log_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    if rows:
        logger.info("crawl: resuming an interrupted attempt: %d URLs already handled", len(rows))
    return {row["url"]: row for row in rows}, pages, warc


def _read_committed_log(path: Path) -> list[dict]:
    """The whole lines of a fetch log an interrupted crawl wrote (none if there is no log)."""
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break  # cut off mid-write
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


# --------------------------------------------------------------------------------------------- public


def state_hash(known: dict[str, dict]) -> str:
    """Hash of the crawl state a run sees: part of its crawl key, so other visible state means a new crawl."""
    return hashlib.sha256(stable_json(known).encode()).hexdigest()[:16]


def run_crawl(
    cfg: CrawlConfig,
    output: Path,
    known: dict[str, dict],
    progress: ProgressFn = no_progress,
    store: RunRows | None = None,
) -> dict:
    """Crawl ``cfg``'s seeds into ``output`` (WARC files, fetch log); returns the manifest.

    ``known`` (url -> {etag, last_modified, sha256, fetched_at, sitemap_lastmod, links}) is what the runs this
    one may see fetched (``CrawlDB.visible``); it is part of the stage key. ``store`` receives this run's
    state rows as pages commit (none: a one-off crawl that leaves no state).
    """
    if not cfg.seed_urls and not cfg.sitemaps and not cfg.feeds:
        raise ValueError("crawl config has no seed_urls, sitemaps or feeds: nothing to crawl")

    def work(partial: Path) -> dict:
        summary = _Crawler(cfg, partial, known, progress, store).run()
        logger.info(summary["log_line"])
        return summary

    extra = {"state": state_hash(known)}
    return run_stage(
        "crawl", Path(output), cfg, [], work, extra_key=extra, keep_partial=True, code=CRAWL_CODE
    )


def crawl_with_state(
    cfg: CrawlConfig,
    output: Path,
    state_dir: Path,
    run_id: str,
    progress: ProgressFn = no_progress,
    earlier_runs: list[str] | None = None,
) -> dict:
    """One run's crawl against ``<state_dir>/crawl.sqlite``: conditional requests against what the runs it may
    see fetched, and its own rows written under ``run_id``.

    ``earlier_runs`` defaults to the run's pinned state view (``cpt_core.state.visible_runs``); other runs
    read this run's rows only once it finished with its data learned.
    """
    if earlier_runs is None:
        earlier_runs = visible_runs(Path(state_dir), run_id)
    with CrawlDB(state_dir) as db:
        return run_crawl(cfg, output, db.visible(earlier_runs), progress, RunRows(db, run_id))
