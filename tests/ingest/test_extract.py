"""Extraction from hand-written WARC files: charsets, dates, drops with reasons, stable ids."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from cpt_core.ingest.extract import ExtractConfig, decode_html, run_extract, url_id

KO = "대한민국의 수도 서울에서는 오늘 새로운 시립 도서관이 문을 열었다. 시민들은 개관 첫날부터 많은 책을 빌려 갔다."
KO_LONG = (
    "부산 해운대 해수욕장은 올여름 역대 가장 많은 방문객을 맞았다. 시는 안전 요원을 두 배로 늘렸고, "
    "상인들은 밤늦게까지 가게 문을 열었다. 관광객들은 바다와 모래사장, 그리고 저녁 불꽃놀이를 즐겼다. "
    "전문가들은 내년에도 방문객이 계속 늘어날 것이라고 내다봤다."
)
FR = "Le café de la gare est très apprécié des habitants : on y déguste une crème brûlée à l'été comme à l'hiver."
EN = (
    "The harbour authority opened a new ferry terminal on Monday, doubling the number of daily crossings. "
    * 2
)


def _html(title: str, text: str, head: str = "") -> str:
    return (
        f"<html><head><title>{title}</title>{head}</head><body><article><p>{text}</p></article></body></html>"
    )


def _record(
    writer: WARCWriter, url: str, body: bytes, content_type: str, payload_type: str | None = "text/html"
):
    headers = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
    warc_headers = {"WARC-Date": "2025-01-02T03:04:05Z"}
    if payload_type:
        warc_headers["WARC-Identified-Payload-Type"] = payload_type
    writer.write_record(
        writer.create_warc_record(
            url, "response", payload=io.BytesIO(body), http_headers=headers, warc_headers_dict=warc_headers
        )
    )


PAGES = {
    # (body, Content-Type header, WARC payload type)
    "https://ko.example/utf8-says-latin1": (_html("서울", KO).encode("utf-8"), "text/html; charset=iso-8859-1", "text/html"),
    "https://ko.example/euckr-meta": (
        _html("부산", KO_LONG, '<meta charset="euc-kr">').encode("euc-kr"), "text/html", "text/html",
    ),
    "https://ko.example/euckr-undeclared": (_html("부산", KO_LONG).encode("euc-kr"), "text/html", "text/html"),
    "https://fr.example/latin1": (_html("Café", FR).encode("latin-1"), "text/html; charset=ISO-8859-1", "text/html"),
    "https://en.example/dated": (
        _html("Ferry", EN, '<meta property="article:published_time" content="2023-11-20">').encode(),
        "text/html; charset=utf-8",
        "text/html",
    ),
    "https://en.example/no-payload-type": (_html("Ferry 2", EN).encode(), "text/html", None),
    "https://en.example/thin": (b"<html><body><nav>Home</nav></body></html>", "text/html", "text/html"),
    "https://en.example/report.pdf": (b"%PDF-1.4 binary", "application/pdf", "application/pdf"),
}  # fmt: skip


@pytest.fixture(scope="module")
def crawl_dir(tmp_path_factory) -> Path:
    crawl = tmp_path_factory.mktemp("run") / "crawl"
    (crawl / "warc").mkdir(parents=True)
    with open(crawl / "warc" / "crawl-00000.warc.gz", "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for url, (body, ctype, ptype) in PAGES.items():
            _record(writer, url, body, ctype, ptype)
    return crawl


def _docs(folder: Path) -> list[dict]:
    docs = []
    for path in sorted(folder.glob("*.jsonl*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            docs.extend(json.loads(line) for line in fh)
    return docs


@pytest.fixture(scope="module")
def extracted(crawl_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "extract"
    manifest = run_extract(ExtractConfig(min_chars=30), crawl_dir, out)
    return out, manifest


def test_text_charset_date_and_ids(extracted):
    out, manifest = extracted
    docs = {d["metadata"]["url"]: d for d in _docs(out / "documents")}
    assert KO in docs["https://ko.example/utf8-says-latin1"]["text"]
    assert docs["https://ko.example/utf8-says-latin1"]["metadata"]["charset"] == "utf_8"
    for url in ("https://ko.example/euckr-meta", "https://ko.example/euckr-undeclared"):
        assert "해운대 해수욕장은 올여름" in docs[url]["text"], url
        assert docs[url]["metadata"]["charset"] in ("cp949", "euc_kr"), url
    assert FR in docs["https://fr.example/latin1"]["text"]  # a right declaration is kept
    assert docs["https://fr.example/latin1"]["metadata"]["charset"] == "cp1252"
    assert docs["https://en.example/dated"]["metadata"]["published_at"] == "2023-11-20"
    assert "https://en.example/no-payload-type" in docs
    for url, doc in docs.items():
        assert doc["id"] == url_id(url)
        assert doc["metadata"]["fetched_at"] == "2025-01-02T03:04:05Z"

    summary = manifest["summary"]
    assert summary["docs_in"] == 7 and summary["records_skipped"] == 1  # the PDF record is not a document
    assert summary["docs_out"] == 6 and summary["dropped"] == {"empty": 1}
    assert summary["chars_out"] == sum(len(d["text"]) for d in docs.values())
    dropped = _docs(out / "dropped")
    assert [(d["metadata"]["url"], d["metadata"]["filter_reason"]) for d in dropped] == [
        ("https://en.example/thin", "empty")
    ]


def test_rerun_skipped_and_output_stable(crawl_dir, extracted, tmp_path):
    out, manifest = extracted
    assert run_extract(ExtractConfig(min_chars=30), crawl_dir, out)["skipped"] is True
    other = tmp_path / "extract"
    run_extract(ExtractConfig(min_chars=30), crawl_dir, other)
    first = [(d["id"], d["text"]) for d in _docs(out / "documents")]
    assert first == [(d["id"], d["text"]) for d in _docs(other / "documents")]


def test_extraction_errors_are_counted_drops(crawl_dir, tmp_path, monkeypatch):
    import trafilatura

    real = trafilatura.bare_extraction

    def flaky(html, url=None, **kw):
        if "fr.example" in (url or ""):
            raise RuntimeError("boom")
        return real(html, url=url, **kw)

    # the extractor's worker is forked after this, so it sees the patched function
    monkeypatch.setattr(trafilatura, "bare_extraction", flaky)
    summary = run_extract(ExtractConfig(min_chars=30), crawl_dir, tmp_path / "extract")["summary"]
    assert summary["dropped"] == {"empty": 1, "extract_error": 1}
    errors = [
        d
        for d in _docs(tmp_path / "extract" / "dropped")
        if d["metadata"]["filter_reason"] == "extract_error"
    ]
    assert errors[0]["metadata"]["url"] == "https://fr.example/latin1"
    assert "boom" in errors[0]["metadata"]["extract_error"]


def test_extraction_timeout_is_a_counted_drop(crawl_dir, tmp_path, monkeypatch):
    import time

    import trafilatura

    real = trafilatura.bare_extraction

    def slow(html, url=None, **kw):
        if "fr.example" in (url or ""):
            time.sleep(3)
        return real(html, url=url, **kw)

    monkeypatch.setattr(trafilatura, "bare_extraction", slow)
    out = tmp_path / "extract"
    summary = run_extract(ExtractConfig(timeout_s=1.0, min_chars=30), crawl_dir, out)["summary"]
    assert summary["docs_out"] == 5 and summary["dropped"] == {"empty": 1, "extract_error": 1}
    errors = [d for d in _docs(out / "dropped") if d["metadata"]["filter_reason"] == "extract_error"]
    assert "timeout" in errors[0]["metadata"]["extract_error"]


def test_missing_crawl_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="crawl"):
        run_extract(ExtractConfig(), tmp_path / "no-crawl", tmp_path / "extract")


@pytest.mark.parametrize(
    ("body", "content_type", "text", "charset"),
    [
        (KO.encode("utf-8"), "text/html; charset=iso-8859-1", KO, "utf_8"),
        (
            f'<meta charset="euc-kr"><p>{KO}</p>'.encode("euc-kr"),
            "text/html",
            f'<meta charset="euc-kr"><p>{KO}</p>',
            "cp949",
        ),
        (FR.encode("cp1252"), "text/html; charset=windows-1252", FR, "cp1252"),
        ("\ufeffhello".encode("utf-8"), "text/html; charset=iso-8859-1", "hello", "utf-8-sig"),
        (b"plain ascii", None, "plain ascii", "ascii"),
        # sparse accents in UTF-8 under a Latin-1 header: too little mess for mess_ratio, still UTF-8
        (
            ("The café was nice. " * 20).encode(),
            "text/html; charset=iso-8859-1",
            "The café was nice. " * 20,
            "utf_8",
        ),
        # EUC-KR bytes under a wrong windows-1252 header decode "cleanly" but are mojibake: meta charset wins
        (
            f'<meta charset="euc-kr"><p>{KO}</p>'.encode("euc-kr"),
            "text/html; charset=windows-1252",
            None,
            "cp949",
        ),
    ],
)
def test_decode_html(body, content_type, text, charset):
    decoded, used = decode_html(body, content_type)
    assert used == charset
    assert decoded == (text if text is not None else body.decode("cp949"))


def test_truncated_warc_is_a_named_drop_and_earlier_records_are_kept(crawl_dir, tmp_path):
    crawl = tmp_path / "crawl"
    (crawl / "warc").mkdir(parents=True)
    whole = (crawl_dir / "warc" / "crawl-00000.warc.gz").read_bytes()
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    _record(writer, "https://en.example/last", _html("Last", EN).encode(), "text/html")
    last = buf.getvalue()
    # every page of the fixture, then a record cut off in the middle of its gzip member
    (crawl / "warc" / "crawl-00000.warc.gz").write_bytes(whole + last[: len(last) // 2])
    (crawl / "warc" / "crawl-00001.warc.gz").write_bytes(b"not a warc file at all")

    summary = run_extract(ExtractConfig(min_chars=30), crawl, tmp_path / "extract")["summary"]

    assert summary["dropped"] == {"empty": 1, "truncated_warc": 2}
    assert summary["docs_out"] == 6  # the whole records before the damage
    assert summary["docs_in"] == summary["docs_out"] + sum(summary["dropped"].values())
    places = "\n".join(summary["unreadable"])
    assert "crawl-00000.warc.gz truncated_warc" in places and "crawl-00001.warc.gz truncated_warc" in places


def test_tables_title_source_and_content_hash(tmp_path):
    table = (
        "</p><table><tr><td>Harbour North</td><td>07:40</td></tr>"
        "<tr><td>Harbour South</td><td>08:15</td></tr></table><p>"
    )
    body = _html("Timetable", EN + table + EN).encode()
    crawl = tmp_path / "crawl"
    (crawl / "warc").mkdir(parents=True)
    with open(crawl / "warc" / "crawl-00000.warc.gz", "wb") as fh:
        _record(WARCWriter(fh, gzip=True), "https://en.example/timetable", body, "text/html; charset=utf-8")
    run_extract(ExtractConfig(min_chars=30), crawl, tmp_path / "out")
    (doc,) = _docs(tmp_path / "out" / "documents")
    assert "Harbour South" in doc["text"] and "08:15" in doc["text"]  # tables are kept
    meta = doc["metadata"]
    assert meta["title"] == "Timetable" and meta["source"] == "web" and meta["format"] == "html"
    assert meta["content_hash"] == hashlib.sha256(body).hexdigest()
