"""The crawler against a tiny site served from a thread: every URL accounted for, WARCs, crawl state, reruns."""

from __future__ import annotations

import hashlib
import json
import socket
import time
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from cpt_core.ingest import crawl as crawl_mod
from cpt_core.ingest.crawl import CrawlConfig, crawl_with_state, run_crawl
from cpt_core.ingest.crawl_db import CrawlDB
from cpt_core.ingest.fetch import Response
from cpt_core.ingest.urls import normalise_url
from cpt_core.ingest.warc import WarcFiles, page_records
from tests.ingest.conftest import serving

KO_TEXT = "대한민국의 수도 서울에서는 오늘 새로운 시립 도서관이 문을 열었다. 시민들은 개관 첫날부터 많은 책을 빌려 갔다."
EUCKR_TEXT = "부산 해운대 해수욕장은 올여름 역대 가장 많은 방문객을 맞았다. 시는 안전 요원을 두 배로 늘렸다."
LOREM = "The quick brown fox jumps over the lazy dog near the river bank while the sun sets slowly. " * 3


def _page(title: str, body: str, links: list[str] = (), head: str = "") -> str:
    anchors = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<html><head><title>{title}</title>{head}</head><body><nav><ul>{anchors}</ul></nav>"
        f"<article><h1>{title}</h1><p>{body}</p></article></body></html>"
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Site:
    """Routes of the test site; ``hits`` counts requests per path."""

    def __init__(self) -> None:
        self.closed_port = _closed_port()
        self.hits: Counter[str] = Counter()
        self.base = ""

    def routes(self) -> dict[str, tuple[int, str, bytes]]:
        index_links = [
            "/a", "/b", "/missing", "/slow", "/doc.pdf", "/empty", "/private/secret", "/ko-utf8", "/ko-euckr",
            "/old", "/flaky", "/big", "http://offsite.invalid/page", f"http://127.0.0.1:{self.closed_port}/",
            "/a#top", "mailto:someone@example.com",
        ]  # fmt: skip
        html = "text/html; charset=utf-8"
        euckr_head = '<meta http-equiv="Content-Type" content="text/html; charset=euc-kr">'
        return {
            "/robots.txt": (200, "text/plain", b"User-agent: *\nDisallow: /private/\n"),
            "/": (200, html, _page("Home", LOREM, index_links).encode()),
            "/a": (
                200,
                html,
                _page(
                    "Page A",
                    "Alpha " + LOREM,
                    ["/b", "/", "/a/deep"],
                    head='<meta property="article:published_time" content="2024-03-05">',
                ).encode(),
            ),  # fmt: skip
            "/b": (200, html, _page("Page B", "Bravo " + LOREM).encode()),
            "/a/deep": (200, html, _page("Deep", "Deep " + LOREM, ["/a/deeper"]).encode()),
            "/a/deeper": (200, html, _page("Deeper", "Deeper " + LOREM, ["/a/deepest"]).encode()),
            "/a/deepest": (200, html, _page("Deepest", LOREM).encode()),
            "/private/secret": (200, html, _page("Secret", LOREM).encode()),
            "/doc.pdf": (200, "application/pdf", b"%PDF-1.4\n%binary\n"),
            "/empty": (200, "text/html", b""),
            "/ko-utf8": (200, "text/html; charset=iso-8859-1", _page("서울", KO_TEXT).encode("utf-8")),
            "/ko-euckr": (200, "text/html", _page("부산", EUCKR_TEXT, head=euckr_head).encode("euc-kr")),
            "/flaky": (200, html, _page("Flaky", "Flaky " + LOREM).encode()),
            "/sitemap.xml": (
                200,
                "application/xml",
                (
                    '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                    f"<url><loc>{self.base}/b</loc></url><url><loc>{self.base}/ko-utf8</loc></url></urlset>"
                ).encode(),
            ),
        }


def _handler(site: Site):
    routes = site.routes()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path
            site.hits[path] += 1
            try:
                if path == "/slow":
                    time.sleep(1.0)  # longer than the crawl's 0.5 s timeout
                    return self._send(200, "text/html", b"<html><body>late</body></html>")
                if path == "/old":
                    self.send_response(301)
                    self.send_header("Location", "/a")
                    self.end_headers()
                    return None
                if path == "/flaky" and site.hits[path] == 1:
                    return self._send(503, "text/plain", b"try again")
                if path == "/big":  # no Content-Length: the crawler must stop reading at max_bytes itself
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.end_headers()
                    self.wfile.write(b"<html><body>" + b"x" * 300_000 + b"</body></html>")
                    return None
                if path not in routes:
                    return self._send(404, "text/html", b"<html><body>not here</body></html>")
                status, ctype, body = routes[path]
                etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return None
                return self._send(status, ctype, body, etag)
            except (BrokenPipeError, ConnectionResetError):
                return None  # the client gave up (timeout test)

        def _send(self, status: int, ctype: str, body: bytes, etag: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if etag:
                self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture(scope="module")
def site():
    with serving(Site(), _handler) as site:
        yield site


def _cfg(site: Site, **kw) -> CrawlConfig:
    defaults = dict(
        seed_urls=[site.base + "/"],
        max_depth=3,
        timeout_s=0.5,
        retries=1,
        max_bytes=200_000,
        delay_s=0.0,
        allow_private_hosts=["127.0.0.1"],
    )
    return CrawlConfig(**(defaults | kw))


def _log(out: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in (out / "fetch_log.jsonl").read_text().splitlines()]
    assert len(rows) == len({r["url"] for r in rows}), "a URL was logged twice"
    return {r["url"]: r for r in rows}


def _warc_responses(out: Path) -> list[tuple[str, str, bytes]]:
    found = []
    for path in sorted((out / "warc").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            for record in ArchiveIterator(fh):
                if record.rec_type == "response":
                    found.append(
                        (
                            record.rec_headers.get_header("WARC-Target-URI"),
                            record.rec_headers.get_header("WARC-Identified-Payload-Type"),
                            record.content_stream().read(),
                        )
                    )
    return found


@pytest.fixture(scope="module")
def first_crawl(site, tmp_path_factory):
    out = tmp_path_factory.mktemp("crawl1") / "crawl"
    manifest = crawl_with_state(_cfg(site), out, out.parent / "state", "run1", earlier_runs=[])
    return out, manifest


FETCHED = ["/", "/a", "/b", "/ko-utf8", "/ko-euckr", "/flaky", "/a/deep", "/a/deeper"]


def test_every_url_is_accounted_for(site, first_crawl):
    out, manifest = first_crawl
    log = _log(out)
    b = site.base
    expected = {
        b + "/": "fetched",
        b + "/a": "fetched",
        b + "/b": "fetched",
        b + "/a/deep": "fetched",
        b + "/a/deeper": "fetched",
        b + "/flaky": "fetched",  # a 503 first, then retried
        b + "/ko-utf8": "fetched",
        b + "/ko-euckr": "fetched",
        b + "/missing": "http_404",
        b + "/slow": "timeout",
        b + "/doc.pdf": "non_html",
        b + "/empty": "empty",
        b + "/private/secret": "robots",
        b + "/old": "redirect",
        b + "/big": "too_large",
        "http://offsite.invalid/page": "offsite",
        f"http://127.0.0.1:{site.closed_port}/": "unreachable",
    }
    assert {url: row["reason"] for url, row in log.items()} == expected
    assert log[b + "/doc.pdf"]["content_type"] == "application/pdf"
    assert log[b + "/missing"]["status"] == 404
    assert log[b + "/a/deeper"]["depth"] == 3
    assert site.hits["/private/secret"] == 0, "robots.txt disallow was not honoured"
    assert site.hits["/flaky"] == 2
    summary = manifest["summary"]
    assert summary["fetched"] == 8 and summary["redirected"] == 1
    assert summary["dropped"] == {
        "empty": 1, "http_404": 1, "non_html": 1, "offsite": 1, "robots": 1, "timeout": 1, "too_large": 1,
        "unreachable": 1,
    }  # fmt: skip
    assert summary["fetched"] + summary["redirected"] + sum(summary["dropped"].values()) == len(log)
    assert summary["not_visited"] == {"max_depth": 1, "max_pages": 0}  # /a/deepest
    assert "8 pages fetched" in summary["log_line"]


def test_warc_records_are_html_responses(site, first_crawl):
    out, _ = first_crawl
    records = _warc_responses(out)
    urls = [url for url, _, _ in records]
    assert sorted(urls) == sorted(site.base + p for p in FETCHED)
    assert all(mime == "text/html" for _, mime, _ in records)
    payloads = dict((url, body) for url, _, body in records)
    assert KO_TEXT.encode("utf-8") in payloads[site.base + "/ko-utf8"]
    assert EUCKR_TEXT.encode("euc-kr") in payloads[site.base + "/ko-euckr"]
    with CrawlDB(out.parent / "state") as db:
        state = db.visible(["run1"])
    assert set(state) == set(urls)
    entry = state[site.base + "/a"]
    assert entry["etag"] and entry["sha256"] == hashlib.sha256(payloads[site.base + "/a"]).hexdigest()
    assert entry["status"] == 200 and entry["fetched_at"] and site.base + "/a/deep" in entry["links"]


def test_failed_urls_get_state_rows_with_their_status(site, first_crawl):
    out, _ = first_crawl
    with CrawlDB(out.parent / "state") as db:
        failed = {
            u.removeprefix(site.base): (r["status"], r["reason"]) for u, r in db.failures(["run1"]).items()
        }
        assert set(db.visible(["run1"])).isdisjoint(db.failures(["run1"]))
    assert failed["/missing"] == (404, "http_404") and failed["/slow"] == (None, "timeout")
    assert failed[f"http://127.0.0.1:{site.closed_port}/"] == (None, "unreachable")
    assert "/private/secret" not in failed and "/doc.pdf" not in failed  # robots, non_html: not failures


def test_rerun_is_skipped_and_output_is_deterministic(site, first_crawl, tmp_path):
    out, manifest = first_crawl
    again = run_crawl(_cfg(site), out, {})
    assert again["skipped"] is True and again["key"] == manifest["key"]

    other = tmp_path / "crawl"  # pages read on the event loop, fewer requests in flight: the same output
    run_crawl(_cfg(site, parse_workers=0, concurrency=2), other, {})

    def strip(rows: dict) -> list:
        return [
            {k: v for k, v in row.items() if k not in ("seconds", "fetched_at", "retries")}
            for row in rows.values()
        ]

    assert strip(_log(out)) == strip(_log(other))
    assert [(u, b) for u, _, b in _warc_responses(out)] == [(u, b) for u, _, b in _warc_responses(other)]


def test_second_crawl_with_state_counts_unchanged(site, first_crawl, tmp_path):
    out, first = first_crawl
    with CrawlDB(out.parent / "state") as db:
        assert db.visible([]) == {}, "a run sees only the state of the runs it is given"
        frontier = db.visible(["run1"])
    assert len(frontier) == 8

    second = run_crawl(_cfg(site), tmp_path / "crawl2", frontier)
    assert second["skipped"] is False and second["key"] != first["key"]
    summary = second["summary"]
    assert summary["fetched"] == 0
    assert summary["dropped"]["unchanged"] == 8
    log = _log(tmp_path / "crawl2")
    # pages below an unchanged (304) page are still visited through the links remembered in the frontier
    assert log[site.base + "/a/deeper"]["reason"] == "unchanged"
    assert log[site.base + "/a/deeper"]["status"] == 304
    assert log[site.base + "/missing"]["reason"] == "http_404"
    assert _warc_responses(tmp_path / "crawl2") == []

    revisit = run_crawl(_cfg(site, revisit_unchanged=True), tmp_path / "crawl3", frontier)
    assert revisit["summary"]["fetched"] == 8 and "unchanged" not in revisit["summary"]["dropped"]


def test_sitemap_seeds_and_page_limit(site, tmp_path):
    cfg = _cfg(site, seed_urls=[], sitemaps=[site.base + "/sitemap.xml"], max_depth=0)
    summary = run_crawl(cfg, tmp_path / "crawl", {})["summary"]
    assert summary["fetched"] == 2
    assert list(_log(tmp_path / "crawl")) == [site.base + "/b", site.base + "/ko-utf8"]
    assert "2 pages" in summary["sitemaps"][site.base + "/sitemap.xml"]

    limited = run_crawl(_cfg(site, max_pages=2), tmp_path / "limited", {})["summary"]
    assert limited["requests"] == 2 and limited["not_visited"]["max_pages"] > 0


def test_warc_files_rotate(tmp_path):
    res = Response(status_line="200 OK", headers=[("Content-Type", "text/html")], mime="text/html")
    warc = WarcFiles(tmp_path / "warc", rotate_bytes=1)
    for i in range(2):
        res.body = f"<html><body>page {i}</body></html>".encode()
        warc.append(page_records(f"http://example.com/{i}", res, "2025-01-01T00:00:00Z"))
    warc.close()
    assert warc.names == [f"warc/crawl-0000{i}.warc.gz" for i in range(3)]
    assert [u for u, _, _ in _warc_responses(tmp_path)] == ["http://example.com/0", "http://example.com/1"]


def test_normalise_url():
    assert normalise_url("HTTP://Example.COM:80/a/../b?x=1#frag") == "http://example.com/a/../b?x=1"
    assert normalise_url("https://example.com") == "https://example.com/"
    assert (
        normalise_url("page#x", base="https://example.com:8443/dir/") == "https://example.com:8443/dir/page"
    )
    assert normalise_url("mailto:a@b.c") is None
    assert normalise_url("http://example.com:notaport/") is None


def test_links_resolved_through_the_folder_table_equal_plain_normalisation():
    from cpt_core.ingest import urls

    hrefs = [
        "x.html", "./x.html#a", "../up/y.html?b=2&utm_source=z", "/root", "//other.example/p", "?q=1", "#frag",
        "", "http://Example.com:80/A", "https://example.com/s", "http:?odd", "javascript:void(0)", "mailto:a@b",
        "sub/;params", "HTTP://x.org/a:b", "a:b/c", " spaced.html ", "x.html#b", "#other", "#", "a#b/c:d",
        "x.html?utm_source=a#f", "../x.html#a", "http://example.com/dir/#top",
    ]  # fmt: skip
    bases = ["http://example.com/dir/page.html?x=1#f", "http://example.com", "https://example.com:8443/d/"]
    for base in bases:
        folder = urls._folder(base)
        for href in hrefs:
            for _ in range(2):  # the second lookup is served from the table
                assert urls._resolve(href.strip(), base, folder) == normalise_url(href, base), (base, href)
    page = b'<html><body><a href="a.html">1</a><a href="a.html#x">2</a><a href="/b">3</a></body></html>'
    assert urls.parse_page(page, "http://example.com/d/i.html").links == [
        "http://example.com/d/a.html",
        "http://example.com/b",
    ]


def test_page_read_in_one_pass_matches_xpath_reading():
    """parse_page reads links, base, canonical, feeds and meta robots as these XPath expressions select them."""
    import lxml.etree

    from cpt_core.ingest import urls

    page = b"""<html><head><link rel="Canonical" href="/not-canonical"><link rel="alternate" href="/nohref-type">
    <link rel=" alternate  canonical " href="c.html#x"><link rel="canonical" href="/second">
    <link rel="alternate" type=" Application/RSS+XML " href="feed.xml"><link rel="alternate feed" type="application/rss+xml" href="/no">
    <link rel="canonical"><meta name="ROBOTS" content="NoFollow"><meta name="rObOtS" content="otherbot: noindex">
    <meta name="robots"><meta name="googlebot" content="noindex"></head><body>
    <a href="a.html">1</a><a>no href</a><a href="#top">2</a><a href="sub/b.html#k">3</a><base href="/other/">
    <base href="/ignored/"><a href="a.html#z">4</a><a href="">5</a></body></html>"""  # fmt: skip
    url = "http://example.com/d/i.html"
    doc = lxml.etree.fromstring(page, lxml.etree.HTMLParser())
    base = urllib.parse.urljoin(url, doc.xpath("//base/@href")[0].strip())
    canonical = doc.xpath("//link[contains(concat(' ', normalize-space(@rel), ' '), ' canonical ')]/@href")
    feeds = [
        el.get("href", "")
        for el in doc.xpath("//link[@rel='alternate'][@href]")
        if (el.get("type") or "").strip().lower() in urls.FEED_TYPES
    ]
    meta = doc.xpath("//meta[translate(@name,'ROBTS','robts')='robots']/@content")
    got = urls.parse_page(page, url)
    assert got.links == urls._unique(doc.xpath("//a/@href"), base)
    assert got.links == [
        "http://example.com/other/a.html", "http://example.com/other/", "http://example.com/other/sub/b.html",
    ]  # fmt: skip
    assert got.canonical == normalise_url(str(canonical[0]), base) == "http://example.com/other/c.html"
    assert got.feeds == urls._unique(feeds, base) == ["http://example.com/other/feed.xml"]
    assert meta == ["NoFollow", "otherbot: noindex"]
    assert (got.noindex, got.nofollow) == (False, True)


def test_page_links_read_in_the_encoding_the_page_is_in():
    """Links are read in the page's encoding: BOM, valid UTF-8, a header or meta charset the bytes bear out."""
    from urllib.parse import quote

    from cpt_core.ingest import urls

    url = "http://example.com/d/i.html"

    def link(path: str) -> str:
        return "http://example.com/d/" + quote(path)  # a URI: the path's UTF-8 bytes percent-encoded

    euc_kr = '<head><meta charset="euc-kr"></head><body><a href="뉴스/한국어.html">뉴스</a>'.encode("euc-kr")
    assert urls.parse_page(euc_kr, url).links == [link("뉴스/한국어.html")]
    header_only = '<html><body><p>한국어 기사</p><a href="기사/오늘.html">오늘</a>'.encode("euc-kr")
    assert urls.parse_page(header_only, url, "text/html; charset=EUC-KR").links == [link("기사/오늘.html")]
    lying = '<meta charset="euc-kr"><p>서울의 날씨</p><a href="날씨.html">x</a>'.encode("euc-kr")
    assert urls.parse_page(lying, url, "text/html; charset=iso-8859-1").links == [link("날씨.html")]
    # As browsers do: the path is UTF-8, the query is in the page's own encoding.
    board = '<meta charset="euc-kr"><p>게시판</p><a href="글/목록.php?name=한글#c">x</a>'
    euc_kr_query = link("글/목록.php") + "?name=%C7%D1%B1%DB"
    assert urls.parse_page(board.encode("euc-kr"), url).links == [euc_kr_query]
    assert urls.parse_page(board.encode(), url).links == [link("글/목록.php") + "?name=%ED%95%9C%EA%B8%80"]
    utf16 = '\ufeff<a href="문서.html">x</a><a href="b.html">y</a>'.encode("utf-16-le")
    assert urls.parse_page(utf16, url).links == [link("문서.html"), link("b.html")]
    undeclared = '<a href="사전.html">z</a>'.encode()
    assert urls.parse_page(undeclared, url).links == [link("사전.html")]
    assert urls.parse_page(b"", url).links == [] and urls.parse_page(b"\x00\xff", url).links == []


def test_one_page_under_its_raw_and_percent_encoded_names_is_one_url():
    """Non-ASCII paths are percent-encoded as UTF-8 and escapes upper-cased; reserved characters are kept."""
    encoded = "http://example.com/%EB%89%B4%EC%8A%A4/a%20b.html"
    for spelling in ("http://example.com/뉴스/a b.html", "http://EXAMPLE.com:80/%eb%89%b4%ec%8a%a4/a%20b.html#x"):
        assert normalise_url(spelling) == encoded
    assert normalise_url("https://example.com/w/(x);p=1+2,3") == "https://example.com/w/(x);p=1+2,3"
    assert normalise_url("http://example.com/100%") == "http://example.com/100%"
    assert normalise_url("http://example.com/a%2fb") == "http://example.com/a%2Fb"


def test_queries_lose_trackers_and_keep_their_bytes():
    """Tracking parameters go and pairs are sorted, but values are not re-encoded: an EUC-KR query stays EUC-KR."""
    board = "http://example.kr/board.php?name=%c7%d1%B1%DB&utm_source=mail&id=7"
    assert normalise_url(board) == "http://example.kr/board.php?id=7&name=%C7%D1%B1%DB"
    assert normalise_url("http://e.kr/s?z=1&print&a=&fbclid=9&q=a+b%2Bc") == "http://e.kr/s?a=&print&q=a+b%2Bc&z=1"
    assert normalise_url("http://e.kr/s?x=2&x=1&utm_medium=x") == "http://e.kr/s?x=2&x=1"
    assert normalise_url("http://e.kr/s?q=한글") == "http://e.kr/s?q=%ED%95%9C%EA%B8%80"
    assert normalise_url("http://e.kr/s?utm_campaign=x") == normalise_url("http://e.kr/s") == "http://e.kr/s"


def test_crawl_then_extract_decodes_korean(site, first_crawl, tmp_path):
    from cpt_core.ingest.extract import ExtractConfig, run_extract

    out, _ = first_crawl
    manifest = run_extract(ExtractConfig(min_chars=20), out, tmp_path / "extract")
    docs = _read_docs(tmp_path / "extract" / "documents")
    assert KO_TEXT in docs[site.base + "/ko-utf8"]["text"]
    assert EUCKR_TEXT in docs[site.base + "/ko-euckr"]["text"]
    assert docs[site.base + "/ko-euckr"]["metadata"]["charset"] in ("cp949", "euc_kr")
    assert docs[site.base + "/a"]["metadata"]["published_at"] == "2024-03-05"
    assert manifest["summary"]["docs_in"] == 8


def _read_docs(folder: Path) -> dict[str, dict]:
    import gzip

    docs = {}
    for path in sorted(folder.glob("*.jsonl*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                doc = json.loads(line)
                docs[doc["metadata"]["url"]] = doc
    return docs


class _Interrupted(Exception):
    pass


def _interrupt_after(pages: int):
    def progress(done, total, message):  # noqa: ARG001
        if done >= pages:
            raise _Interrupted(f"stopped after {done} URLs")

    return progress


def _record_set(out: Path) -> list[tuple[str, bytes]]:
    return sorted((u, b) for u, _, b in _warc_responses(out))


def _interrupted_crawl(site, out: Path, monkeypatch) -> dict[str, dict]:
    """A crawl stopped by its progress callback after 4 URLs; returns the fetch log it left."""
    monkeypatch.setattr(crawl_mod, "PROGRESS_EVERY", 1)
    with pytest.raises(_Interrupted):
        run_crawl(_cfg(site), out, {}, progress=_interrupt_after(4))
    partial = out.with_name(out.name + ".partial")
    assert not out.exists() and partial.is_dir()
    return _log(partial)


def test_interrupted_crawl_resumes_without_refetching(site, first_crawl, tmp_path, monkeypatch):
    reference, ref_manifest = first_crawl
    out = tmp_path / "crawl"
    done = _interrupted_crawl(site, out, monkeypatch)
    fetched = [url for url, row in done.items() if row["reason"] == "fetched"]
    assert len(fetched) >= 2
    hits_before = Counter(site.hits)

    manifest = run_crawl(_cfg(site), out, {})

    for url in done:
        path = url.removeprefix(site.base)
        assert site.hits[path] == hits_before[path], f"{path} was fetched again after the resume"
    later = [p for p in FETCHED if site.base + p not in done]
    assert later and all(site.hits[p] == hits_before[p] + 1 for p in later)  # what was not reached is fetched
    assert _record_set(out) == _record_set(reference)
    assert set(_log(out)) == set(_log(reference))
    summary, ref = manifest["summary"], ref_manifest["summary"]
    assert summary["resumed"] == len(done)
    for key in ("fetched", "redirected", "dropped", "requests", "bytes", "not_visited"):
        assert summary[key] == ref[key], key
    assert not out.with_name("crawl.partial").exists()
    assert not (out / "_partial_key").exists()


def test_resume_discards_a_half_written_record_and_log_line(site, first_crawl, tmp_path, monkeypatch):
    """As after a kill: the last page's record is half on disk and its log line never made it."""
    reference, _ = first_crawl
    out = tmp_path / "crawl"
    done = _interrupted_crawl(site, out, monkeypatch)
    partial = out.with_name("crawl.partial")
    last_fetched = [url for url, row in done.items() if row["reason"] == "fetched"][-1]
    lines = (partial / "fetch_log.jsonl").read_text().splitlines(keepends=True)
    kept = [line for line in lines if json.loads(line)["url"] != last_fetched]
    (partial / "fetch_log.jsonl").write_text("".join(kept) + '{"url": "http://cut')  # a line cut mid-write
    warc = sorted((partial / "warc").glob("*.warc.gz"))[-1]
    data = warc.read_bytes()
    with open(warc, "ab") as fh:
        fh.write(data[len(data) // 2 :][:200])  # a record cut off mid-gzip-member
    hits_before = Counter(site.hits)

    run_crawl(_cfg(site), out, {})

    assert (
        site.hits[last_fetched.removeprefix(site.base)]
        == hits_before[last_fetched.removeprefix(site.base)] + 1
    )
    records = _record_set(out)
    assert len(records) == len({u for u, _ in records}), "a record was written twice"
    assert records == _record_set(reference)
    assert set(_log(out)) == set(_log(reference))


def test_partial_of_another_config_is_not_resumed(site, tmp_path, monkeypatch):
    out = tmp_path / "crawl"
    _interrupted_crawl(site, out, monkeypatch)
    hits_before = Counter(site.hits)
    run_crawl(_cfg(site, max_depth=0), out, {})  # another key: a fresh crawl
    assert site.hits["/"] == hits_before["/"] + 1
    assert list(_log(out))[0] == site.base + "/"


def test_page_readers_batch_pages_that_wait_and_read_them_as_inline_reading_does(monkeypatch):
    import asyncio
    import io
    from concurrent.futures import ThreadPoolExecutor

    from cpt_core.ingest import page_reader

    batches = []
    read_pages = page_reader.read_pages
    monkeypatch.setattr(
        page_reader, "read_pages", lambda batch: (batches.append(len(batch)), read_pages(batch))[1]
    )
    res = [
        Response(status=200, status_line="200 OK", headers=[("Content-Type", "text/html")], mime="text/html",
                 body=_page(f"p{i}", LOREM, [f"/p{i + 1}", "x?utm_source=a#top"]).encode(),
                 request_line=f"GET /p{i} HTTP/1.1", request_headers=[("Host", "example.com")])
        for i in range(5)
    ]  # fmt: skip
    args = [(f"http://example.com/p{i}", r, "2025-01-01T00:00:00Z", None) for i, r in enumerate(res)]
    unchanged = hashlib.sha256(res[4].body).hexdigest()
    args[4] = (*args[4][:3], unchanged)

    async def read_all():
        readers = page_reader.PageReaders(ThreadPoolExecutor(1), workers=1)
        return await asyncio.gather(*(readers.read(*a) for a in args))

    reads = asyncio.run(read_all())
    assert batches == [1, 4]  # the first page went at once, the others waited for the busy worker together
    assert [(r.sha256, r.page) for r in reads] == [
        (i.sha256, i.page) for i in (page_reader.read_page(*a) for a in args)
    ]
    assert reads[0].page.links == ["http://example.com/p1", "http://example.com/x"]
    assert reads[4].records is None  # an unchanged body is not stored again
    records = [
        (r.rec_type, r.rec_headers.get_header("WARC-Date"), r.content_stream().read())
        for r in ArchiveIterator(io.BytesIO(reads[0].records))
    ]
    assert records == [
        ("request", "2025-01-01T00:00:00Z", b""),
        ("response", "2025-01-01T00:00:00Z", res[0].body),
    ]


def test_page_readers_read_inline_until_their_workers_have_started():
    import asyncio
    from concurrent.futures import Future, ThreadPoolExecutor

    from cpt_core.ingest import page_reader

    class Counting(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args, **kwargs):
            Counting.submitted += 1
            return super().submit(*args, **kwargs)

    res = Response(status=200, status_line="200 OK", headers=[("Content-Type", "text/html")], mime="text/html",
                   body=_page("p", LOREM, ["/q"]).encode(), request_line="GET /p HTTP/1.1")  # fmt: skip
    args = ("http://example.com/p", res, "2025-01-01T00:00:00Z", None)
    started: Future = Future()
    readers = page_reader.PageReaders(Counting(1), workers=1, started=started)
    early = asyncio.run(readers.read(*args))
    assert Counting.submitted == 0  # read on the event loop: the worker was not up yet
    started.set_result(None)
    late = asyncio.run(readers.read(*args))
    assert Counting.submitted == 1
    readers.shutdown()
    assert (early.sha256, early.page) == (late.sha256, late.page) == page_reader.read_page(*args)[:2]
    assert early.page.links == ["http://example.com/q"]
