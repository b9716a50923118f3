"""Crawling websites into WARC files.

Algorithm: a breadth-first walk from the seed URLs (plus the ``<loc>``s of the configured sitemaps), one
request at a time, following ``<a href>`` links (parsed with lxml) to the allowed hosts only, up to
``max_depth`` links from a seed and ``max_pages`` requests. URLs are normalised (fragment dropped, scheme and
host lower-cased, default port removed) and each is handled once, in discovery order, so the same site gives
the same log, the same frontier and the same WARC records on every rerun.

Politeness: robots.txt is fetched per host with the request timeout and honoured (``urllib.robotparser``,
including ``Crawl-delay``); one request at a time with an optional pause per host; a user agent that says
who we are; bodies are streamed with a byte cap so a huge or endless response costs at most ``max_bytes``.
Connection errors, 5xx and 429 answers are retried with a short exponential backoff; read timeouts are not (a
slow server would only cost the timeout again).

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

Only HTML responses become WARC ``response`` records, written with warcio and tagged with
``WARC-Identified-Payload-Type`` (datatrove's ``WarcReader`` keeps only records whose payload type is HTML).
The stored payload is the *decoded* body, so ``Content-Encoding``/``Transfer-Encoding`` are removed from the
stored HTTP headers and ``Content-Length`` is rewritten to match. Trade-off: sequential fetching is slow for
big crawls but deterministic and gentle; scale out by splitting seeds across runs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import lxml.etree
import lxml.html
import requests
import urllib3.exceptions
from pydantic import BaseModel, ConfigDict, Field
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from cpt_core import __version__
from cpt_core.io import HTML_TYPES, atomic_write_json, atomic_write_text, stable_json
from cpt_core.progress import ProgressFn, RateMeter, no_progress
from cpt_core.stage import not_in_key, run_stage

logger = logging.getLogger(__name__)

BACKOFF_S = 0.5  # first retry pause; doubles per attempt, capped at BACKOFF_MAX_S
BACKOFF_MAX_S = 5.0
BODY_DEADLINE_FACTOR = 3  # a body still trickling in after 3x the timeout is cut off as a timeout
CHUNK = 64 * 1024
PROGRESS_EVERY = 10
WARC_DIR = "warc"
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


# --------------------------------------------------------------------------------------------- URLs


def normalise_url(url: str, base: str | None = None) -> str | None:
    """Absolute, fragment-free http(s) URL with lower-case scheme/host and no default port; None if unusable."""
    try:
        url = urljoin(base, url.strip()) if base else url.strip()
        url, _ = urldefrag(url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:  # e.g. a port that is not a number, a bad IPv6 literal
        return None
    if scheme not in ("http", "https") or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def extract_links(body: bytes, url: str) -> list[str]:
    """Normalised ``<a href>`` targets of an HTML page, in document order, without repeats."""
    try:
        doc = lxml.html.fromstring(body)
    except (lxml.etree.ParserError, lxml.etree.XMLSyntaxError, ValueError):
        return []
    base = url
    for href in doc.xpath("//base/@href")[:1]:
        base = urljoin(url, href.strip())
    links: dict[str, None] = {}
    for href in doc.xpath("//a/@href"):
        link = normalise_url(str(href), base)
        if link:
            links.setdefault(link)
    return list(links)


def sitemap_locs(body: bytes) -> tuple[list[str], list[str]]:
    """``(page URLs, child sitemap URLs)`` listed in a sitemap or sitemap index (gzip allowed)."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, recover=True)
    root = lxml.etree.fromstring(body, parser=parser)
    if root is None:
        return [], []
    locs = [
        el.text.strip()
        for el in root.iter()
        if isinstance(el.tag, str) and _local(el.tag) == "loc" and el.text
    ]
    if _local(root.tag) == "sitemapindex":
        return [], locs
    return locs, []


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _host_keys(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.netloc.lower()


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------- HTTP


@dataclass
class _Response:
    """What one request gave: a drop ``reason`` (None when the body was read) and what is known."""

    reason: str | None = None
    status: int | None = None
    error: str | None = None
    status_line: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = ""
    mime: str = ""
    body: bytes = b""
    size: int | None = None
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None


class _BodyTimeout(Exception):
    pass


def _is_read_timeout(err: requests.exceptions.ConnectionError) -> bool:
    # requests re-raises a read timeout that happens while streaming the body as a ConnectionError
    return any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in err.args
    ) or "timed out" in str(err)


class _Crawler:
    def __init__(
        self, cfg: CrawlConfig, partial: Path, frontier: dict[str, dict], progress: ProgressFn
    ) -> None:
        self.cfg = cfg
        self.partial = partial
        self.old_frontier = frontier
        self.progress = progress
        self.session = requests.Session()
        self.session.headers["User-Agent"] = cfg.user_agent
        self.robots: dict[str, RobotFileParser] = {}
        self.last_request: dict[str, float] = {}
        self.allowed: set[str] = set()
        self.queue: deque[tuple[str, int]] = deque()
        self.seen: set[str] = set()
        self.too_deep: set[str] = set()
        self.requests = 0
        self.reasons: Counter[str] = Counter()
        self.bytes = 0
        self.new_frontier: dict[str, dict] = {}
        self.sitemaps: dict[str, str] = {}
        self.meter = RateMeter()
        self.log_fh = open(partial / FETCH_LOG, "w", encoding="utf-8")  # noqa: SIM115 (closed in run())
        self.warc = _WarcFiles(partial / WARC_DIR, cfg.warc_file_mb * 1024 * 1024)

    # ---- the walk

    def run(self) -> dict:
        try:
            seeds = self._seeds()
            self.allowed = {h.lower() for h in self.cfg.allowed_hosts}
            if not self.allowed:
                self.allowed = {
                    _host_keys(u)[0] for u in [*self.cfg.seed_urls, *self.cfg.sitemaps] if _host_keys(u)[0]
                }
            for url in seeds:
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
            self.session.close()
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
            if sitemap in done:
                continue
            done.add(sitemap)
            res = (
                self._get(sitemap, {}, html_only=False)
                if normalise_url(sitemap)
                else _Response("invalid_url")
            )
            if res.reason:
                self.sitemaps[sitemap] = res.reason
                logger.warning("sitemap %s not read: %s %s", sitemap, res.reason, res.error or "")
                continue
            try:
                pages, children = sitemap_locs(res.body)
            except (ValueError, OSError) as err:  # lxml's XMLSyntaxError is a ValueError; gzip errors OSError
                self.sitemaps[sitemap] = f"unreadable: {err}"
                logger.warning("sitemap %s is not readable XML: %s", sitemap, err)
                continue
            self.sitemaps[sitemap] = f"{len(pages)} pages, {len(children)} sitemaps"
            pending.extend(children)
            for loc in pages:
                url = normalise_url(loc)
                if url is None:
                    self._log(loc, 0, "invalid_url", error=f"in sitemap {sitemap}")
                else:
                    seeds.append(url)
        return seeds

    def _enqueue(self, url: str, depth: int) -> None:
        if url in self.seen:
            return
        if depth > self.cfg.max_depth:
            self.too_deep.add(url)
            return
        self.seen.add(url)
        host, netloc = _host_keys(url)
        if host not in self.allowed and netloc not in self.allowed:
            self._log(url, depth, "offsite")
            return
        self.queue.append((url, depth))

    def _follow(self, links: list[str], depth: int) -> None:
        for link in links:
            self._enqueue(link, depth + 1)

    def _visit(self, url: str, depth: int) -> None:
        if self.cfg.respect_robots and not self._robots_allow(url):
            self._log(url, depth, "robots")
            return
        prev = None if self.cfg.revisit_unchanged else self.old_frontier.get(url)
        conditional = {}
        if prev and prev.get("etag"):
            conditional["If-None-Match"] = prev["etag"]
        if prev and prev.get("last_modified"):
            conditional["If-Modified-Since"] = prev["last_modified"]
        started = time.monotonic()
        res = self._get(url, conditional, html_only=True)
        seconds = time.monotonic() - started
        self.requests += 1
        self.meter.add()
        if res.reason == "redirect":
            self._log(url, depth, "redirect", res, seconds)
            target = normalise_url(res.location or "", url)
            if target:
                self._enqueue(target, depth)  # a redirect is the same page under another name: same depth
            return
        if res.reason == "unchanged":  # 304: no body, so follow the links remembered from the last fetch
            self._log(url, depth, "unchanged", res, seconds, sha256=(prev or {}).get("sha256"))
            self._follow((prev or {}).get("links", []), depth)
            return
        if res.reason:
            self._log(url, depth, res.reason, res, seconds)
            return
        sha = hashlib.sha256(res.body).hexdigest()
        links = extract_links(res.body, url)
        fetched_at = _now_iso()
        self.new_frontier[url] = {
            "etag": res.etag,
            "last_modified": res.last_modified,
            "sha256": sha,
            "fetched_at": fetched_at,
            "links": links,
        }
        if prev and prev.get("sha256") == sha:
            self._log(url, depth, "unchanged", res, seconds, sha256=sha)
        else:
            self.warc.write(url, res, fetched_at)
            self.bytes += len(res.body)
            self._log(url, depth, "fetched", res, seconds, sha256=sha)
        self._follow(links, depth)

    # ---- requests

    def _get(self, url: str, headers: dict[str, str], html_only: bool) -> _Response:
        """GET with retries of connection errors, 5xx and 429; never raises for a bad URL or server."""
        last = _Response("unreachable")
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(min(BACKOFF_S * 2 ** (attempt - 1), BACKOFF_MAX_S))
            self._wait_politely(url)
            try:
                with self.session.get(
                    url, headers=headers, timeout=self.cfg.timeout_s, stream=True, allow_redirects=False
                ) as resp:
                    res = self._read(resp, html_only)
            except (requests.exceptions.ReadTimeout, _BodyTimeout) as err:
                return _Response("timeout", error=str(err))
            except requests.exceptions.ConnectTimeout as err:
                last = _Response("timeout", error=str(err))
                continue
            except requests.exceptions.ConnectionError as err:
                if _is_read_timeout(err):
                    return _Response("timeout", error=str(err))
                last = _Response("unreachable", error=str(err))
                continue
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as err:
                return _Response("invalid_url", error=str(err))
            except (requests.exceptions.RequestException, OSError, ValueError) as err:
                return _Response("unreachable", error=f"{type(err).__name__}: {err}")
            if res.status is not None and (res.status >= 500 or res.status == 429):
                last = res
                continue
            return res
        return last

    def _read(self, resp: requests.Response, html_only: bool) -> _Response:
        res = _Response(status=resp.status_code)
        res.status_line = f"{resp.status_code} {resp.reason or ''}".strip()
        res.headers = list(resp.headers.items())
        res.content_type = resp.headers.get("Content-Type", "")
        res.mime = res.content_type.split(";", 1)[0].strip().lower()
        res.etag = resp.headers.get("ETag")
        res.last_modified = resp.headers.get("Last-Modified")
        length = resp.headers.get("Content-Length", "")
        res.size = int(length) if length.isdigit() else None
        status = resp.status_code
        if status == 304:
            res.reason = "unchanged"
        elif resp.is_redirect:
            res.reason, res.location = "redirect", resp.headers.get("Location")
        elif not 200 <= status < 300:
            res.reason = f"http_{status}"
        elif html_only and res.mime not in HTML_TYPES:
            res.reason = "non_html"  # not downloaded: the headers say all we keep
        elif res.size is not None and res.size > self.cfg.max_bytes:
            res.reason = "too_large"
        else:
            body = bytearray()
            deadline = time.monotonic() + BODY_DEADLINE_FACTOR * self.cfg.timeout_s
            for chunk in resp.iter_content(CHUNK):
                body += chunk
                if len(body) > self.cfg.max_bytes:
                    res.reason, res.size = "too_large", len(body)
                    return res
                if time.monotonic() > deadline:
                    raise _BodyTimeout(f"body still arriving after {BODY_DEADLINE_FACTOR}x timeout_s")
            res.body, res.size = bytes(body), len(body)
            if not res.body.strip():
                res.reason = "empty"
        return res

    def _wait_politely(self, url: str) -> None:
        netloc = _host_keys(url)[1]
        delay = self.cfg.delay_s
        robots = self.robots.get(netloc)
        if robots is not None and self.cfg.respect_robots:
            delay = max(delay, float(robots.crawl_delay(self.cfg.user_agent) or 0))
        wait = self.last_request.get(netloc, -1e9) + delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.last_request[netloc] = time.monotonic()

    def _robots_allow(self, url: str) -> bool:
        parts = urlsplit(url)
        netloc = parts.netloc.lower()
        parser = self.robots.get(netloc)
        if parser is None:
            parser = RobotFileParser(f"{parts.scheme}://{netloc}/robots.txt")
            try:
                resp = self.session.get(parser.url, timeout=self.cfg.timeout_s)
                if resp.status_code in (401, 403) or resp.status_code >= 500:
                    parser.disallow_all = True  # as robotparser does for 401/403; a failing server: stay away
                elif resp.status_code >= 400:
                    parser.allow_all = True
                else:
                    parser.parse(resp.text.splitlines())
            except requests.exceptions.RequestException:
                # unreachable host: allow, so that the page request records the real failure
                parser.allow_all = True
            self.robots[netloc] = parser
        return parser.can_fetch(self.cfg.user_agent, url)

    # ---- records

    def _log(
        self,
        url: str,
        depth: int,
        reason: str,
        res: _Response | None = None,
        seconds: float = 0.0,
        sha256: str | None = None,
        error: str | None = None,
    ) -> None:
        res = res or _Response()
        self.reasons[reason] += 1
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
        if error or res.error:
            row["error"] = error or res.error
        if res.location:
            row["location"] = res.location
        self.log_fh.write(json.dumps(row, ensure_ascii=False) + "\n")

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
            ),
        }


class _WarcFiles:
    """``crawl-00000.warc.gz``, ``crawl-00001.warc.gz``…: a new file once one passes ``rotate_bytes``."""

    def __init__(self, folder: Path, rotate_bytes: int) -> None:
        self.folder = folder
        self.rotate_bytes = rotate_bytes
        self.names: list[str] = []
        self.fh = None
        self.writer = None
        folder.mkdir(parents=True, exist_ok=True)
        self._open()

    def _open(self) -> None:
        name = f"crawl-{len(self.names):05d}.warc.gz"
        self.names.append(f"{WARC_DIR}/{name}")
        self.fh = open(self.folder / name, "wb")  # noqa: SIM115 (closed in close()/_open())
        self.writer = WARCWriter(self.fh, gzip=True)
        info = {"software": f"cptflow/{__version__}", "format": "WARC File Format 1.1"}
        self.writer.write_record(self.writer.create_warcinfo_record(name, info))

    def write(self, url: str, res: _Response, fetched_at: str) -> None:
        # the payload is the decoded body: drop the encodings that no longer apply and fix the length
        skip = {"content-encoding", "transfer-encoding", "content-length"}
        headers = [(k, v) for k, v in res.headers if k.lower() not in skip]
        headers.append(("Content-Length", str(len(res.body))))
        record = self.writer.create_warc_record(
            url,
            "response",
            payload=io.BytesIO(res.body),
            length=len(res.body),
            http_headers=StatusAndHeaders(res.status_line, headers, protocol="HTTP/1.1"),
            warc_headers_dict={"WARC-Identified-Payload-Type": res.mime, "WARC-Date": fetched_at},
        )
        self.writer.write_record(record)
        if self.fh.tell() >= self.rotate_bytes:
            self.fh.close()
            self._open()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


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
    return run_stage("crawl", Path(output), cfg, [], work, extra_key=extra, code="cpt_core.ingest.crawl")


def load_frontier(frontier_dir: Path, exclude_run: str) -> dict:
    """Merge ``<frontier_dir>/<run_id>.json`` of every run but ``exclude_run``; later files win.

    Files are ordered by modification time, then name. The reading run's own file is left out so that a
    crawl redone after a crash does not see its own pages as unchanged.
    """
    folder = Path(frontier_dir)
    if not folder.exists():
        return {}
    files = [p for p in folder.glob("*.json") if p.stem != exclude_run]
    files.sort(key=lambda p: (p.stat().st_mtime, p.name))
    merged: dict[str, dict] = {}
    for path in files:
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
    cfg: CrawlConfig, output: Path, frontier_dir: Path, run_id: str, progress: ProgressFn = no_progress
) -> dict:
    """One run's crawl: conditional requests against every other run's frontier, then this run's committed.

    The commit comes only after the stage finished, so a crashed crawl never marks pages as seen.
    """
    manifest = run_crawl(cfg, output, load_frontier(frontier_dir, exclude_run=run_id), progress)
    commit_frontier(frontier_dir, run_id, output)
    return manifest
