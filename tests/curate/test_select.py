"""The select step: recency by publication date, domain relevance by a fastText classifier trained per run."""

from __future__ import annotations

import gzip
import json
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from cpt_core.curate.pipeline import CurateConfig, run_curate_step
from cpt_core.curate.select import SelectConfig, cutoff_for_fraction, document_date
from tests.curate.test_pipeline import EN, KO, read_ids


def _write(folder: Path, docs: list[dict]) -> Path:
    (folder / "documents").mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "documents" / "00000.jsonl.gz", "wt", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return folder


def _run(tmp_path: Path, docs: list[dict], name: str = "select", **select) -> dict:
    _write(tmp_path / "in", docs)
    cfg = CurateConfig(select=SelectConfig(**select))
    return run_curate_step("select", cfg, tmp_path / "in", tmp_path / name, tmp_path / "dedup", "r1")


def _docs(folder: Path) -> dict[str, dict]:
    rows = {}
    for file in sorted(folder.rglob("*.jsonl.gz")):
        with gzip.open(file, "rt", encoding="utf-8") as fh:
            rows.update({(r := json.loads(line))["id"]: r for line in fh})
    return rows


def test_recency_keeps_recent_english_and_korean_and_falls_back_to_fetched_at(tmp_path):
    docs = [
        {"id": "en-new", "text": EN[0], "metadata": {"published_at": "2026-03-01"}},
        {"id": "en-old", "text": EN[1], "metadata": {"published_at": "2019-05-04T10:00:00Z", "fetched_at": "2026-12-01"}},
        {"id": "ko-new", "text": KO, "metadata": {"published_at": None, "fetched_at": "2026-11-30T08:00:00+00:00"}},
        {"id": "ko-old", "text": KO + " 옛날 이야기.", "metadata": {"published_at": "2020-01-01"}},
        {"id": "undated", "text": EN[0] + " Undated.", "metadata": {"published_at": "not a date"}},
    ]  # fmt: skip
    manifest = _run(tmp_path, docs, published_after="2026-01-01")
    assert read_ids(tmp_path / "select" / "documents") == ["en-new", "ko-new", "undated"]
    assert manifest["summary"]["dropped"] == {"recency_too_old": 2}
    assert manifest["summary"]["select_undated"] == 1
    manifest = _run(tmp_path, docs, name="strict", published_after="2026-01-01", undated="drop")
    assert read_ids(tmp_path / "strict" / "documents") == ["en-new", "ko-new"]
    assert manifest["summary"]["dropped"] == {"recency_too_old": 2, "recency_undated": 1}


def test_document_date_and_cutoff():
    assert document_date({"published_at": "2026-02-03T04:05:06Z"}) == date(2026, 2, 3)
    assert document_date({"published_at": "", "fetched_at": "2025-01-01"}) == date(2025, 1, 1)
    assert document_date({}) is None
    assert cutoff_for_fraction([0.1, 0.9, 0.5, 0.7], 0.5) == 0.7
    assert cutoff_for_fraction([0.1, 0.2], 0.01) == 0.2  # at least one kept


FINANCE_EN = [
    "The central bank raised its policy interest rate by a quarter point, and bond yields rose as investors "
    "priced in further tightening of monetary policy and slower growth in bank lending to companies.",
    "Quarterly earnings beat analyst forecasts: revenue grew eight percent, operating margin widened, and the "
    "board approved a dividend increase and a share buyback funded from free cash flow.",
    "Equity markets fell as inflation data surprised to the upside; the yield curve flattened and the dollar "
    "strengthened against most currencies while credit spreads on corporate bonds widened.",
]
FINANCE_KO = [
    "한국은행은 기준금리를 0.25%포인트 인상했으며 채권 금리는 추가 긴축 기대에 따라 상승했다. 은행 대출 증가세는 둔화되었다.",
    "이 회사의 분기 실적은 시장 예상치를 웃돌았다. 매출은 8% 늘었고 영업이익률이 개선되어 배당금 증액과 자사주 매입을 결정했다.",
]


def test_domain_classifier_keeps_in_domain_documents_deterministically(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in FINANCE_EN[:2]))
    heldout = tmp_path / "general.txt"
    heldout.write_text("\n\n".join(EN * 3 + [KO] * 3))
    docs = [
        {"id": "fin-en", "text": FINANCE_EN[2], "metadata": {"url": "https://news.example/markets/1"}},
        {"id": "fin-ko", "text": FINANCE_KO[0], "metadata": {"url": "https://news.example/markets/2"}},
        {"id": "fin-ko-2", "text": FINANCE_KO[1], "metadata": {"url": "https://other.example/a"}},
        {"id": "town-en", "text": EN[0] + " The bakers sell bread.", "metadata": {"url": "https://other.example/b"}},
        {"id": "town-ko", "text": KO + " 김장 이야기.", "metadata": {"url": "https://other.example/c"}},
    ]
    domain = {"enabled": True, "seed_documents": str(seeds), "seed_url_prefixes": ["https://news.example/markets/"],
              "general": {"source": str(heldout), "max_chars": 10_000}, "epoch": 100, "lr": 1.0, "top_fraction": 0.6}  # fmt: skip
    manifest = _run(tmp_path, docs, domain=domain)
    kept = _docs(tmp_path / "select" / "documents")
    assert sorted(kept) == ["fin-en", "fin-ko", "fin-ko-2"]
    assert manifest["summary"]["dropped"] == {"domain_low_score": 2}
    dropped = _docs(tmp_path / "select" / "dropped")
    assert all(kept[i]["metadata"]["domain_score"] > dropped[j]["metadata"]["domain_score"] for i in kept for j in dropped)
    assert (tmp_path / "select" / "domain_model.bin").is_file()
    _run(tmp_path, docs, name="again", domain=domain)
    again = _docs(tmp_path / "again" / "documents")
    # The same model (trained in a fresh process), so the same documents with the same scores.
    assert {k: d["metadata"]["domain_score"] for k, d in again.items()} == {
        k: d["metadata"]["domain_score"] for k, d in kept.items()
    }
    assert (tmp_path / "again" / "domain_model.bin").read_bytes() == (tmp_path / "select" / "domain_model.bin").read_bytes()
    _run(tmp_path, docs, name="top", domain={**domain, "top_fraction": 0.2})  # the best one alone
    assert list(_docs(tmp_path / "top" / "documents")) == [max(kept, key=lambda k: kept[k]["metadata"]["domain_score"])]


def test_domain_config_errors_are_clear(tmp_path):
    with pytest.raises(ValidationError, match="seed_documents, seed_url_prefixes or seed_hosts"):
        SelectConfig(domain={"enabled": True})
    with pytest.raises(ValueError, match="no seed documents"):
        _run(tmp_path, [{"id": "a", "text": EN[0]}], domain={"enabled": True, "seed_hosts": ["nowhere.example"]})
