"""Internal documents through their parsers: kept texts, metadata, and named drops for bad files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cpt_core.ingest.documents import DocumentError, parse_document
from cpt_core.ingest.extract import ExtractConfig, run_extract
from cpt_core.ingest.sources import DocumentsSource
from tests.doc_files import read_docs

PDF_TEXT = "Quarterly revenue rose by twelve percent"


def pdf_bytes(text: str, password: str | None = None) -> bytes:
    """A one-page PDF showing ``text`` (Helvetica), optionally encrypted with ``password``."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    stream = DecodedStreamObject()
    stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
    page[NameObject("/Contents")] = writer._add_object(stream)
    writer.add_metadata({"/Title": "Q3 report"})
    if password:
        writer.encrypt(password, algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = "Onboarding memo"
    document.add_paragraph("New staff receive their badge on the first Monday of the month.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Building"
    table.rows[0].cells[1].text = "North wing"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


VTT = """WEBVTT

NOTE speaker notes are not text

00:00:01.000 --> 00:00:04.000
<v Ana>Welcome to the quarterly all-hands meeting.

00:00:04.000 --> 00:00:08.000
<v Ana>Welcome to the quarterly all-hands meeting.
We start with the roadmap for next year.
"""
SRT = """1
00:00:01,000 --> 00:00:03,000
The warehouse moves to Busan in March.

2
00:00:03,500 --> 00:00:06,000
Shipping times drop by two days.
"""


@pytest.fixture
def folder(tmp_path) -> Path:
    docs = tmp_path / "docs"
    (docs / "team").mkdir(parents=True)
    (docs / "report.pdf").write_bytes(pdf_bytes(PDF_TEXT))
    (docs / "owner-only.pdf").write_bytes(pdf_bytes(PDF_TEXT + " again", password=""))
    (docs / "secret.pdf").write_bytes(pdf_bytes("hidden", password="pw"))
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage without xref")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "memo.docx").write_bytes(docx_bytes())
    (docs / "team" / "notes.md").write_text("# Team notes\n\nThe design review moved to Thursday afternoon.\n")
    (docs / "team" / "readme.txt").write_text("Plain notes: the coffee machine on floor two is fixed.\n")
    (docs / "team" / "allhands.vtt").write_text(VTT)
    (docs / "team" / "logistics.srt").write_text(SRT)
    (docs / "team" / "page.html").write_text(
        "<html><head><title>Wiki page</title></head><body><article><p>The VPN certificate is renewed "
        "every ninety days by the platform team.</p></article></body></html>"
    )
    (docs / "photo.png").write_bytes(b"\x89PNG\r\n")
    return docs


def test_folder_of_documents_kept_and_bad_files_named_drops(folder, tmp_path):
    source = DocumentsSource(name="intranet", path=str(folder))
    manifest = run_extract(ExtractConfig(min_chars=10), None, tmp_path / "out", sources=[source])
    summary = manifest["summary"]
    docs = {Path(d["metadata"]["path"]).name: d for d in read_docs(tmp_path / "out" / "documents")}

    assert set(docs) == {"report.pdf", "owner-only.pdf", "memo.docx", "notes.md", "readme.txt",
                         "allhands.vtt", "logistics.srt", "page.html"}
    assert summary["dropped"] == {"corrupt": 1, "empty_file": 1, "encrypted": 1}
    assert summary["docs_in"] == 11 and summary["docs_out"] == 8 and summary["files_skipped"] == 1
    unreadable = " ".join(summary["unreadable"])
    assert "secret.pdf" in unreadable and "broken.pdf" in unreadable and "empty.txt" in unreadable
    dropped = {Path(d["metadata"]["path"]).name: d["metadata"] for d in read_docs(tmp_path / "out" / "dropped")}
    assert dropped["secret.pdf"]["drop_reason"] == "encrypted"
    assert "secret.pdf" in dropped["secret.pdf"]["drop_error"]

    assert PDF_TEXT in docs["report.pdf"]["text"] and docs["report.pdf"]["metadata"]["title"] == "Q3 report"
    assert "badge" in docs["memo.docx"]["text"] and "Building | North wing" in docs["memo.docx"]["text"]
    assert docs["memo.docx"]["metadata"]["title"] == "Onboarding memo"
    assert docs["notes.md"]["metadata"]["title"] == "Team notes"
    assert docs["allhands.vtt"]["text"] == (
        "Welcome to the quarterly all-hands meeting.\nWe start with the roadmap for next year."
    )
    assert "-->" not in docs["logistics.srt"]["text"] and "Busan" in docs["logistics.srt"]["text"]
    assert "VPN certificate" in docs["page.html"]["text"] and docs["page.html"]["metadata"]["title"] == "Wiki page"
    for doc in docs.values():
        meta = doc["metadata"]
        assert meta["source"] == "intranet" and meta["modified_at"] and meta["fetched_at"]
        assert len(meta["content_hash"]) == 64 and "published_at" in meta and "charset" in meta


def test_rerun_skips_and_a_changed_folder_is_read_again(folder, tmp_path):
    source = DocumentsSource(path=str(folder))
    first = run_extract(ExtractConfig(min_chars=10), None, tmp_path / "out", sources=[source])
    assert run_extract(ExtractConfig(min_chars=10), None, tmp_path / "out", sources=[source])["skipped"]
    (folder / "team" / "new.md").write_text("# New\n\nA new page about the parking garage opening hours.\n")
    again = run_extract(ExtractConfig(min_chars=10), None, tmp_path / "out", sources=[source])
    assert not again["skipped"] and again["summary"]["docs_out"] == first["summary"]["docs_out"] + 1


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [("x.pdf", b"not a pdf at all", "corrupt"), ("x.docx", b"PK\x03\x04 truncated zip", "corrupt"),
     ("x.md", b"  \n\n ", "empty_file"), ("x.vtt", b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n", "empty_file")],
)
def test_parse_errors_carry_a_reason(name, data, reason):
    with pytest.raises(DocumentError) as err:
        parse_document(name, data)
    assert err.value.reason == reason


def test_drop_rows_are_json(folder, tmp_path):
    run_extract(ExtractConfig(min_chars=10), None, tmp_path / "out", sources=[DocumentsSource(path=str(folder))])
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["summary"]["formats"]["pdf"] == 2
