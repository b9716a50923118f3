"""The evaluate stage: held-out reading, results.json for base and trained, a rerun that skips."""

from __future__ import annotations

import json

import pytest

from cpt_core.data.general_text import GeneralTextConfig
from cpt_core.evaluate.stage import EvalConfig, read_heldout, run_evaluate
from tests.evaluate.conftest import prose_texts

# ------------------------------------------------------------------------------------------ held-out reading


def test_read_heldout_caps_round_robin_across_languages(tmp_path):
    path = tmp_path / "heldout.jsonl"
    rows = [{"text": "e" * 400, "metadata": {"language": "en"}} for _ in range(5)]
    rows += [{"text": "k" * 400, "language": "ko"} for _ in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = read_heldout(path, max_chars=1000)
    assert [g["language"] for g in got] == ["en", "ko", "en"]
    assert sum(len(g["text"]) for g in got) == 1000
    assert len(read_heldout(path, max_chars=100_000)) == 10

    path.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match=r"heldout.jsonl:2: .*'text'"):
        read_heldout(path, 1000)
    path.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(ValueError, match=r"heldout.jsonl:2: not valid JSON"):
        read_heldout(path, 1000)
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_heldout(tmp_path / "nothere.jsonl", 1000)


# ------------------------------------------------------------------------------------------ the stage


def test_run_evaluate_writes_results_and_skips_on_rerun(setup, tmp_path):
    heldout = tmp_path / "domain.jsonl"
    texts = setup["prose"]
    heldout.write_text(
        "".join(
            json.dumps({"text": t, "id": str(i), "metadata": {"language": "en" if i % 2 else "xx"}}) + "\n"
            for i, t in enumerate(texts)
        )
    )
    general = tmp_path / "general.txt"
    general.write_text("\n\n".join(prose_texts(4, seed=7)))
    cfg = EvalConfig(
        general_heldout=GeneralTextConfig(source=str(general), max_chars=5000),
        bpb_seq_len=64,
        batch_size=4,
        domain_max_chars=5000,
    )
    out = tmp_path / "eval"
    calls = []
    manifest = run_evaluate(
        cfg,
        setup["base_dir"],
        setup["trained_dir"],
        heldout,
        setup["kg"],
        out,
        progress=lambda *a: calls.append(a),
    )
    assert not manifest["skipped"]
    results = json.loads((out / "results.json").read_text())
    base, trained, delta = results["base"], results["trained"], results["delta"]
    assert trained["domain_bpb"] < base["domain_bpb"]
    assert delta["domain_bpb_rel"] == pytest.approx(
        (trained["domain_bpb"] - base["domain_bpb"]) / base["domain_bpb"]
    )
    assert delta["probe_acc_points"] == pytest.approx(trained["probe_acc"] - base["probe_acc"])
    assert set(trained["domain"]["by_language"]) == {"en", "xx"}
    assert sum(v["bytes"] for v in trained["domain"]["by_language"].values()) == trained["domain"]["bytes"]
    assert trained["probe"]["n"] == len(setup["rows"])
    # Document-bootstrap intervals around each bpb, per language, and paired around the change.
    for column in (base, trained):
        for metric in ("domain", "general"):
            lo, hi = column[f"{metric}_bpb_ci"]
            assert lo - 1e-9 <= column[f"{metric}_bpb"] <= hi + 1e-9
        for part in column["domain"]["by_language"].values():
            assert part["bpb_ci"][0] - 1e-9 <= part["bpb"] <= part["bpb_ci"][1] + 1e-9
    lo, hi = delta["domain_bpb_rel_ci"]
    assert lo - 1e-9 <= delta["domain_bpb_rel"] <= hi + 1e-9 and hi < 0  # trained on these texts: better on every resample
    assert delta["general_bpb_rel_ci"][0] - 1e-9 <= delta["general_bpb_rel"] <= delta["general_bpb_rel_ci"][1] + 1e-9
    assert delta["domain_bpb_diff"] == pytest.approx(trained["domain_bpb"] - base["domain_bpb"])
    assert set(delta["by_language"]) == {"en", "xx"}
    for language, change in delta["by_language"].items():
        b, t = base["domain"]["by_language"][language]["bpb"], trained["domain"]["by_language"][language]["bpb"]
        assert change["diff"] == pytest.approx(t - b)
        assert change["diff_ci"][0] - 1e-9 <= change["diff"] <= change["diff_ci"][1] + 1e-9
    assert "95%" in manifest["summary"]["log_line"]
    summary = manifest["summary"]
    assert summary["trained_domain_bpb"] == trained["domain_bpb"]
    assert "domain bpb" in summary["log_line"] and summary["seconds"] > 0
    assert calls, "progress was never reported"

    again = run_evaluate(cfg, setup["base_dir"], setup["trained_dir"], heldout, setup["kg"], out)
    assert again["skipped"]


def test_run_evaluate_scores_the_auto_probe_for_base_and_trained(setup, tmp_path):
    heldout = tmp_path / "domain.jsonl"
    heldout.write_text("".join(json.dumps({"text": t}) + "\n" for t in setup["prose"]))
    general = tmp_path / "general.txt"
    general.write_text("\n\n".join(prose_texts(2, seed=7)))
    probe = tmp_path / "probe.jsonl"  # rows as the synthesize stage writes them, extra fields included
    probe.write_text("".join(json.dumps({**r, "kind": "multiple_choice", "ngram_overlap": 0.1}) + "\n"
                             for r in setup["rows"]))
    cfg = EvalConfig(general_heldout=GeneralTextConfig(source=str(general), max_chars=2000), bpb_seq_len=64,
                     batch_size=4, domain_max_chars=2000)
    manifest = run_evaluate(cfg, setup["base_dir"], setup["trained_dir"], heldout, None, tmp_path / "eval",
                            auto_probe=probe)
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    base, trained = results["base"], results["trained"]
    assert base["probe_acc"] is None and trained["auto_probe"]["n"] == len(setup["rows"])
    assert trained["auto_probe_acc"] > base["auto_probe_acc"]  # the trained model saw these lines
    assert results["delta"]["auto_probe_acc_points"] == pytest.approx(trained["auto_probe_acc"] - base["auto_probe_acc"])
    assert manifest["summary"]["auto_probe_n"] == len(setup["rows"])
    probe.write_text('{"id": "x", "question": "q"}\n')
    with pytest.raises(ValueError, match=r"probe.jsonl:1: not a probe row"):
        run_evaluate(cfg, setup["base_dir"], setup["trained_dir"], heldout, None, tmp_path / "eval2",
                     auto_probe=probe)


def test_run_evaluate_re_runs_the_auto_probes_of_earlier_runs(setup, tmp_path):
    heldout = tmp_path / "domain.jsonl"
    heldout.write_text("".join(json.dumps({"text": t}) + "\n" for t in setup["prose"]))
    general = tmp_path / "general.txt"
    general.write_text("\n\n".join(prose_texts(2, seed=7)))
    earlier = {}
    for run_id, rows in (("r0", setup["rows"]), ("r1", setup["rows"][:3])):
        earlier[run_id] = tmp_path / "probes" / f"{run_id}.jsonl"
        earlier[run_id].parent.mkdir(exist_ok=True)
        earlier[run_id].write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = EvalConfig(general_heldout=GeneralTextConfig(source=str(general), max_chars=2000), bpb_seq_len=64,
                     batch_size=4, domain_max_chars=2000)
    manifest = run_evaluate(cfg, setup["base_dir"], setup["trained_dir"], heldout, None, tmp_path / "eval",
                            earlier_probes=earlier)
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    base, trained = results["base"]["earlier_probes"], results["trained"]["earlier_probes"]
    assert set(base) == set(trained) == {"r0", "r1"} and trained["r1"]["n"] == 3
    assert trained["r0"]["acc"] > base["r0"]["acc"]  # the trained model saw these lines
    points = results["delta"]["earlier_probe_points"]
    assert points["r0"] == pytest.approx(trained["r0"]["acc"] - base["r0"]["acc"])
    assert manifest["summary"]["earlier_probes"]["r1"]["trained"] == trained["r1"]["acc"]
    fewer = run_evaluate(cfg, setup["base_dir"], setup["trained_dir"], heldout, None, tmp_path / "eval",
                         earlier_probes={"r0": earlier["r0"]})
    assert not fewer["skipped"]  # another set of earlier probes is another evaluation
