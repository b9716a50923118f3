"""Crawling websites into WARC files.

Algorithm: a breadth-first walk from the seed URLs (plus the ``<loc>``s of the configured sitemaps), one
request at a time, following ``<a href>`` links (parsed with lxml) to the allowed hosts only, up to
``max_depth`` links from a seed and ``max_pages`` requests. URLs are normalised (fragment dropped, scheme and
host lower-cased, default port removed) and each is handled once, in discovery order, so the same site gives
the same log, the same frontier and the same WARC records on every rerun.

Fetching (robots.txt, politeness, retries, byte caps) is ``cpt_core.ingest.fetch``; WARC writing
``cpt_core.ingest.warc``; URL normalisation, links and sitemaps ``cpt_core.ingest.urls``.

Incremental crawling: the *frontier* (what earlier runs fetched: ETag, Last-Modified, content hash, links)
turns each request into a conditional GET. A ``304 Not Modified`` or a body whose sha256 is unchanged is a
counted drop ``unchanged``; the page's links (remembered in the frontier for 304s, which have no body) are
still followed, so pages below an unchanged page are still visited. The frontier of a run is committed to
``state/frontier/<run_id>.json`` only after the stage succeeded (``commit_frontier``): a crashed crawl never
marks pages as seen.

Every URL ends in ``fetch_log.jsonl`` with a reason: ``fetched``, ``redirect`` (its target is queued like a
link, at the same depth) or a drop among ``timeout``, ``unreachable``, ``invalid_url``, ``http_<code>``,
``non_html``, ``empty``, ``too_large``, ``robots``, ``unchanged``, ``offsite``. Links discovered beyond
``max_depth`` and URLs still queued when ``max_pages`` is reached are counted in the summary
(``not_visited``) rather than logged one by one. Nothing raises out of the crawl for a bad URL.

Only HTML responses become WARC ``response`` records. Trade-off: sequential fetching is slow for big crawls
but deterministic and gentle; scale out by splitting seeds across runs.

Resuming: the stage keeps its ``.partial`` folder across a retry with the same key. Each WARC record is
flushed before its fetch-log line is written, so the log says what is committed; a retry reads the log,
cuts the WARC files after their last committed record, and walks again, replaying logged URLs (their links
come from the stored records) instead of fetching them. The output equals an uninterrupted crawl's: the
same fetch-log URLs and WARC records, none twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter, deque
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.faults import fault_point
from cpt_core.ingest.fetch import Fetcher, FetchSettings, Response
from cpt_core.ingest.urls import extract_links, host_keys, normalise_url, sitemap_locs
from cpt_core.ingest.warc import WARC_DIR, StoredPage, WarcFiles
from cpt_core.io import atomic_write_json, atomic_write_text, stable_json
from cpt_core.progress import ProgressFn, RateMeter, no_progress
from cpt_core.stage import not_in_key, run_stage
from cpt_core.state import visible_runs

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 10
FETCH_LOG = "fetch_log.jsonl"
FRONTIER_FILE = "frontier.json"


class CrawlConfig(BaseModel):
    """What to fetch: seeds, which hosts links may lead to, limits and politeness."""

    model_config = ConfigDict(extra="forbid")
    seed_urls: list[str] = Field(default_factory=list, description="start pages (http/https URLs)")
    sitemaps: list[str] = Field(default_factory=list, description="sitemap.xml URLs whose <loc>s are seeds")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="hosts links may lead to (exact host names, or host:port); empty: the seeds' hosts",
    )
    max_pages: int = Field(1000, ge=1, description="most page requests in one crawl")
    max_depth: int = Field(5, ge=0, description="most links followed from a seed")
    timeout_s: float = not_in_key(10.0, gt=0, description="per-request connect+read timeout")
    max_bytes: int = Field(5_000_000, ge=1, description="responses larger than this are dropped")
    retries: int = Field(2, ge=0, description="retries of a transient failure (connection error, 5xx)")
    user_agent: str = "cptflow/0.1 (+continued pre-training crawler)"
    respect_robots: bool = True
    revisit_unchanged: bool = Field(False, description="refetch pages the frontier says are unchanged")
    delay_s: float = not_in_key(0.0, ge=0, description="pause between requests to one host; robots Crawl-delay raises it")
    warc_file_mb: int = Field(100, ge=1, description="start a new WARC file once one reaches this size")


class _Crawler:
    """The breadth-first walk: queue, seen URLs, fetch log, this run's frontier and the counts.

    On a resumed crawl, ``done`` holds the fetch-log rows an interrupted attempt committed: those URLs are
    replayed from the log (and their links from the WARC records) instead of fetched, so the walk visits
    the same URLs in the same order as an uninterrupted one.
    """

    def __init__(
        self, cfg: CrawlConfig, partial: Path, frontier: dict[str, dict], progress: ProgressFn
    ) -> None:
        self.cfg = cfg
        self.partial = partial
        self.old_frontier = frontier
        self.progress = progress
        self.fetcher = Fetcher(
            FetchSettings(
                user_agent=cfg.user_agent,
                timeout_s=cfg.timeout_s,
                max_bytes=cfg.max_bytes,
                retries=cfg.retries,
                delay_s=cfg.delay_s,
                respect_robots=cfg.respect_robots,
            )
        )
        self.allowed = _allowed_hosts(cfg)
        self.queue: deque[tuple[str, int]] = deque()
        self.seen: set[str] = set()
        self.too_deep: set[str] = set()
        self.requests = 0
        self.reasons: Counter[str] = Counter()
        self.bytes = 0
        self.new_frontier: dict[str, dict] = {}
        self.sitemaps: dict[str, str] = {}
        self.meter = RateMeter()
        self.done, self.stored, self.warc = _resume(partial, cfg.warc_file_mb * 1024 * 1024)
        self.log_fh = open(partial / FETCH_LOG, "a", encoding="utf-8")  # noqa: SIM115 (closed in run())

    # ---- the walk

    def run(self) -> dict:
        try:
            for url in self._seeds():
                self._enqueue(url, 0)
            visits = 0
            while self.queue and self.requests < self.cfg.max_pages:
                url, depth = self.queue.popleft()
                self._visit(url, depth)
                visits += 1
                if visits % PROGRESS_EVERY == 0:
                    self._report()
        finally:
            self.log_fh.close()
            self.warc.close()
            self.fetcher.close()
        atomic_write_json(self.partial / FRONTIER_FILE, self.new_frontier)
        self._report()
        return self._summary()

    def _seeds(self) -> list[str]:
        seeds: list[str] = []
        for raw in self.cfg.seed_urls:
            url = normalise_url(raw)
            if url is None:
                self._log(raw, 0, "invalid_url", error="not an absolute http(s) URL")
            else:
                seeds.append(url)
        pending = deque(self.cfg.sitemaps)
        done: set[str] = set()
        while pending:
            sitemap = pending.popleft()
            if sitemap not in done:
                done.add(sitemap)
                seeds.extend(self._sitemap(sitemap, pending))
        return seeds

    def _sitemap(self, sitemap: str, pending: deque[str]) -> list[str]:
        """The page URLs a sitemap lists; its child sitemaps go to ``pending``."""
        res = (
            self.fetcher.get(sitemap, {}, html_only=False)
            if normalise_url(sitemap)
            else Response("invalid_url")
        )
        if res.reason:
            self.sitemaps[sitemap] = res.reason
            logger.warning("sitemap %s not read: %s %s", sitemap, res.reason, res.error or "")
            return []
        try:
            pages, children = sitemap_locs(res.body)
        except (ValueError, OSError) as err:  # lxml's XMLSyntaxError is a ValueError; gzip errors OSError
            self.sitemaps[sitemap] = f"unreadable: {err}"
            logger.warning("sitemap %s is not readable XML: %s", sitemap, err)
            return []
        self.sitemaps[sitemap] = f"{len(pages)} pages, {len(children)} sitemaps"
        pending.extend(children)
        urls = []
        for loc in pages:
            url = normalise_url(loc)
            if url is None:
                self._log(loc, 0, "invalid_url", error=f"in sitemap {sitemap}")
            else:
                urls.append(url)
        return urls

    def _enqueue(self, url: str, depth: int) -> None:
        if url in self.seen:
            return
        if depth > self.cfg.max_depth:
            self.too_deep.add(url)
            return
        self.seen.add(url)
        host, netloc = host_keys(url)
        if host not in self.allowed and netloc not in self.allowed:
            self._log(url, depth, "offsite")
            return
        self.queue.append((url, depth))

    def _follow(self, links: list[str], depth: int) -> None:
        for link in links:
            self._enqueue(link, depth + 1)

    def _visit(self, url: str, depth: int) -> None:
        if url in self.done:
            self._replay(url, depth, self.done[url])
            return
        if self.cfg.respect_robots and not self.fetcher.robots_allow(url):
            self._log(url, depth, "robots")
            return
        prev = None if self.cfg.revisit_unchanged else self.old_frontier.get(url)
        started = time.monotonic()
        res = self.fetcher.get(url, _conditional_headers(prev), html_only=True)
        seconds = time.monotonic() - started
        self.requests += 1
        self.meter.add()
        if res.reason == "redirect":
            self._log(url, depth, "redirect", res, seconds)
            self._redirect(url, res.location, depth)
        elif res.reason == "unchanged":  # 304: no body, so follow the links remembered from the last fetch
            self._log(url, depth, "unchanged", res, seconds, sha256=(prev or {}).get("sha256"))
            self._follow((prev or {}).get("links", []), depth)
        elif res.reason:
            self._log(url, depth, res.reason, res, seconds)
        else:
            self._fetched(url, depth, res, seconds, prev)

    def _fetched(self, url: str, depth: int, res: Response, seconds: float, prev: dict | None) -> None:
        sha = hashlib.sha256(res.body).hexdigest()
        links = extract_links(res.body, url)
        fetched_at = _now_iso()
        self._remember(url, res.etag, res.last_modified, sha, fetched_at, links)
        if prev and prev.get("sha256") == sha:
            self._log(url, depth, "unchanged", res, seconds, sha256=sha, fetched_at=fetched_at)
        else:
            self.warc.write(url, res, fetched_at)  # flushed before the log line: the log never runs ahead
            self.bytes += len(res.body)
            self._log(url, depth, "fetched", res, seconds, sha256=sha, fetched_at=fetched_at)
        self._follow(links, depth)

    def _redirect(self, url: str, location: str | None, depth: int) -> None:
        target = normalise_url(location or "", url)
        if target:
            self._enqueue(target, depth)  # a redirect is the same page under another name: same depth

    def _remember(self, url: str, etag, last_modified, sha: str, fetched_at, links: list[str]) -> None:
        self.new_frontier[url] = {
            "etag": etag,
            "last_modified": last_modified,
            "sha256": sha,
            "fetched_at": fetched_at,
            "links": links,
        }

    def _replay(self, url: str, depth: int, row: dict) -> None:
        """A URL an interrupted attempt already handled: its counts and links again, without a request."""
        reason = row["reason"]
        self.reasons[reason] += 1
        if reason != "robots":
            self.requests += 1
        prev = self.old_frontier.get(url) or {}
        if reason == "redirect":
            self._redirect(url, row.get("location"), depth)
        elif reason == "fetched":
            page = self.stored[url]
            links = extract_links(page.body, url)
            self._remember(
                url, row.get("etag"), row.get("last_modified"), row["sha256"], page.fetched_at, links
            )
            self.bytes += len(page.body)
            self._follow(links, depth)
        elif reason == "unchanged":
            if row.get("status") != 304:  # the body was read and hashed: it has a frontier entry
                self._remember(
                    url, row.get("etag"), row.get("last_modified"), row["sha256"], row.get("fetched_at"),
                    prev.get("links", []),
                )  # fmt: skip
            self._follow(prev.get("links", []), depth)

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
        self.log_fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.log_fh.flush()
        fault_point("crawl:page")

    def _report(self) -> None:
        self.progress(
            sum(self.reasons.values()),
            None,
            f"crawl: {self.reasons['fetched']} fetched, {len(self.queue)} queued, {self.meter.rate:.1f} req/s",
        )

    def _summary(self) -> dict:
        dropped = {r: n for r, n in sorted(self.reasons.items()) if r not in ("fetched", "redirect")}
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
            "dropped": dropped,
            "requests": self.requests,
            "resumed": len(self.done),
            "bytes": self.bytes,
            "seconds": round(seconds, 3),
            "pages_per_s": round(pages_per_s, 2),
            "not_visited": not_visited,
            "warc_files": self.warc.names,
            "sitemaps": self.sitemaps,
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
        allowed = {host_keys(u)[0] for u in [*cfg.seed_urls, *cfg.sitemaps] if host_keys(u)[0]}
    return allowed


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


def frontier_hash(frontier: dict[str, dict]) -> str:
    return hashlib.sha256(stable_json(frontier).encode()).hexdigest()[:16]


def run_crawl(
    cfg: CrawlConfig, output: Path, frontier: dict[str, dict], progress: ProgressFn = no_progress
) -> dict:
    """Crawl ``cfg``'s seeds into ``output`` (WARC files, fetch log, this run's frontier); returns the manifest.

    ``frontier`` (url -> {etag, last_modified, sha256, links}) is what earlier runs fetched (see
    ``load_frontier``); it is part of the stage key, so a different frontier means a new crawl.
    """
    if not cfg.seed_urls and not cfg.sitemaps:
        raise ValueError("crawl config has neither seed_urls nor sitemaps: nothing to crawl")

    def work(partial: Path) -> dict:
        summary = _Crawler(cfg, partial, frontier, progress).run()
        logger.info(summary["log_line"])
        return summary

    extra = {"frontier": frontier_hash(frontier)}
    return run_stage(
        "crawl", Path(output), cfg, [], work, extra_key=extra, keep_partial=True, code="cpt_core.ingest.crawl"
    )


def load_frontier(frontier_dir: Path, runs: list[str]) -> dict:
    """Merge ``<frontier_dir>/<run_id>.json`` of ``runs`` (the runs this one may see), later runs winning.

    Only finished runs whose data was learned are passed here (see ``cpt_core.state``): a failed or rejected
    run's pages are fetched again rather than skipped as unchanged.
    """
    folder = Path(frontier_dir)
    merged: dict[str, dict] = {}
    for run_id in runs:
        path = folder / f"{run_id}.json"
        if not path.exists():
            continue  # a run that crawled nothing (e.g. fed from documents) has no frontier
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"crawl frontier file {path} is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"crawl frontier file {path} must hold an object of url -> entry")
        merged.update(data)
    return merged


def commit_frontier(frontier_dir: Path, run_id: str, crawl_output: Path) -> Path:
    """Copy the finished crawl's ``frontier.json`` to ``<frontier_dir>/<run_id>.json`` atomically."""
    source = Path(crawl_output) / FRONTIER_FILE
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist: commit_frontier needs a finished crawl output")
    target = Path(frontier_dir) / f"{run_id}.json"
    atomic_write_text(target, source.read_text(encoding="utf-8"))
    return target


def crawl_against_frontier(
    cfg: CrawlConfig,
    output: Path,
    frontier_dir: Path,
    run_id: str,
    progress: ProgressFn = no_progress,
    earlier_runs: list[str] | None = None,
) -> dict:
    """One run's crawl: conditional requests against the frontier of the runs it may see, then its own saved.

    ``earlier_runs`` defaults to the run's pinned state view (``cpt_core.state.visible_runs``). The run's own
    frontier file is written once the crawl finished; other runs read it only after this run finished too.
    """
    if earlier_runs is None:
        earlier_runs = visible_runs(Path(frontier_dir).parent, run_id)
    manifest = run_crawl(cfg, output, load_frontier(frontier_dir, earlier_runs), progress)
    commit_frontier(frontier_dir, run_id, output)
    return manifest
