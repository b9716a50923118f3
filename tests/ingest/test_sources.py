"""The typed source list: validation, one crawl for several web sources, WARC sources, and credentials that
never leave the process."""

from __future__ import annotations

import functools
import http.server
import io
import logging
import threading
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from cpt_core.config import ConfigError, apply_overrides, validate_config
from cpt_core.ingest.extract import ExtractConfig, run_extract
from cpt_core.ingest.sources import DocumentsSource, WarcSource, storage_options
from tests.doc_files import read_docs

ARTICLE = (
    "<html><head><title>{title}</title></head><body><article><p>{text}</p></article></body></html>"
)
TEXT = "The river ferry now runs every twenty minutes between the two harbours, all year round."


def _write_warc(path: Path, pages: dict[str, str]) -> Path:
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for url, title in pages.items():
            body = ARTICLE.format(title=title, text=f"{title}. {TEXT}").encode()
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(
                url, "response", payload=io.BytesIO(body), http_headers=headers,
                warc_headers_dict={"WARC-Identified-Payload-Type": "text/html", "WARC-Date": "2025-01-02T03:04:05Z"},
            ))
    return path


def test_sources_are_a_discriminated_union_with_named_errors():
    cfg = validate_config({"ingest": {"sources": [
        {"kind": "web", "crawl": {"seed_urls": ["https://a.example/"]}},
        {"kind": "documents", "path": "/srv/docs"},
        {"kind": "warc", "name": "cc", "paths": ["s3://commoncrawl/crawl-data/x.warc.gz"]},
    ]}})
    assert [s.kind for s in cfg.ingest.sources] == ["web", "documents", "warc"]
    assert [s.name for s in cfg.ingest.sources] == ["web", "documents", "cc"]
    with pytest.raises(ConfigError, match=r"ingest\.sources\.0"):
        validate_config({"ingest": {"sources": [{"kind": "ftp"}]}})
    with pytest.raises(ConfigError, match=r"ingest\.sources\.0\.documents\.pathh"):
        validate_config({"ingest": {"sources": [{"kind": "documents", "path": "x", "pathh": "y"}]}})
    with pytest.raises(ConfigError, match="source names must differ"):
        validate_config({"ingest": {"sources": [{"kind": "documents", "path": "a"}, {"kind": "documents", "path": "b"}]}})
    with pytest.raises(ConfigError, match="seed is the served site"):
        validate_config({"ingest": {"sources": [{"kind": "demo", "crawl": {"seed_urls": ["http://x/"]}}]}})
    with pytest.raises(ConfigError, match="secret_env or secret_block"):
        validate_config({"ingest": {"sources": [{"kind": "documents", "path": "s3://k:hunter2@bucket/docs"}]}})


def test_web_sources_share_one_crawl():
    cfg = validate_config({"ingest": {"sources": [
        {"kind": "web", "name": "news", "crawl": {"seed_urls": ["https://news.example/"], "max_pages": 50}},
        {"kind": "web", "name": "blog", "crawl": {"seed_urls": ["https://blog.example/"], "max_pages": 50,
                                                  "allowed_hosts": ["blog.example", "cdn.example"]}},
    ]}})
    crawl = cfg.ingest.crawl
    assert crawl.seed_urls == ["https://news.example/", "https://blog.example/"]
    # an empty allowed_hosts means "the seeds' hosts": made explicit so the other source does not narrow it
    assert crawl.allowed_hosts == ["news.example", "blog.example", "cdn.example"]
    assert crawl.max_pages == 50
    with pytest.raises(ConfigError, match=r"crawl\.max_pages differs"):
        validate_config({"ingest": {"sources": [
            {"kind": "web", "name": "a", "crawl": {"max_pages": 5}},
            {"kind": "web", "name": "b", "crawl": {"max_pages": 6}},
        ]}})
    assert validate_config({}).ingest.crawl is None


def test_overrides_index_the_source_list():
    data = {"ingest": {"sources": [{"kind": "demo", "site": {"port": 1}}]}}
    cfg = validate_config(apply_overrides(data, ["ingest.sources.0.site.port=8080", "ingest.sources.0.crawl.max_pages=7"]))
    assert cfg.ingest.demo.site.port == 8080 and cfg.ingest.crawl.max_pages == 7
    with pytest.raises(ConfigError, match="not an index"):
        apply_overrides(data, ["ingest.sources.3.site.port=1"])


def test_warc_and_documents_sources_combine_in_one_extract(tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    _write_warc(archive / "a.warc.gz", {"https://old.example/1": "First", "https://old.example/2": "Second"})
    single = _write_warc(tmp_path / "cc.warc.gz", {"https://cc.example/p": "Third"})
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "memo.md").write_text("# Memo\n\n" + TEXT + "\n")
    sources = [
        WarcSource(name="archive", paths=[str(archive), str(single)]),
        DocumentsSource(name="memos", path=str(docs)),
    ]
    manifest = run_extract(ExtractConfig(min_chars=20), None, tmp_path / "out", sources=sources)
    rows = read_docs(tmp_path / "out" / "documents")
    by_source = sorted((d["metadata"]["source"], d["metadata"].get("url") or Path(d["metadata"]["path"]).name) for d in rows)
    assert by_source == [("archive", "https://cc.example/p"), ("archive", "https://old.example/1"),
                         ("archive", "https://old.example/2"), ("memos", "memo.md")]
    assert manifest["summary"]["docs_out"] == 4
    first = next(d for d in rows if d["metadata"].get("url") == "https://old.example/1")
    assert first["metadata"]["title"] == "First" and first["metadata"]["fetched_at"] == "2025-01-02T03:04:05Z"
    assert first["metadata"]["charset"] == "ascii" and len(first["metadata"]["content_hash"]) == 64


class _TokenHandler(http.server.SimpleHTTPRequestHandler):
    token = ""

    def _allowed(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.token}":
            return True
        self.send_error(401)
        return False

    def do_GET(self):
        if self._allowed():
            super().do_GET()

    def do_HEAD(self):
        if self._allowed():
            super().do_HEAD()

    def log_message(self, *args):
        pass


@pytest.fixture
def private_site(tmp_path):
    """A folder of documents behind a bearer token, served on 127.0.0.1."""
    root = tmp_path / "site"
    (root / "docs" / "sub").mkdir(parents=True)
    (root / "docs" / "plan.md").write_text("# Plan\n\n" + TEXT + "\n")
    (root / "docs" / "sub" / "faq.txt").write_text("Where is the archive? " + TEXT + "\n")
    handler = type("Handler", (_TokenHandler,), {"token": "tok-PLANTED-7f3a9c"})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/docs/", "tok-PLANTED-7f3a9c"
    server.shutdown()
    server.server_close()


def test_credentials_come_from_the_environment_and_are_never_written(private_site, tmp_path, monkeypatch, caplog):
    url, secret = private_site
    source = DocumentsSource(name="private", path=url, secret_env="DOCS_TOKEN")
    with pytest.raises(KeyError, match="DOCS_TOKEN"):
        run_extract(ExtractConfig(min_chars=20), None, tmp_path / "out", sources=[source])
    monkeypatch.setenv("DOCS_TOKEN", secret)
    caplog.set_level(logging.DEBUG)
    manifest = run_extract(ExtractConfig(min_chars=20), None, tmp_path / "out", sources=[source])
    names = sorted(Path(d["metadata"]["path"]).name for d in read_docs(tmp_path / "out" / "documents"))
    assert names == ["faq.txt", "plan.md"] and manifest["summary"]["docs_out"] == 2

    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.name == "executor.json" for p in written)  # datatrove's dump of the pipeline steps
    for path in written:
        data = path.read_bytes()
        if path.suffix == ".gz":
            import gzip

            data = gzip.decompress(data)
        assert secret.encode() not in data, f"the secret leaked into {path}"
    assert secret not in caplog.text


def test_secret_block_and_json_storage_options(tmp_path, monkeypatch):
    http_source = DocumentsSource(path="https://intranet.example/docs", secret_block="intranet-token")
    options = storage_options(http_source, lambda name: {"intranet-token": "abc"}[name])
    assert options.options == {"headers": {"Authorization": "Bearer abc"}}
    assert "abc" not in repr(options) and "abc" not in str(options)
    with pytest.raises(ValueError, match="needs Prefect"):
        storage_options(http_source)
    s3 = DocumentsSource(path="s3://bucket/docs", secret_env="S3_CREDS", storage_options={"endpoint_url": "http://x"})
    monkeypatch.setenv("S3_CREDS", '{"key": "AK", "secret": "SK"}')
    assert storage_options(s3).options == {"endpoint_url": "http://x", "key": "AK", "secret": "SK"}
    monkeypatch.setenv("S3_CREDS", "bare-token")
    with pytest.raises(ValueError, match="bare token"):
        storage_options(s3)
