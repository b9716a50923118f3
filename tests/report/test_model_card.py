"""The model card beside a saved model: base and lineage, data, mix, training config, evaluation, decision."""

from __future__ import annotations

import json

from cpt_core.evaluate.gate import Decision
from cpt_core.evaluate.registry import Registry
from cpt_core.layout import RunLayout
from cpt_core.report.model_card import model_card_markdown, write_model_card

RESULTS = {
    "base": {"domain_bpb": 1.2, "domain_bpb_ci": [1.15, 1.25], "general_bpb": 0.9, "general_bpb_ci": [0.88, 0.92]},
    "trained": {"domain_bpb": 1.05, "domain_bpb_ci": [1.0, 1.1], "general_bpb": 0.91, "general_bpb_ci": [0.89, 0.93]},
    "delta": {
        "domain_bpb_rel": -0.125,
        "domain_bpb_rel_ci": [-0.15, -0.1],
        "general_bpb_rel": 0.0111,
        "general_bpb_rel_ci": [0.005, 0.016],
    },
}


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)


def fake_run(root, run_id="r2") -> RunLayout:
    layout = RunLayout.create(root, run_id)
    (layout.model / "final").mkdir(parents=True)
    _write(layout.run / "start.json", {"model_dir": "/m/r1", "parent": "r1", "source": "hf:org/base-7b"})
    fetched = [{"url": f"http://docs.example.org/p{i}.html", "reason": "fetched"} for i in range(3)]
    fetched += [{"url": "http://news.example.com/a.html", "reason": "fetched"}]
    fetched += [{"url": "http://news.example.com/gone.html", "reason": "http_404"}]
    _write(layout.crawl / "fetch_log.jsonl", "".join(json.dumps(r) + "\n" for r in fetched))
    _write(layout.extract / "_manifest.json", {"summary": {"docs_in": 4, "docs_out": 4, "dropped": {}}})
    quality = {"summary": {"docs_in": 4, "docs_out": 3, "dropped": {"gopher_short_doc": 1}}}
    _write(layout.curate_step("quality") / "_manifest.json", quality)
    mix = {
        "tokens_by_source": {"domain": 7500, "replay": 2500},
        "docs_by_source": {"domain": 3, "replay": 9},
        "mix": {"domain": 0.75, "replay": 0.25},
    }
    _write(layout.tokens / "mix.json", mix)
    _write(layout.model / "spec.json", {"train": {"lr": 0.0003, "max_steps": 6}})
    probes = {"base": {"auto_probe_acc": 0.2, "earlier_probes": {"r1": {"acc": 0.6, "n": 20}}},
              "trained": {"auto_probe_acc": 0.55, "earlier_probes": {"r1": {"acc": 0.5, "n": 20}}},
              "delta": {"auto_probe_acc_points": 0.35, "earlier_probe_points": {"r1": -0.1}}}
    _write(layout.eval / "results.json", {k: {**v, **probes[k]} for k, v in RESULTS.items()})
    decision = {"promote": True, "reasons": ["domain bits/byte 1.2000 -> 1.0500 (-12.50%): ok"]}
    _write(layout.run / "promote" / "decision.json", decision)
    registry = Registry(layout.registry)
    registry.record("r1", "/m/r1", RESULTS, Decision(True, ["ok"]), {"parent": "hf:org/base-7b", "config_hash": "c1"})
    registry.record(run_id, layout.model / "final", RESULTS, Decision(True, ["ok"]), {"parent": "r1", "config_hash": "c2"})
    return layout


def test_model_card_names_base_lineage_data_mix_config_eval_and_decision(tmp_path):
    layout = fake_run(tmp_path)
    path = write_model_card(layout)
    assert path == layout.model / "final" / "README.md"
    card = path.read_text()
    assert card == model_card_markdown(layout)
    assert card.startswith("# Model `r2`") and "Continued pre-training of `hf:org/base-7b`" in card
    lineage = card.split("## Lineage")[1].split("## Data")[0]
    assert "1. `r2` (this run): promoted, config hash `c2`" in lineage
    assert "2. `r1`: promoted, config hash `c1`" in lineage and "3. base model `hf:org/base-7b`" in lineage
    assert "| docs.example.org | 3 |" in card and "| news.example.com | 1 |" in card  # 404 not counted
    assert "| curate/quality | 4 | 3 | 1 |" in card and "| extract | 4 | 4 | 0 |" in card
    assert "| domain | 3 | 7,500 | 75.0% |" in card and "| replay | 9 | 2,500 | 25.0% |" in card
    assert '"lr": 0.0003' in card and '"max_steps": 6' in card
    assert "| domain bits/byte | 1.2000 [1.1500, 1.2500] | 1.0500 [1.0000, 1.1000] | -12.50% [-15.00%, -10.00%] |" in card
    assert "| auto-probe accuracy (this run) | 0.200 | 0.550 | +35.0 points |" in card
    assert "| auto-probe accuracy (run r1) | 0.600 | 0.500 | -10.0 points |" in card
    assert "**Promoted** to champion" in card and "- domain bits/byte 1.2000 -> 1.0500 (-12.50%): ok" in card


def test_model_card_of_a_partial_run_says_what_is_missing(tmp_path):
    layout = RunLayout.create(tmp_path, "r9")
    assert write_model_card(layout) is None  # no saved model: no card
    (layout.model / "final").mkdir(parents=True)
    _write(layout.run / "start.json", {"model_dir": "/cache/base", "parent": "hf:org/base", "source": "hf:org/base"})
    card = write_model_card(layout).read_text()
    assert "Continued pre-training of `hf:org/base`" in card
    assert "`r9` (this run, not yet in the model registry)" in card
    for missing in ("No web pages fetched", "No mix.json.", "No training config.", "No evaluation results.",
                    "No promotion decision was made."):
        assert missing in card
