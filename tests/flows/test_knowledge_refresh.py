"""The whole knowledge-refresh flow on the demo site with a tiny model, under one Prefect test harness."""

from __future__ import annotations

import json

import pytest

from cpt_core.curate.pipeline import STEPS
from cpt_core.demo.site import DemoSiteConfig, build_site
from cpt_core.evaluate.registry import Decision, Registry
from cpt_core.layout import RunLayout
from flows.knowledge_refresh import knowledge_refresh
from tests.doc_files import read_docs
from tests.flows.conftest import SMALL_SITE, small_config
from tests.flows.docs import path_of, urls

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model, prefect_harness):
    root = tmp_path_factory.mktemp("refresh")
    config = small_config(root, tiny_model)
    result = knowledge_refresh(config)
    return config, result, RunLayout(root.resolve(), "r1")


def test_every_stage_wrote_a_manifest_and_a_report(finished_run):
    _, result, layout = finished_run
    assert result["skipped"] == []
    folders = [layout.crawl, layout.extract, *(layout.curate_step(s) for s in STEPS), layout.tokens, layout.model,
               layout.eval, layout.run / "promote"]
    for folder in folders:
        assert (folder / "_manifest.json").exists(), folder
        assert not folder.with_name(folder.name + ".partial").exists()
    report = (layout.report / "run_report.md").read_text()
    assert result["report"] == str(layout.report / "run_report.md")
    for stage in ("crawl", "extract", "tokenize", "train", "evaluate"):
        assert (layout.report / f"{stage}.md").exists()
    assert (layout.report / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bits" in report.lower()
    assert (layout.model / "final" / "model.safetensors").exists()
    assert (layout.model / "final" / "tokenizer.json").exists()


def test_noise_is_dropped_at_the_right_stage_for_the_right_reason(finished_run):
    _, _, layout = finished_run
    site = build_site(DemoSiteConfig(**SMALL_SITE))
    log = [json.loads(line) for line in (layout.crawl / "fetch_log.jsonl").read_text().splitlines()]
    reason_by_path = {path_of(row["url"]): row.get("reason") for row in log}
    assert reason_by_path[site.noise["slow"][0]] == "timeout"
    assert reason_by_path[site.noise["broken_link"][0]] == "http_404"
    assert all(reason_by_path[p] == "non_html" for p in site.noise["non_html"])
    assert reason_by_path[site.noise["robots_disallowed"][0]] == "robots"
    assert {row["url"]: row.get("reason") for row in log}[site.noise["external_link"][0]] == "offsite"

    final = read_docs(layout.curated / "documents")
    kept = {path_of(u) for u in urls(final)}
    for kind in ("boilerplate", "spam", "other_language", "empty"):
        assert not kept & set(site.noise[kind]), kind
    dropped_lang = read_docs(layout.curate_step("language") / "dropped")
    assert {path_of(u) for u in urls(dropped_lang)} >= set(site.noise["other_language"])
    assert {d["metadata"]["filter_reason"] for d in dropped_lang} <= {"language_other", "language_low_score"}
    exact = read_docs(layout.curate_step("exact_dedup") / "dropped")
    near = read_docs(layout.curate_step("near_dedup") / "dropped")
    assert len(exact) >= len(site.noise["exact_duplicate"])
    assert near and all(d["metadata"].get("duplicate_of") for d in near)
    # Every real article survives exactly once (a duplicate may stand in for its original).
    texts = [d["text"] for d in final]
    assert len(texts) == len(set(texts))
    assert len({d["id"] for d in final}) == len(final)
    for doc in final:
        assert doc["metadata"]["language"] in ("en", "ko")
        assert 0 < doc["metadata"]["language_score"] <= 1
    korean = [d for d in final if d["metadata"]["language"] == "ko"]
    assert len(korean) >= len(site.article_paths["ko"]) - 1
    for path in site.noise["charset_meta_only"] + site.noise["charset_wrong_header"]:
        (doc,) = [d for d in final if path_of(d["metadata"]["url"]) == path]
        assert any("\uac00" <= ch <= "\ud7a3" for ch in doc["text"]), "Korean decoded"


def test_training_evaluation_and_registry(finished_run):
    _, result, layout = finished_run
    mix = json.loads((layout.tokens / "mix.json").read_text())
    assert set(mix["tokens_by_source"]) >= {"domain", "synthetic_qa", "replay"}
    assert abs(mix["mix"]["replay"] - 0.25) < 0.05
    results = json.loads((layout.eval / "results.json").read_text())
    for column in ("base", "trained"):
        assert results[column]["domain_bpb"] > 0
        assert results[column]["general_bpb"] > 0
        assert 0 <= results[column]["probe_acc"] <= 1
    metrics = [json.loads(x) for x in (layout.model / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 6
    registry = json.loads(layout.registry.read_text())
    assert any(entry["run_id"] == "r1" for entry in registry["history"])
    assert result["promoted"] in (True, False)


def test_rerun_of_a_finished_run_does_no_work(finished_run):
    config, first, layout = finished_run
    start = json.loads((layout.run / "start.json").read_text())
    # Even once this run's own model is the champion, a rerun keeps the model it started from.
    results = json.loads((layout.eval / "results.json").read_text())
    Registry(layout.registry).record(
        "r1", layout.model / "final", results, Decision(True, ["test"]), {"parent": start["parent"]}
    )
    assert Registry(layout.registry).champion()["run_id"] == "r1"
    before = {p: p.stat().st_mtime_ns for p in layout.run.rglob("_manifest.json")}
    again = knowledge_refresh(config)
    assert set(again["skipped"]) == {"crawl", "extract", *(f"curate/{s}" for s in STEPS), "tokenize", "train",
                                     "evaluate", "promote"}
    after = {p: p.stat().st_mtime_ns for p in layout.run.rglob("_manifest.json")}
    assert before == after
    assert json.loads((layout.run / "start.json").read_text()) == start
