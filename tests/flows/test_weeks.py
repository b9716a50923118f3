"""Weekly refreshes on one root: a failed week, a rejected week, a promoted week, a quiet week, one new page.

One website, served by the test on a fixed port so URLs stay the same from week to week; each week is a new
run id on the same root. Every assertion is about what a data engineer would see: nothing fetched by a week
that did not end in a model is lost, quiet weeks end cleanly, and each week continues from the champion.
"""

from __future__ import annotations

import json

import pytest

from cpt_core.demo.pages import Page, html_page
from cpt_core.demo.server import serve
from cpt_core.demo.site import DemoSiteConfig, build_site
from cpt_core.layout import RunLayout
from cpt_core.state import read_outcome, visible_runs
from tests.doc_files import read_docs
from tests.flows.conftest import SMALL_CRAWL, SMALL_SITE, free_port, small_config

pytestmark = pytest.mark.slow

LENIENT = {"min_domain_bpb_gain": 0.0, "max_general_bpb_regression": 1.0, "max_general_regression_vs_base": 1.0,
           "min_probe_gain": -1.0, "judge_on": "point"}
IMPOSSIBLE = {"min_domain_bpb_gain": 0.99}
NEW_ARTICLE = (
    "<article><h1>Harbour hall reopens after the storm</h1>"
    "<p>The old harbour hall in Vegaquay reopened on Friday, three weeks after the autumn storm tore part of "
    "its roof away. Volunteers from the fishing cooperative spent their evenings clearing the flooded ground "
    "floor, and the town council paid for new beams made from local oak.</p>"
    "<p>The mayor said the hall would host the winter market again this year, and that the first event would "
    "be a concert by the school choir. Traders who lost stock in the flood will not pay a stall fee this "
    "season, and the council has promised to publish the full cost of the repairs before the end of the "
    "month.</p><p>Residents who want to help with the final painting work can sign up at the library.</p>"
    "</article>"
)


@pytest.fixture(scope="module")
def weeks(tmp_path_factory, tiny_model, prefect_harness):
    """Run the weeks once for every test below; returns (root, site, {week: result or exception})."""
    from flows.knowledge_refresh import knowledge_refresh

    root = tmp_path_factory.mktemp("weeks")
    site = build_site(DemoSiteConfig(**{**SMALL_SITE, "n_facts": 8}))
    kg = root / "facts.jsonl"
    site.write_knowledge_graph(kg)
    port = free_port()
    out: dict[str, object] = {}

    def week(run_id: str, **sections):
        with serve(site, "127.0.0.1", port, slow_delay_s=6.0) as base_url:
            web = {"kind": "web", "crawl": {**SMALL_CRAWL, "seed_urls": [base_url],
                                            "allow_private_hosts": ["127.0.0.1"], "delay_s": 0.0}}
            cfg = small_config(root, tiny_model, run_id=run_id, ingest={"sources": [web]}, **sections)
            cfg = cfg.model_copy(update={"knowledge_graph": str(kg)})
            try:
                out[run_id] = knowledge_refresh(cfg)
            except Exception as err:  # the failed week
                out[run_id] = err

    # Fails after curation, at tokenize (its replay file is missing): quicker than a training timeout, the
    # same situation for the state: pages fetched and documents curated, no model learned them.
    week("w1-fails", tokenize={"replay": {"source": str(root / "missing-replay.jsonl"), "max_chars": 6000}})
    week("w2-rejected", promote=IMPOSSIBLE)
    week("w3-promoted", promote=LENIENT)
    week("w4-quiet", promote=LENIENT)
    # One new article, linked from the front page: the next week has exactly one new document.
    site.pages["/news/harbour-hall-reopens-after-the-storm.html"] = Page(html_page("Harbour hall reopens", NEW_ARTICLE).encode())
    home = site.pages["/"]
    site.pages["/"] = Page(home.body.replace(b"</footer>", b'<p><a href="/news/harbour-hall-reopens-after-the-storm'
                                             b'.html">Harbour hall</a></p></footer>', 1), home.content_type)
    week("w5-one-new", promote=LENIENT)
    return root, out


def _curated(root, run_id) -> list[dict]:
    return read_docs(RunLayout(root, run_id).curated / "documents")


def _fetch_reasons(root, run_id) -> dict[str, str]:
    rows = [json.loads(x) for x in (RunLayout(root, run_id).crawl / "fetch_log.jsonl").read_text().splitlines()]
    return {r["url"]: r["reason"] for r in rows}


def test_a_failed_week_loses_nothing(weeks):
    root, out = weeks
    assert isinstance(out["w1-fails"], Exception) and "missing-replay" in str(out["w1-fails"])
    assert read_outcome(root / "state", "w1-fails") is None, "a failed run records no outcome"
    # w1 got as far as curation; w2 fetched and kept all of it again.
    w1, w2 = _curated(root, "w1-fails"), _curated(root, "w2-rejected")
    assert w1 and sorted(d["text"] for d in w1) == sorted(d["text"] for d in w2)
    assert "unchanged" not in _fetch_reasons(root, "w2-rejected").values()
    for step in ("exact_dedup", "near_dedup"):
        dropped = read_docs(RunLayout(root, "w2-rejected").curate_step(step) / "dropped")
        assert not [d for d in dropped if "earlier_run" in d["metadata"]["filter_reason"]]


def test_a_rejected_week_loses_nothing(weeks):
    root, out = weeks
    assert out["w2-rejected"]["outcome"] == "rejected" and out["w2-rejected"]["promoted"] is False
    assert read_outcome(root / "state", "w2-rejected")["outcome"] == "rejected"
    w2, w3 = _curated(root, "w2-rejected"), _curated(root, "w3-promoted")
    assert sorted(d["text"] for d in w2) == sorted(d["text"] for d in w3)
    assert visible_runs(root / "state", "w3-promoted") == []
    start = json.loads((RunLayout(root, "w3-promoted").run / "start.json").read_text())
    assert start["parent"] == str(start["source"]), "nothing was promoted before w3: it starts from the base"


def test_a_quiet_week_ends_as_nothing_new(weeks):
    root, out = weeks
    assert out["w3-promoted"]["outcome"] == "promoted"
    quiet = out["w4-quiet"]
    assert quiet["outcome"] == "nothing_new" and quiet["model"] is None
    layout = RunLayout(root, "w4-quiet")
    assert set(_fetch_reasons(root, "w4-quiet").values()) & {"unchanged"}
    assert not layout.tokens.exists() and not layout.model.exists(), "no tokenizing, no training"
    assert "Nothing new" in (layout.report / "run_report.md").read_text()
    assert read_outcome(root / "state", "w4-quiet")["outcome"] == "nothing_new"


def test_one_new_document_trains_from_the_champion(weeks):
    root, out = weeks
    result = out["w5-one-new"]
    assert result["outcome"] in ("promoted", "rejected")
    layout = RunLayout(root, "w5-one-new")
    assert len(_curated(root, "w5-one-new")) == 1
    assert sorted(visible_runs(root / "state", "w5-one-new")) == ["w3-promoted", "w4-quiet"]
    start = json.loads((layout.run / "start.json").read_text())
    assert start["parent"] == "w3-promoted", "continues from the champion"
    mix = json.loads((layout.tokens / "mix.json").read_text())
    assert mix["heldout_rule"] == "parent_heldout" and mix["docs_out"] == 1
    parent_heldout = RunLayout(root, "w3-promoted").tokens / "heldout" / "domain.jsonl"
    assert (layout.tokens / "heldout" / "domain.jsonl").read_text() == parent_heldout.read_text()
    assert "held-out set of the run this one continues from (w3-promoted)" in (layout.report / "run_report.md").read_text()
    decision = json.loads((layout.run / "promote" / "decision.json").read_text())
    assert "w3-promoted" in json.dumps(decision), "the gate's baseline is the champion"


def test_start_model_follows_the_champion_flag_and_a_missing_champion_is_named(weeks, tiny_model, tmp_path):
    from cpt_core.evaluate.registry import ChampionMissingError
    from cpt_core.train.base_model import BaseModelConfig
    from tasks.stages import base_model_task

    root, _ = weeks
    fresh = base_model_task.fn(BaseModelConfig(source=str(tiny_model), continue_from_champion=False),
                               RunLayout.create(root, "w6-from-base"))
    assert fresh["parent"] == str(tiny_model) and fresh["model_dir"] == str(tiny_model)
    # Another root whose registry points at a champion folder that is gone.
    other = tmp_path / "other"
    (other / "state").mkdir(parents=True)
    registry = json.loads((root / "state" / "registry.json").read_text())
    champion = registry["champion"]["run_id"]
    registry["champion"]["model_dir"] = str(tmp_path / "gone")
    (other / "state" / "registry.json").write_text(json.dumps(registry))
    with pytest.raises(ChampionMissingError) as err:
        base_model_task.fn(BaseModelConfig(source=str(tiny_model)), RunLayout.create(other, "w7"))
    assert champion in str(err.value) and "gone" in str(err.value) and "reset-champion" in str(err.value)


def test_a_second_run_on_a_busy_root_fails_at_once(weeks, tiny_model):
    from cpt_core.lock import RootBusyError
    from flows.knowledge_refresh import knowledge_refresh
    from tests.test_lock import hold_root_in_subprocess

    root, _ = weeks
    proc = hold_root_in_subprocess(root, "w8-running")
    try:
        with pytest.raises(RootBusyError, match="w8-running"):
            knowledge_refresh(small_config(root, tiny_model, run_id="w9-second", ingest={"sources": []}))
    finally:
        proc.kill()
        proc.wait()
    assert not (root / "runs" / "w9-second").exists(), "the second run touched nothing"
