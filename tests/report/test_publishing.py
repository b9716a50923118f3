"""What the Prefect UI gets: progress that ends at 100 %, the run report without relative image links, counted
publishing failures, and flow run names that carry the run id. Prefect's artifact calls are replaced by fakes."""

from __future__ import annotations

import logging

import pytest

import tasks.reporting as reporting
from cpt_core.config import RunConfig
from flows.run_names import flow_run_name, run_id_of


@pytest.fixture()
def artifacts(monkeypatch):
    calls: list[tuple] = []
    monkeypatch.setattr(reporting, "create_progress_artifact", lambda pct, **kw: calls.append(("new", pct)) or "a1")
    monkeypatch.setattr(reporting, "update_progress_artifact", lambda aid, pct, **kw: calls.append(("set", pct)))
    monkeypatch.setattr(reporting, "create_markdown_artifact", lambda md, **kw: calls.append(("md", md)))
    return calls


def test_a_stage_with_unknown_total_ends_at_100_percent(artifacts, tmp_path):
    progress = reporting.PrefectProgress("crawl", "run-a", interval_s=0)
    progress(5, None, "pages fetched")  # a crawl does not know its total: 0 %
    assert artifacts == [("new", 0.0)]
    reporting.publish_stage("crawl", "run-a", {"summary": {"docs_out": 5}}, tmp_path)
    assert ("set", 100.0) in artifacts and artifacts[-1][0] == "md"
    assert (tmp_path / "crawl.md").exists()
    # A curate step's progress ("curate-quality") is completed by its report ("curate/quality").
    step = reporting.PrefectProgress("curate-quality", "run-a", interval_s=0)
    step(1, 4, "documents")
    reporting.publish_stage("curate/quality", "run-a", {"summary": {}}, tmp_path)
    assert [c for c in artifacts if c[0] == "set"][-1] == ("set", 100.0)


def test_publishing_failures_are_warnings_and_counted(monkeypatch, tmp_path, caplog):
    def fail(*args, **kwargs):
        raise RuntimeError("API down")

    for name in ("create_progress_artifact", "update_progress_artifact", "create_markdown_artifact"):
        monkeypatch.setattr(reporting, name, fail)
    before = reporting.artifact_failures("run-b")
    with caplog.at_level(logging.WARNING):
        reporting.PrefectProgress("train", "run-b", interval_s=0)(1, 2, "steps")
        reporting.publish_stage("train", "run-b", {"summary": {}}, tmp_path)  # progress 100 % + report
    assert reporting.artifact_failures("run-b") - before == 3
    assert any(r.levelno == logging.WARNING and "API down" in r.getMessage() for r in caplog.records)
    assert reporting.artifact_failures("another-run") == 0


def test_ui_report_embeds_plots_without_relative_links(tmp_path):
    png = tmp_path / "loss_curve.png"
    png.write_bytes(b"\x89PNG fake")
    results = {"base": {"domain_bpb": 1.0}, "trained": {"domain_bpb": 0.9}, "delta": {}}
    md = reporting.ui_report("r1", {"train": {"summary": {}}}, results, {}, "base", [], [("Training loss", png)], 2)
    assert "](loss_curve.png)" not in md and "](eval_delta.png)" not in md
    assert "![Training loss](data:image/png;base64," in md and md.count("## Plots") == 1
    assert "Prefect artifacts that failed to publish: 2" in md


def test_flow_run_names_carry_the_run_id():
    class Layout:
        run_id = "r7"

    assert run_id_of({"layout": Layout()}) == "r7"
    config = RunConfig(name="weekly", run_id="w-1")
    assert run_id_of({"config": config}) == "w-1"
    assert run_id_of({"config": config.model_dump(mode="json"), "overrides": ["run_id=w-2"]}) == "w-2"
    stamped = run_id_of({"config": RunConfig(name="weekly")})
    assert stamped.startswith("weekly-") and len(stamped) == len("weekly-20250101-120000")
    # Outside a flow run (no parameters) the name still works: the flow's name and a timestamp.
    assert flow_run_name("knowledge-refresh")().startswith("knowledge-refresh-")
