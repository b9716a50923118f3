"""Crawl state in ``state/crawl.sqlite``: visibility by run outcome, resume, recrawl policy, concurrency, migration."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sqlite3
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from cpt_core.ingest import crawl as crawl_mod
from cpt_core.ingest import crawl_db
from cpt_core.ingest.crawl import CrawlConfig, crawl_with_state
from cpt_core.ingest.crawl_db import CrawlDB, RunRows, is_fresh, parse_time, row_from_log
from cpt_core.state import record_outcome
from tests.ingest.conftest import serving

TEXT = "The harbour hall opened its doors again after the storm, and the town came to see it. " * 3


def _page(title: str, links: list[str]) -> bytes:
    anchors = "".join(f'<a href="{href}">{href}</a>' for href in links)
    return f"<html><head><title>{title}</title></head><body>{anchors}<p>{title}: {TEXT}</p></body></html>".encode()


class Site:
    """Pages with ETags (``/noetag`` without), a sitemap whose ``<lastmod>`` values tests set; ``hits`` per path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.base = ""
        self.lastmod: dict[str, str] = {}
        self.pages = {
            "/": _page("Home", ["/a", "/b", "/noetag"]),
            "/a": _page("Alpha", ["/a/deep"]),
            "/a/deep": _page("Deep", []),
            "/b": _page("Bravo", []),
            "/noetag": _page("No ETag", []),
        }

    def sitemap(self) -> bytes:
        entries = "".join(
            f"<url><loc>{self.base}{path}</loc>"
            + (f"<lastmod>{self.lastmod[path]}</lastmod>" if path in self.lastmod else "")
            + "</url>"
            for path in ("/a", "/b")
        )
        return f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'.encode()


def _handler(site: Site):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            site.hits[self.path] += 1
            if self.path == "/sitemap.xml":
                return self._send(200, "application/xml", site.sitemap(), None)
            body = site.pages.get(self.path)
            if body is None:
                return self._send(404, "text/html", b"<html>no</html>", None)
            etag = None if self.path == "/noetag" else '"' + hashlib.sha1(body).hexdigest()[:12] + '"'
            if etag and self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return None
            return self._send(200, "text/html; charset=utf-8", body, etag)

        def _send(self, status: int, ctype: str, body: bytes, etag: str | None) -> None:
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
    base = dict(
        seed_urls=[site.base + "/"], sitemaps=[site.base + "/sitemap.xml"], robots_sitemaps=False,
        respect_robots=False, timeout_s=2.0, retries=0, delay_s=0.0, allow_private_hosts=["127.0.0.1"],
    )  # fmt: skip
    return CrawlConfig(**(base | kw))


def _crawl(site: Site, root: Path, run_id: str, **kw) -> dict:
    return crawl_with_state(_cfg(site, **kw), root / "runs" / run_id / "crawl", root / "state", run_id)


def _reasons(root: Path, run_id: str) -> dict[str, str]:
    rows = [json.loads(x) for x in (root / "runs" / run_id / "crawl" / "fetch_log.jsonl").read_text().splitlines()]
    return {r["url"].split(":", 2)[2].split("/", 1)[1]: r["reason"] for r in rows}


def _warc(out: Path) -> list[tuple[str, bytes]]:
    found = []
    for path in sorted((out / "warc").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            found += [
                (r.rec_headers.get_header("WARC-Target-URI"), r.content_stream().read())
                for r in ArchiveIterator(fh)
                if r.rec_type == "response"
            ]
    return found


PAGES = {"", "a", "a/deep", "b", "noetag"}


def test_failed_and_rejected_runs_are_invisible_and_unchanged_pages_are_not_emitted(site, tmp_path):
    _crawl(site, tmp_path, "r1-failed")  # no outcome: as a crash after the crawl
    r2 = _crawl(site, tmp_path, "r2-rejected")
    assert {p: r for p, r in _reasons(tmp_path, "r2-rejected").items() if p in PAGES} == dict.fromkeys(PAGES, "fetched")
    record_outcome(tmp_path / "state", "r2-rejected", "rejected")
    r3 = _crawl(site, tmp_path, "r3-promoted")
    assert r3["summary"]["fetched"] == 5, "a rejected run's pages are fetched again"
    assert r3["key"] == r2["key"], "the same (empty) visible state: the same crawl key"
    record_outcome(tmp_path / "state", "r3-promoted", "promoted")

    r4 = _crawl(site, tmp_path, "r4")
    assert r4["key"] != r3["key"], "the visible state changed: the crawl key changes"
    reasons = _reasons(tmp_path, "r4")
    assert {p: reasons[p] for p in PAGES} == dict.fromkeys(PAGES, "unchanged")
    assert r4["summary"]["fetched"] == 0 and r4["summary"]["dropped"]["unchanged"] == 5
    assert _warc(tmp_path / "runs" / "r4" / "crawl") == [], "unchanged pages are not emitted again"
    rows = [json.loads(x) for x in (tmp_path / "runs/r4/crawl/fetch_log.jsonl").read_text().splitlines()]
    status = {r["url"].removeprefix(site.base): r["status"] for r in rows}
    assert status["/a"] == 304 and status["/noetag"] == 200  # same body hash without an ETag
    with CrawlDB(tmp_path / "state") as db:
        assert sorted(db.runs()) == ["r1-failed", "r2-rejected", "r3-promoted", "r4"]
        mine = db.rows("r4")
    assert mine[site.base + "/a"]["status"] == 304 and json.loads(mine[site.base + "/a"]["links"])


def test_later_visible_run_wins(tmp_path):
    with CrawlDB(tmp_path) as db:
        for run, etag in (("r1", "old"), ("r2", "new")):
            rows = RunRows(db, run)
            rows.add({"url": "u", "etag": etag, "content_hash": "h", "links": "[]"})
            if run == "r1":
                rows.add({"url": "v", "etag": "v1", "content_hash": "h", "links": "[]"})
            rows.flush()
        assert db.visible(["r1", "r2"])["u"]["etag"] == "new"
        assert db.visible(["r2", "r1"])["u"]["etag"] == "old"
        assert set(db.visible(["r1", "r2"])) == {"u", "v"} and set(db.visible(["r2"])) == {"u"}
        assert db.visible([]) == {} and db.visible(["missing"]) == {}
        RunRows(db, "r1").reset([])  # the run id crawls again from scratch: its old rows go
        assert db.visible(["r1"]) == {}


class _Stop(Exception):
    pass


def test_interrupted_crawl_resumes_without_refetching(site, tmp_path, monkeypatch):
    monkeypatch.setattr(crawl_mod, "PROGRESS_EVERY", 1)
    monkeypatch.setattr(crawl_db, "BATCH_ROWS", 1)

    def stop_after(done, total, message):  # noqa: ARG001
        if done >= 4:
            raise _Stop

    out, state = tmp_path / "runs" / "r" / "crawl", tmp_path / "state"
    with pytest.raises(_Stop):
        crawl_with_state(_cfg(site), out, state, "r", progress=stop_after)
    with CrawlDB(state) as db:
        written = db.rows("r")
        # as after a kill: the last batch never reached the database, and a row no log line backs is there
        RunRows(db, "r").reset([{"url": "http://stale.invalid/", "content_hash": "x", "links": "[]"}])
    assert written, "rows are written as pages are fetched, not only at the end"
    hits = Counter(site.hits)
    manifest = crawl_with_state(_cfg(site), out, state, "r")
    for url in written:
        assert site.hits[url.removeprefix(site.base)] == hits[url.removeprefix(site.base)], f"{url} fetched again"
    assert manifest["summary"]["resumed"] >= len(written)

    reference = crawl_with_state(_cfg(site), tmp_path / "runs" / "ref" / "crawl", state, "ref")
    assert _warc(out) == _warc(tmp_path / "runs" / "ref" / "crawl")
    assert _reasons(tmp_path, "r") == _reasons(tmp_path, "ref")
    assert manifest["summary"]["fetched"] == reference["summary"]["fetched"] == 5
    with CrawlDB(state) as db:
        mine, ref = db.rows("r"), db.rows("ref")
    assert {u: r["content_hash"] for u, r in mine.items()} == {u: r["content_hash"] for u, r in ref.items()}


def test_recrawl_by_age_and_by_sitemap_lastmod(site, tmp_path):
    _crawl(site, tmp_path, "r1")
    record_outcome(tmp_path / "state", "r1", "promoted")
    hits = Counter(site.hits)
    fresh = _crawl(site, tmp_path, "r2", recrawl_after_hours=24)
    assert {p: r for p, r in _reasons(tmp_path, "r2").items() if p in PAGES} == dict.fromkeys(PAGES, "fresh")
    assert all(site.hits[p] == hits[p] for p in ("/", "/a", "/a/deep", "/b", "/noetag")), "fresh pages are asked"
    assert fresh["summary"]["requests"] == 0 and fresh["summary"]["dropped"]["fresh"] == 5

    site.lastmod["/b"] = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%d")
    site.lastmod["/a"] = "2000-01-01"
    hits = Counter(site.hits)
    _crawl(site, tmp_path, "r3", recrawl_after_hours=24)
    reasons = _reasons(tmp_path, "r3")
    assert reasons["b"] == "unchanged" and site.hits["/b"] == hits["/b"] + 1, "a newer lastmod forces a request"
    assert reasons["a"] == "fresh" and site.hits["/a"] == hits["/a"]

    _crawl(site, tmp_path, "r4", recrawl_after_hours=1e-9)  # every fetch is older than that: asked again
    assert {p: r for p, r in _reasons(tmp_path, "r4").items() if p in PAGES} == dict.fromkeys(PAGES, "unchanged")


def test_is_fresh_rules():
    now = datetime(2025, 6, 1, 12, tzinfo=timezone.utc)
    prev = {"sha256": "h", "fetched_at": "2025-06-01T06:00:00Z"}
    assert is_fresh(prev, None, 24, now) and not is_fresh(prev, None, 0, now) and not is_fresh(prev, None, 6, now)
    assert is_fresh(prev, "2025-05-31", 24, now) and not is_fresh(prev, "2025-06-01T08:00:00+00:00", 24, now)
    assert is_fresh(prev, "not a date", 24, now) and not is_fresh(None, None, 24, now)
    assert not is_fresh({"sha256": "h"}, None, 24, now)
    assert parse_time("2025-06-01T10:00:00+09:00") == datetime(2025, 6, 1, 1, tzinfo=timezone.utc)


def test_concurrent_writers_lose_nothing(tmp_path):
    def write(run: str) -> None:
        with CrawlDB(tmp_path) as db:
            rows = RunRows(db, run)
            for i in range(230):
                rows.add({"url": f"https://example.com/{run}/{i}", "content_hash": str(i), "links": "[]"})
            rows.flush()
            db.visible(["w0", "w1"])  # readers alongside the writers

    threads = [threading.Thread(target=write, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with CrawlDB(tmp_path) as db:
        assert {run: len(db.rows(run)) for run in db.runs()} == {f"w{i}": 230 for i in range(4)}
        assert db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_frontier_files_of_earlier_versions_are_imported_once(tmp_path):
    folder = tmp_path / "frontier"
    folder.mkdir()
    entry = {"etag": "e1", "last_modified": None, "sha256": "h1", "links": ["https://x/b"]}
    (folder / "r1.json").write_text(json.dumps({"https://x/a": entry}))
    (folder / "r2.json").write_text(json.dumps({"https://x/a": {**entry, "etag": "e2"}}))
    with CrawlDB(tmp_path) as db:
        assert db.visible(["r1", "r2"])["https://x/a"]["etag"] == "e2"
        assert db.visible(["r1"])["https://x/a"] == {
            "status": 200, "fetched_at": None, "etag": "e1", "last_modified": None, "sha256": "h1",
            "sitemap_lastmod": None, "links": ["https://x/b"],
        }  # fmt: skip
    (folder / "r3.json").write_text("{not json")  # written after the import: never read
    with CrawlDB(tmp_path) as db:
        assert db.runs() == ["r1", "r2"]


def test_bad_frontier_file_and_other_schema_version_are_clear_errors(tmp_path):
    (tmp_path / "a" / "frontier").mkdir(parents=True)
    (tmp_path / "a" / "frontier" / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        CrawlDB(tmp_path / "a")
    CrawlDB(tmp_path / "b").close()
    with sqlite3.connect(tmp_path / "b" / "crawl.sqlite") as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ValueError, match="schema version 99"):
        CrawlDB(tmp_path / "b")


def test_failures_get_rows_but_the_last_good_fetch_stays_the_reference(tmp_path):
    good = {"url": "u", "reason": "fetched", "status": 200, "etag": "e1", "sha256": "h1", "links": ["v"]}
    with CrawlDB(tmp_path) as db:
        RunRows(db, "r1").reset([row_from_log(good)])
        RunRows(db, "r2").reset([
            row_from_log({"url": "u", "reason": "http_503", "status": 503, "retries": 2}),
            row_from_log({"url": "w", "reason": "timeout", "status": None, "error": "ReadTimeout"}),
        ])  # fmt: skip
        assert row_from_log({"url": "x", "reason": "robots"}) is None
        assert db.visible(["r1", "r2"]) == db.visible(["r1"]), "a failure does not replace the reference"
        assert db.visible(["r1", "r2"])["u"]["etag"] == "e1" and "w" not in db.visible(["r2"])
        failed = db.failures(["r1", "r2"])
        assert {u: (r["status"], r["reason"], r["run_id"]) for u, r in failed.items()} == {
            "u": (503, "http_503", "r2"), "w": (None, "timeout", "r2"),
        }  # fmt: skip
        assert failed["w"]["error"] == "ReadTimeout"
        RunRows(db, "r3").reset([row_from_log({**good, "etag": "e3"})])
        assert set(db.failures(["r1", "r2", "r3"])) == {"w"}, "a later good fetch clears the failure"
        assert db.visible(["r1", "r2", "r3"])["u"]["etag"] == "e3"


def test_version_1_database_gains_failure_rows(tmp_path):
    with sqlite3.connect(tmp_path / "crawl.sqlite") as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute(
            "CREATE TABLE pages (run_id TEXT NOT NULL, url TEXT NOT NULL, status INTEGER, fetched_at TEXT, "
            "etag TEXT, last_modified TEXT, content_hash TEXT, sitemap_lastmod TEXT, "
            "links TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (run_id, url))"
        )
        conn.execute("INSERT INTO pages (run_id, url, etag, content_hash) VALUES ('r1', 'u', 'e1', 'h1')")
    with CrawlDB(tmp_path) as db:
        assert db.meta("schema_version") == "2" and db.visible(["r1"])["u"]["etag"] == "e1"
        RunRows(db, "r2").reset([row_from_log({"url": "u", "reason": "http_404", "status": 404})])
        assert db.failures(["r1", "r2"])["u"]["status"] == 404


def _write_rows_in_a_process(state_dir: str, run: str, start, n: int) -> None:
    start.wait()  # both processes write at the same moment
    with CrawlDB(state_dir) as db:
        rows = RunRows(db, run)
        for i in range(n):
            log = {"url": f"https://example.com/{i}", "reason": "fetched", "status": 200, "sha256": f"{run}{i}"}
            if i % 3 == 0:
                log = {"url": f"https://example.com/{i}", "reason": "http_500", "status": 500}
            rows.add(row_from_log(log))
        rows.flush()


def test_two_processes_writing_at_once_lose_no_rows(tmp_path):
    CrawlDB(tmp_path).close()  # created (WAL) before the race, as a run's state folder is
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_write_rows_in_a_process, args=(str(tmp_path), f"p{i}", start, 400)) for i in range(2)]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    with CrawlDB(tmp_path) as db:
        assert db.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for run in ("p0", "p1"):
            good, failed = db.rows(run), db.rows(run, failures=True)
            assert len(good) == 266 and len(failed) == 134, run
            assert all(row["content_hash"] == f"{run}{url.rsplit('/', 1)[1]}" for url, row in good.items())
            assert {row["status"] for row in failed.values()} == {500}
