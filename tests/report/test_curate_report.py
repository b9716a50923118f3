"""The curation report: the per-language funnel and corpus profile tables, the funnel plot, and what Prefect
gets (artifact calls replaced by fakes)."""

from __future__ import annotations

import re

import pytest
from PIL import Image

import tasks.reporting as reporting
from cpt_core.layout import RunLayout
from cpt_core.report.curate import curate_markdown, funnel_records, profile_records
from cpt_core.report.markdown import stage_markdown
from cpt_core.report.plots import language_funnel_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(*buckets):
    return [{"bucket": b, "docs": d, "chars": c} for b, d, c in buckets]


PROFILE = {
    "documents": 4, "characters": 4000, "hosts": 3, "top_hosts": 2,
    "by_host": _rows(("a.org", 2, 1000), ("b.kr", 1, 2500), ("other", 1, 500)),
    "by_language": _rows(("en", 3, 1500), ("ko", 1, 2500)),
    "by_domain_score": [],
    "by_length": _rows(("<500", 2, 500), ("500-2k", 2, 3500)),
    "by_month": _rows(("2024-03", 3, 3000), ("undated", 1, 1000)),
}  # fmt: skip
MANIFESTS = {
    "language": {"summary": {"docs_in": 7, "docs_out": 5, "by_language": {
        "en": {"in": 4, "out": 4, "dropped": {}},
        "ko": {"in": 2, "out": 1, "dropped": {"language_low_score": 1}},
        "unknown": {"in": 1, "out": 0, "dropped": {"malformed_json": 1}},
    }}},
    "quality": {"summary": {"docs_in": 5, "docs_out": 4, "by_language": {
        "en": {"in": 4, "out": 3, "dropped": {"gopher_short_doc": 1}},
        "ko": {"in": 1, "out": 1, "dropped": {}},
    }}},
    "decontaminate": {"summary": {"docs_in": 4, "docs_out": 4, "profile": PROFILE, "by_language": {
        "en": {"in": 3, "out": 3, "dropped": {}}, "ko": {"in": 1, "out": 1, "dropped": {}},
    }}},
}  # fmt: skip


def test_curate_markdown_has_the_funnel_and_profile_tables():
    md = curate_markdown("r1", MANIFESTS, {"Documents per language": "curate_funnel.png"})
    assert "| step | language | in | out | dropped | dropped by reason |" in md
    assert "| language | ko | 2 | 1 | 1 | language_low_score 1 |" in md
    assert "| language | unknown | 1 | 0 | 1 | malformed_json 1 |" in md
    assert "| quality | en | 4 | 3 | 1 | gopher_short_doc 1 |" in md
    assert "4 documents, 4,000 characters, 3 hosts." in md
    assert "### By host (top 2 of 3, the rest as other)" in md
    assert "| b.kr | 1 | 25.0% | 2,500 | 62.5% |" in md and "| other | 1 | 25.0% | 500 | 12.5% |" in md
    assert "| undated | 1 | 25.0% | 1,000 | 25.0% |" in md
    assert "| 500-2k | 2 | 50.0% | 3,500 | 87.5% |" in md
    assert "No domain scores" in md
    assert "![Documents per language](curate_funnel.png)" in md
    assert funnel_records(MANIFESTS)[0] == {
        "step": "language", "language": "en", "in": "4", "out": "4", "dropped": "0", "dropped by reason": "—",
    }  # fmt: skip
    assert {"dimension": "host", "bucket": "other", "docs": "1", "docs share": "25.0%", "chars": "500",
            "chars share": "12.5%"} in profile_records(PROFILE)  # fmt: skip


def test_curate_markdown_without_counts_or_profile_says_so():
    md = curate_markdown("r1", {"language": {"summary": {"docs_in": 1}}})
    assert "No per-language counts" in md and "No profile" in md and "## Plots" not in md


def test_stage_markdown_shows_the_step_by_language():
    md = stage_markdown("curate/language", MANIFESTS["language"])
    assert "### By language" in md and "| ko | 2 | 1 | 1 | language_low_score 1 |" in md


def test_language_funnel_png_is_a_real_png(tmp_path):
    png = language_funnel_png(MANIFESTS, tmp_path / "funnel.png")
    assert png.read_bytes()[:8] == PNG_MAGIC
    with Image.open(png) as image:
        image.verify()
    assert language_funnel_png({"crawl": {"summary": {"docs_out": 3}}}, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


@pytest.fixture()
def artifacts(monkeypatch):
    calls: list[tuple] = []
    monkeypatch.setattr(
        reporting, "create_markdown_artifact", lambda md, **kw: calls.append(("md", md, kw["key"]))
    )
    monkeypatch.setattr(
        reporting, "create_image_artifact", lambda url, **kw: calls.append(("image", url, kw["key"]))
    )
    monkeypatch.setattr(
        reporting, "create_table_artifact", lambda rows, **kw: calls.append(("table", rows, kw["key"]))
    )
    return calls


def test_curate_report_on_disk_and_in_prefect(artifacts, tmp_path):
    layout = RunLayout.create(tmp_path, "r1")
    path = reporting.write_curate_report(layout, MANIFESTS)
    disk = path.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", disk)
    assert links == ["curate_funnel.png"] and (path.parent / links[0]).read_bytes()[:8] == PNG_MAGIC
    (md,) = [c for c in artifacts if c[0] == "md"]
    assert md[2] == "r1-curate-report" and "| quality | en | 4 | 3 | 1 | gopher_short_doc 1 |" in md[1]
    ui_links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md[1])
    assert len(ui_links) == 1 and ui_links[0].startswith("data:image/png;base64,")  # no broken relative link
    (image,) = [c for c in artifacts if c[0] == "image"]
    assert image[1] == ui_links[0]
    tables = {c[2]: c[1] for c in artifacts if c[0] == "table"}
    assert tables["r1-curate-funnel"] == funnel_records(MANIFESTS)
    assert tables["r1-curate-profile"] == profile_records(PROFILE)


def test_curate_report_publishing_failures_are_counted(monkeypatch, tmp_path):
    def fail(*args, **kwargs):
        raise RuntimeError("API down")

    for name in ("create_markdown_artifact", "create_image_artifact", "create_table_artifact"):
        monkeypatch.setattr(reporting, name, fail)
    before = reporting.artifact_failures("r2")
    path = reporting.write_curate_report(RunLayout.create(tmp_path, "r2"), MANIFESTS)
    assert path.is_file() and reporting.artifact_failures("r2") - before == 4
