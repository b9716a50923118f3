"""The crawler against a local site that has every case a real web has: robots wildcards and Sitemap lines,
a sitemap index with a .gz child, feeds, redirect chains and loops, a redirect to a private address, 429 with
Retry-After, 500 then 200, slow, huge and gzip-bomb bodies, wrong content types, tracking-parameter copies,
canonical links and robots directives."""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from cpt_core.ingest.crawl import CrawlConfig, run_crawl
from tests.ingest.conftest import serving

TEXT = "Plenty of words about the topic of this page, enough to count as a document. " * 5


def _html(title: str, links: list[str] = (), head: str = "") -> bytes:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return f"<html><head><title>{title}</title>{head}</head><body><p>{TEXT}</p>{anchors}</body></html>".encode()


class Site:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.base = ""
        self.port = 0

    def routes(self) -> dict:
        b = self.base
        rss = '<link rel="alternate" type="application/rss+xml" href="/rss.xml">'
        home_links = [
            "/private/open", "/private/closed", "/report.pdf", "/report.pdfx", "/r1", "/loop1", "/to-private",
            "/limited", "/flaky", "/slow", "/huge", "/gzbomb", "/image", "/b", "/b?utm_source=news&utm_medium=x",
            "/copy", "/noindex", "/nofollow", "/gzipped",
        ]  # fmt: skip
        index = (
            '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<sitemap><loc>{b}/sitemap-pages.xml.gz</loc></sitemap></sitemapindex>"
        )
        pages = (
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{b}/from-sitemap</loc><lastmod>2024-05-01</lastmod></url></urlset>"
        )
        feed = f"<rss version='2.0'><channel><title>n</title><item><link>{b}/from-rss</link></item></channel></rss>"
        atom = (
            '<feed xmlns="http://www.w3.org/2005/Atom"><title>a</title>'
            f'<entry><title>e</title><link href="{b}/from-atom"/></entry></feed>'
        )
        html = "text/html; charset=utf-8"
        return {
            "/robots.txt": ("text/plain", (
                "User-agent: *\nDisallow: /*.pdf$\nDisallow: /private/\nAllow: /private/open\n"
                f"Sitemap: {b}/sitemap-index.xml\nSitemap: http://10.255.255.1/sitemap.xml\n"
            ).encode(), {}),
            "/sitemap-index.xml": ("application/xml", index.encode(), {}),
            "/sitemap-pages.xml.gz": ("application/gzip", gzip.compress(pages.encode()), {}),
            "/rss.xml": ("application/rss+xml", feed.encode(), {}),
            "/atom.xml": ("application/atom+xml", atom.encode(), {}),
            "/": (html, _html("Home", home_links, head=rss), {}),
            "/report.pdfx": ("application/octet-stream", b"binary", {}),
            "/image": ("image/png", b"\x89PNG....", {}),
            "/copy": (html, _html("Copy", head=f'<link rel="canonical" href="{b}/b">'), {}),
            "/noindex": (html, _html("No", ["/only-from-noindex"], '<meta name="robots" content="noindex">'), {}),
            "/nofollow": (html, _html("Nf", ["/only-from-nofollow"]), {"X-Robots-Tag": "nofollow"}),
            "/gzipped": (html, gzip.compress(_html("Gz")), {"Content-Encoding": "gzip"}),
            "/gzbomb": (html, gzip.compress(b"<html>" + b" " * 5_000_000), {"Content-Encoding": "gzip"}),
        }

    def redirects(self) -> dict[str, str]:
        return {"/r1": "/r2", "/r2": "/r3", "/r3": "/chain-end", "/loop1": "/loop2", "/loop2": "/loop1",
                "/to-private": f"http://localhost:{self.port}/secret"}  # fmt: skip


def _handler(site: Site):
    routes, redirects = site.routes(), site.redirects()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = self.path
            site.hits[path] += 1
            try:
                self._route(path)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _route(self, path: str) -> None:
            if path in redirects:
                return self._send(302, "text/html", b"", {"Location": redirects[path]})
            if path == "/limited" and site.hits[path] == 1:
                return self._send(429, "text/plain", b"slow down", {"Retry-After": "1"})
            if path == "/flaky" and site.hits[path] == 1:
                return self._send(500, "text/plain", b"oops")
            if path == "/slow":
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(b"<html><body>start")
                self.wfile.flush()
                time.sleep(1.5)  # longer than the 0.5 s read timeout
                self.wfile.write(b"</body></html>")
                return None
            if path == "/huge":  # no Content-Length: the cap must stop the read itself
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(b"<html><body>" + b"x" * 400_000)
                return None
            if path in routes:
                ctype, body, headers = routes[path]
                return self._send(200, ctype, body, headers)
            if path.startswith(("/r", "/b", "/from-", "/only-from-", "/private/open", "/limited", "/flaky",
                                "/chain-end", "/secret")):  # fmt: skip
                return self._send(200, "text/html; charset=utf-8", _html(path))
            return self._send(404, "text/html", b"<html><body>not here</body></html>")

        def _send(self, status: int, ctype: str, body: bytes, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture(scope="module")
def site():
    with serving(Site(), _handler) as site:
        yield site


def _cfg(site: Site, **kw) -> CrawlConfig:
    defaults = dict(
        seed_urls=[site.base + "/"], feeds=[site.base + "/atom.xml"], allowed_hosts=["127.0.0.1", "localhost"],
        allow_private_hosts=["127.0.0.1"], max_depth=3, max_redirects=2, timeout_s=0.5, retries=2,
        max_bytes=100_000, delay_s=0.0, contact_url="https://example.org/crawler",
    )  # fmt: skip
    return CrawlConfig(**(defaults | kw))


@pytest.fixture(scope="module")
def crawl(site, tmp_path_factory):
    out = tmp_path_factory.mktemp("web") / "crawl"
    return out, run_crawl(_cfg(site), out, {})


def _log(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "fetch_log.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["url"] for r in rows}), "a URL was logged twice"
    return {r["url"]: r for r in rows}


def test_every_url_fetched_skipped_or_retried_as_expected(site, crawl):
    out, manifest = crawl
    b = site.base
    expected = {
        "/": "fetched", "/from-sitemap": "fetched", "/from-atom": "fetched", "/from-rss": "fetched",
        "/rss.xml": "feed", "/private/open": "fetched", "/private/closed": "robots", "/report.pdf": "robots",
        "/report.pdfx": "non_html", "/image": "non_html", "/r1": "redirect", "/r2": "redirect",
        "/r3": "redirect", "/chain-end": "too_many_redirects", "/loop1": "redirect", "/loop2": "redirect",
        "/to-private": "redirect", "/limited": "fetched", "/flaky": "fetched", "/slow": "timeout",
        "/huge": "too_large", "/gzbomb": "too_large", "/b": "fetched", "/copy": "non_canonical",
        "/noindex": "noindex", "/only-from-noindex": "fetched", "/nofollow": "fetched", "/gzipped": "fetched",
    }  # fmt: skip
    want = {b + path: reason for path, reason in expected.items()}
    want[f"http://localhost:{site.port}/secret"] = "private_address"
    log = _log(out)
    assert {url: row["reason"] for url, row in log.items()} == want
    assert log[b + "/limited"]["retries"] == 1 and log[b + "/flaky"]["retries"] == 1
    assert "retries" not in log[b + "/b"]
    for never in ("/private/closed", "/report.pdf", "/only-from-nofollow", "/chain-end", "/secret"):
        assert site.hits[never] == 0, never
    assert site.hits["/b?utm_source=news&utm_medium=x"] == 0
    assert site.hits["/limited"] == 2 and site.hits["/flaky"] == 2
    summary = manifest["summary"]
    assert summary["sitemaps"] == {
        f"{b}/sitemap-index.xml": "0 pages, 1 sitemaps",
        "http://10.255.255.1/sitemap.xml": "private_address",
        f"{b}/sitemap-pages.xml.gz": "1 pages, 0 sitemaps",
    }
    assert summary["feeds"] == {f"{b}/atom.xml": "1 entries"}
    assert summary["retries"] == 2 and summary["fetched"] == 11


def test_warc_holds_original_bytes_and_request_records(site, crawl):
    out, _ = crawl
    records = []
    for path in sorted((out / "warc").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type in ("request", "response"):
                    raw = rec.raw_stream.read() if rec.rec_type == "response" else b""
                    records.append((rec.rec_type, rec.rec_headers.get_header("WARC-Target-URI"), rec, raw))
    requests = {url: rec for kind, url, rec, _ in records if kind == "request"}
    responses = {url: (rec, raw) for kind, url, rec, raw in records if kind == "response"}
    assert set(requests) == set(responses) and len(responses) == 11
    ua = requests[site.base + "/"].http_headers.get_header("User-Agent")
    assert ua == "cptflow/0.1 (+https://example.org/crawler)"
    rec, raw = responses[site.base + "/gzipped"]
    assert rec.http_headers.get_header("Content-Encoding") == "gzip"
    assert gzip.decompress(raw) == _html("Gz"), "the payload is stored as the server sent it"
    assert rec.rec_headers.get_header("WARC-Identified-Payload-Type") == "text/html"


def test_politeness_and_output_do_not_depend_on_concurrency(site, crawl, tmp_path):
    out, _ = crawl
    polite = run_crawl(_cfg(site, concurrency=1, per_host_concurrency=1, delay_s=0.01), tmp_path / "c", {})

    def rows(folder: Path) -> list:
        return sorted((u, r["reason"], r["sha256"]) for u, r in _log(folder).items())

    assert rows(tmp_path / "c") == rows(out)
    assert polite["summary"]["fetched"] == 11


def test_private_addresses_are_refused_unless_allowed(site, tmp_path):
    cfg = _cfg(site, allow_private_hosts=[], feeds=[])
    manifest = run_crawl(cfg, tmp_path / "c", {})
    log = _log(tmp_path / "c")
    assert {u: r["reason"] for u, r in log.items()} == {site.base + "/": "private_address"}
    assert "resolves to 127.0.0.1" in log[site.base + "/"]["error"]
    assert manifest["summary"]["fetched"] == 0
