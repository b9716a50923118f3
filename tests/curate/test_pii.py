"""PII redaction: typed placeholders and counts, and the look-alikes that must survive."""

from __future__ import annotations

import pytest

from cpt_core.curate.pii import PIIConfig, luhn_ok, redact
from cpt_core.curate.pipeline import CurateConfig, run_curate_step
from tests.curate.test_quality import EN_ARTICLE
from tests.doc_files import read_docs, write_docs


@pytest.mark.parametrize(
    "text, expected, kind",
    [
        ("write to kim.minsu@example.co.kr today", "write to <EMAIL> today", "email"),
        ("휴대폰 010-1234-5678 로 연락", "휴대폰 <PHONE> 로 연락", "phone"),
        ("mobile 01012345678.", "mobile <PHONE>.", "phone"),
        ("call +82 10-1234-5678", "call <PHONE>", "phone"),
        ("office +82-2-1234-5678", "office <PHONE>", "phone"),
        ("서울 02-123-4567", "서울 <PHONE>", "phone"),
        ("London +44 20 7946 0958", "London <PHONE>", "phone"),
        ("US (555) 123-4567", "US <PHONE>", "phone"),
        ("주민등록번호 900101-1234567 입니다", "주민등록번호 <RRN> 입니다", "rrn"),
        ("card 4111 1111 1111 1111 ok", "card <CARD> ok", "card"),
        ("card 5500-0000-0000-0004", "card <CARD>", "card"),
        ("host 203.0.113.7 up", "host <IP> up", "ip"),
        ("lan 192.168.0.1", "lan <IP>", "ip"),
        ("v6 2001:db8::8a2e:370:7334 up", "v6 <IP> up", "ip"),
    ],
)
def test_each_kind_is_replaced_by_its_placeholder_and_counted(text, expected, kind):
    redacted, counts = redact(text)
    assert redacted == expected
    assert counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112 shipped",  # 16 digits failing the Luhn check
        "on 2024-01-15 and 2024.01.15 at 10:30:00",  # dates and times
        "version 1.2.3.4, v1.2.3.4, Python 3.11.2, build 1.2.3.4.5",  # version strings
        "std::vector and a::b in C++",
        "ISBN 978-3-16-148410-0, ext 1234-5678, price 1,234,567",
        "991301-1234567 is no date",  # month 13: not a resident registration number
    ],
)
def test_look_alikes_survive(text):
    assert redact(text) == (text, {})


def test_luhn_and_switches():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    text = "a@b.org 010-1234-5678 192.168.0.1"
    assert redact(text, PIIConfig(email=False, phone=False))[0] == "a@b.org 010-1234-5678 <IP>"
    assert redact(text, PIIConfig(ip_public_only=True))[0] == "<EMAIL> <PHONE> 192.168.0.1"


def test_quality_step_redacts_kept_documents_and_counts_per_type(tmp_path):
    contact = " Contact the museum at info@harbour-museum.org or 010-9876-5432 for guided tours."
    write_docs(tmp_path / "in", [{"id": "a", "text": EN_ARTICLE + contact}], {"language": "en"})
    out = tmp_path / "out"
    summary = run_curate_step("quality", CurateConfig(), tmp_path / "in", out, tmp_path / "state", "r")[
        "summary"
    ]
    (doc,) = read_docs(out / "documents")
    assert "<EMAIL> or <PHONE>" in doc["text"] and "@" not in doc["text"]
    assert summary["pii_email"] == 1 and summary["pii_phone"] == 1 and summary["pii_documents"] == 1

    off = CurateConfig.model_validate({"quality": {"pii": {"enabled": False}}})
    plain = run_curate_step("quality", off, tmp_path / "in", tmp_path / "off", tmp_path / "state", "r")
    assert "info@harbour-museum.org" in read_docs(tmp_path / "off" / "documents")[0]["text"]
    assert "pii_email" not in plain["summary"]
