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
from tests.flows.conftest import SMALL_CRAWL, SMALL_SITE, free_port, small_config
from tests.flows.docs import path_of

pytestmark = pytest.mark.usefixtures("prefect_harness")

# Where each noise page of the small demo site leaves the pipeline: (stage, reason), for every page of a kind
# or per path where pages of one kind leave at different steps. "crawl" is the fetch log's reason; "extract"
# and "curate/<step>" are the ``metadata.filter_reason`` of the documents in that step's ``dropped/``.
EXPECTED_DROPS = {
    "exact_duplicate": ("curate/exact_dedup", "exact_duplicate"),
    "near_duplicate": ("curate/near_dedup", "near_duplicate"),
    # Boilerplate-only pages keep too few words to identify a language, or too few to pass Gopher.
    "boilerplate": {
        "/cookies.html": ("curate/language", "language_low_score"),
        "/login.html": ("curate/language", "language_low_score"),
        "/tags/": ("curate/quality", "gopher_short_doc"),
    },
    "spam": {
        "/deals/cheap-watches.html": ("curate/quality", "gopher_enough_stop_words"),
        "/deals/win-now.html": ("curate/language", "language_low_score"),
        "/deals/symbols.html": ("curate/language", "language_low_score"),
    },
    "other_language": {f"/world/{lang}.html": ("curate/language", "language_other") for lang in ("de", "fr", "es", "ja")},
    "empty": {
        "/empty.html": ("crawl", "empty"),  # no bytes at all: never stored
        "/blank.html": ("extract", "empty"),  # an HTML page with no text in it
    },
    "non_html": {"/files/annual-report.pdf": ("crawl", "non_html"), "/api/status.json": ("crawl", "non_html")},
    "slow": ("crawl", "timeout"),
    "broken_link": ("crawl", "http_404"),
    "external_link": ("crawl", "offsite"),
    "robots_disallowed": ("crawl", "robots"),
}
# Charset traps are real Korean articles: they must be decoded and kept, not dropped.
KEPT_NOISE = ("charset_meta_only", "charset_wrong_header")


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
    # decontamination checked the curated documents against the evaluation texts this run scores
    sources = {json.loads(line)["source"] for line in layout.eval_texts.read_text().splitlines()}
    assert {"fact_probe", "general_heldout"} <= sources


def _dropped(layout: RunLayout) -> dict[str, list[tuple[str, str, dict]]]:
    """Every page the run dropped, by site path (full URL when off-site): ``[(stage, reason, record)]``."""

    def key(url: str) -> str:
        return path_of(url) if url.startswith("http://127.0.0.1") else url

    out: dict[str, list[tuple[str, str, dict]]] = {}
    for line in (layout.crawl / "fetch_log.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["reason"] != "fetched":
            out.setdefault(key(row["url"]), []).append(("crawl", row["reason"], row))
    steps = [("extract", layout.extract)] + [(f"curate/{step}", layout.curate_step(step)) for step in STEPS]
    for stage, folder in steps:
        for doc in read_docs(folder / "dropped"):
            meta = doc["metadata"]
            out.setdefault(key(meta["url"]), []).append((stage, meta["filter_reason"], doc))
    return out


def test_every_noise_page_is_dropped_at_its_stage_for_its_reason(finished_run):
    _, _, layout = finished_run
    site = build_site(DemoSiteConfig(**SMALL_SITE))
    assert set(EXPECTED_DROPS) | set(KEPT_NOISE) == set(site.noise), "every noise kind has an expectation"
    dropped = _dropped(layout)
    for kind, expected in EXPECTED_DROPS.items():
        by_path = expected if isinstance(expected, dict) else dict.fromkeys(site.noise[kind], expected)
        assert set(by_path) == set(site.noise[kind]), kind
        for path, (stage, reason) in by_path.items():
            assert [(s, r) for s, r, _ in dropped.get(path, [])] == [(stage, reason)], (kind, path)

    final = read_docs(layout.curated / "documents")
    kept = {path_of(d["metadata"]["url"]): d for d in final}
    # Each duplicate names the document it duplicates: the original article, which is kept.
    originals = [p.removeprefix("/amp") for p in site.noise["exact_duplicate"]]
    for kind in ("exact_duplicate", "near_duplicate"):
        for path, original in zip(site.noise[kind], originals, strict=True):
            (_, _, doc), = dropped[path]
            assert doc["metadata"]["duplicate_of"] == kept[original]["id"], path
    # Nothing else is dropped but the site's own index pages, robots and sitemap: every article survives.
    noise_paths = {p for paths in site.noise.values() for p in paths}
    assert set(dropped) - noise_paths <= {"/", "/news/", "/ko/", "/world/", "/misc/", "/sitemap.xml"}
    articles = site.article_paths["en"] + site.article_paths["ko"]
    assert set(kept) == set(articles)
    texts = [d["text"] for d in final]
    assert len(texts) == len(set(texts)) and len({d["id"] for d in final}) == len(final)
    for doc in final:
        assert doc["metadata"]["language"] == ("ko" if "/ko/" in doc["metadata"]["url"] else "en")
        assert 0 < doc["metadata"]["language_score"] <= 1
    for path in site.noise["charset_meta_only"] + site.noise["charset_wrong_header"]:
        assert any("\uac00" <= ch <= "\ud7a3" for ch in kept[path]["text"]), "Korean decoded"


def test_training_lowers_domain_bpb_and_the_decision_follows_the_gate(finished_run):
    config, result, layout = finished_run
    mix = json.loads((layout.tokens / "mix.json").read_text())
    assert set(mix["tokens_by_source"]) >= {"domain", "synthetic_qa", "replay"}
    assert abs(mix["mix"]["replay"] - 0.25) < 0.05
    metrics = [json.loads(x) for x in (layout.model / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 6

    results = json.loads((layout.eval / "results.json").read_text())
    base, trained, delta = results["base"], results["trained"], results["delta"]
    assert trained["domain_bpb"] < base["domain_bpb"]  # six steps on the domain text already help
    for column in (base, trained):
        assert 0 < column["general_bpb"] < 20 and 0 < column["domain_bpb"] < 20
        assert column["probe"]["n"] == SMALL_SITE["n_facts"]
        assert column["probe_acc"] == sum(i["correct"] for i in column["probe"]["per_item"]) / column["probe"]["n"]
    assert {i["id"] for i in base["probe"]["per_item"]} == {i["id"] for i in trained["probe"]["per_item"]}
    assert delta["domain_bpb_rel"] == pytest.approx((trained["domain_bpb"] - base["domain_bpb"]) / base["domain_bpb"])
    assert delta["probe_acc_points"] == pytest.approx(trained["probe_acc"] - base["probe_acc"])
    summary = json.loads((layout.eval / "_manifest.json").read_text())["summary"]
    assert summary["base_domain_bpb"] == base["domain_bpb"] and summary["trained_probe_acc"] == trained["probe_acc"]

    # First run, no champion: promoted exactly when every check of the gate passes.
    gate = config.promote
    # The gate judges the pessimistic end of each paired 95% interval, which brackets the point change.
    for metric in ("domain", "general"):
        lo, hi = delta[f"{metric}_bpb_rel_ci"]
        assert lo - 1e-9 <= delta[f"{metric}_bpb_rel"] <= hi + 1e-9  # one text: a zero-width interval
        assert base[f"{metric}_bpb_ci"][0] - 1e-9 <= base[f"{metric}_bpb"] <= base[f"{metric}_bpb_ci"][1] + 1e-9
    passes = (
        delta["domain_bpb_rel_ci"][1] <= -gate.min_domain_bpb_gain
        and delta["general_bpb_rel_ci"][1] <= gate.max_general_bpb_regression
        and delta["probe_acc_points"] >= gate.min_probe_gain
    )
    decision = json.loads((layout.run / "promote" / "decision.json").read_text())
    assert result["promoted"] is decision["promote"] is passes
    assert any("FAILED" in reason for reason in decision["reasons"]) is not passes
    registry = Registry(layout.registry)
    assert any(entry["run_id"] == "r1" for entry in json.loads(layout.registry.read_text())["history"])
    assert (registry.champion() or {}).get("run_id") == ("r1" if passes else None)
    assert decision["delta"]["domain_bpb_rel_ci"] == delta["domain_bpb_rel_ci"]
    assert any("95% interval" in reason for reason in decision["reasons"])

    # The model card beside the saved model names the base, the data mix, the evaluation and the decision.
    card = (layout.model / "final" / "README.md").read_text()
    start = json.loads((layout.run / "start.json").read_text())
    assert card.startswith("# Model `r1`") and f"base model `{start['parent']}`" in card
    assert "## Mix" in card and "| replay |" in card and "## Training config" in card
    assert "| domain bits/byte |" in card and "[" in card.split("| domain bits/byte |")[1].split("\n")[0]
    assert ("**Promoted** to champion" if passes else "**Not promoted**") in card
    # The run report shows the publishing failure count; the UI copy has no relative image links.
    report = (layout.report / "run_report.md").read_text()
    assert "Prefect artifacts that failed to publish: 0" in report


def test_the_ui_shows_run_names_finished_progress_and_a_report_without_broken_links(finished_run):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        names = {run.name for run in client.read_flow_runs()}
        artifacts = [a for a in client.read_artifacts() if (a.key or "").startswith("r1-")]
    assert {"knowledge-refresh-r1", "ingest-r1", "curate-r1", "train-r1", "evaluate-r1"} <= names
    progress = [a for a in artifacts if a.type == "progress"]
    assert {a.key for a in progress} >= {"r1-crawl-progress", "r1-extract-progress", "r1-train-progress"}
    assert all(float(a.data) == 100.0 for a in progress), {a.key: a.data for a in progress}
    reports = [a for a in artifacts if a.key == "r1-run-report"]
    assert reports and all("](loss_curve.png)" not in a.data and "](eval_delta.png)" not in a.data for a in reports)
    assert "data:image/png;base64," in reports[-1].data


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
    assert set(again["skipped"]) == {"crawl", "extract", *(f"curate/{s}" for s in STEPS), "synthesize", "tokenize", "train",
                                     "evaluate", "promote"}
    after = {p: p.stat().st_mtime_ns for p in layout.run.rglob("_manifest.json")}
    assert before == after
    assert json.loads((layout.run / "start.json").read_text()) == start


@pytest.mark.slow
def test_a_refresh_without_a_knowledge_graph_synthesizes_documents_and_its_own_probe(tmp_path, tiny_model):
    # The demo site with its graph hidden: the run sees only crawled pages, as with a real site.
    source = {"kind": "demo", "site": {**SMALL_SITE, "port": free_port()}, "crawl": SMALL_CRAWL, "knowledge_graph": False}
    config = small_config(
        tmp_path, tiny_model, run_id="nokg", ingest={"sources": [source]}, train={"max_steps": 2},
        synthesize={"probe": {"fraction": 0.3}},
    )  # fmt: skip
    result = knowledge_refresh(config)
    layout = RunLayout(tmp_path.resolve(), "nokg")
    assert result["outcome"] in ("promoted", "rejected")
    synthesize = json.loads((layout.synthesize / "_manifest.json").read_text())["summary"]
    assert synthesize["strategies"] == ["entity"] and synthesize["docs_out"] > 0 and synthesize["probe_items"] > 0
    mix = json.loads((layout.tokens / "mix.json").read_text())
    assert mix["tokens_by_source"]["synthetic"] > 0 and mix["mix"]["synthetic"] > 0
    assert not mix["tokens_by_source"].get("synthetic_qa")  # no graph: no graph-made question lines
    results = json.loads((layout.eval / "results.json").read_text())
    for column in (results["base"], results["trained"]):
        assert column["probe_acc"] is None and column["auto_probe"]["n"] == synthesize["probe_items"]
        assert 0 <= column["auto_probe_acc"] <= 1
    assert results["delta"]["auto_probe_acc_points"] is not None
    assert (layout.probes_dir / "nokg.jsonl").is_file()
    assert "auto-probe accuracy (this run)" in (layout.report / "run_report.md").read_text()
