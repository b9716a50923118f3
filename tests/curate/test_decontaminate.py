"""Decontamination: documents overlapping the fact probe, auto probes, lm-eval data or held-out text go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cpt_core.curate.decontaminate import (
    DecontaminateConfig,
    OverlapIndex,
    gather_eval_texts,
    write_eval_texts,
)
from cpt_core.curate.pipeline import CurateConfig, run_curate_step
from cpt_core.data.knowledge_graph import Fact, save_facts
from tests.curate.test_pipeline import EN, KO, read_ids, write_docs

PROBE_EN = "Which river town did the harbour guild choose for its new winter market in 2026?"
ANSWER_EN = "Port Elloran"
PROBE_KO = "항구 조합이 2026년 겨울 시장을 열기로 한 도시는 어디인가?"
ANSWER_KO = "엘로란항"


def _kg(path: Path) -> Path:
    facts = [
        Fact(id="f-en", subject="harbour guild", relation="market_town", object=ANSWER_EN, object_type="town",
             date="2026-01-01", statement="The guild chose Port Elloran.", questions=["Where is the market?"],
             probe_question=PROBE_EN),
        Fact(id="f-ko", subject="항구 조합", relation="market_town", object=ANSWER_KO, object_type="town",
             date="2026-01-01", statement="조합은 엘로란항을 골랐다.", questions=["시장은 어디인가?"],
             probe_question=PROBE_KO),
    ]  # fmt: skip
    save_facts(facts, path)
    return path


def _run(tmp_path: Path, docs: list[dict], eval_texts: Path | None, **cfg) -> dict:
    write_docs(tmp_path / "in", docs)
    config = CurateConfig(decontaminate=DecontaminateConfig(**cfg))
    out = tmp_path / "curate" / "decontaminate"
    return run_curate_step("decontaminate", config, tmp_path / "in", out, tmp_path / "dedup", "r1", earlier_runs=[],
                           eval_texts=eval_texts)  # fmt: skip


def _read(folder: Path) -> dict[str, dict]:
    import gzip

    rows = {}
    for file in sorted(folder.rglob("*.jsonl.gz")):
        with gzip.open(file, "rt", encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                rows[row["id"]] = row
    return rows


def test_planted_probe_items_are_caught_in_english_and_korean(tmp_path):
    texts = write_eval_texts(gather_eval_texts(_kg(tmp_path / "kg.jsonl"), []), tmp_path / "eval.jsonl")
    docs = [
        {"id": "en-clean", "text": EN[0]},
        {"id": "en-planted", "text": EN[1] + f"\n\nQuiz: {PROBE_EN.upper()} — {ANSWER_EN}!"},
        {"id": "ko-clean", "text": KO},
        {"id": "ko-planted", "text": KO + f" {PROBE_KO} {ANSWER_KO}."},
        # a paraphrase of the fact (the knowledge itself, as training teaches it) is not the probe item
        {"id": "en-paraphrase", "text": EN[1] + f" The harbour guild chose {ANSWER_EN} for its winter market."},
        {"id": "en-question-only", "text": EN[1] + " " + PROBE_EN},  # 15 words: its 13-grams are indexed
    ]
    manifest = _run(tmp_path, docs, texts)
    out = tmp_path / "curate" / "decontaminate"
    assert read_ids(out / "documents") == ["en-clean", "ko-clean", "en-paraphrase"]
    assert manifest["summary"]["dropped"] == {"contaminated_fact_probe": 3}
    dropped = _read(out / "dropped")
    assert dropped["en-planted"]["metadata"]["filter_reason"] == "contaminated_fact_probe"
    assert dropped["ko-planted"]["metadata"]["contamination"]["id"] == "f-ko"


def test_flag_mode_keeps_and_marks_documents(tmp_path):
    texts = write_eval_texts(gather_eval_texts(_kg(tmp_path / "kg.jsonl"), []), tmp_path / "eval.jsonl")
    docs = [{"id": "en-clean", "text": EN[0]}, {"id": "en-planted", "text": f"{EN[1]} {PROBE_EN} {ANSWER_EN}"}]
    manifest = _run(tmp_path, docs, texts, mode="flag")
    kept = _read(tmp_path / "curate" / "decontaminate" / "documents")
    assert sorted(kept) == ["en-clean", "en-planted"]
    assert kept["en-planted"]["metadata"]["contamination"]["source"] == "fact_probe"
    assert "contamination" not in kept["en-clean"]["metadata"]
    assert manifest["summary"]["dropped"] == {}
    assert manifest["summary"]["contamination_fact_probe"] == 1


def test_lm_eval_data_auto_probes_and_heldout_text_by_ngram_overlap(tmp_path):
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    row = {"question": "What do farmers bring from the hills to the market square every single morning?",
           "choices": ["fresh vegetables", "fish"], "answer": 0}  # fmt: skip
    (task_dir / "data.jsonl").write_text(json.dumps(row) + "\n")
    (task_dir / "local.yaml").write_text(yaml.safe_dump({"task": "local", "dataset_path": "json",
                                                         "dataset_kwargs": {"data_files": {"test": "data.jsonl"}}}))  # fmt: skip
    probe = tmp_path / "probes" / "r0.jsonl"
    probe.parent.mkdir()
    probe.write_text(json.dumps({"id": "p1", "question": "Who sorts the donated books of the town library?",
                                 "choices": ["the mayor", "volunteers"], "answer": 1}) + "\n")  # fmt: skip
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("Students prepare for their exams there, and retired teachers come to read the morning papers.")
    from cpt_core.data.general_text import GeneralTextConfig

    rows = gather_eval_texts(None, [str(task_dir)], GeneralTextConfig(source=str(heldout)), [probe])
    assert {r["source"] for r in rows} == {"lm_eval:local", "auto_probe", "general_heldout"}
    index = OverlapIndex(rows, ngram=13, min_item_chars=20)
    lm_doc = "Each day: what do farmers bring from the hills to the market square every single morning? fish."
    assert index.match(lm_doc, 1)[0]["source"] == "lm_eval:local"
    assert index.match(EN[1], 1)[0]["source"] == "general_heldout"  # 13 words shared with the held-out text
    assert index.match("Who sorts the donated books of the town library? Volunteers do.", 1)[0]["id"] == "p1"
    assert index.match(EN[0], 1) is None
    assert index.match(EN[1], 100) is None  # min_overlap: too few shared n-grams


def test_extra_sources_and_bad_inputs_are_clear(tmp_path):
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"text": EN[0]}) + "\n")
    manifest = _run(tmp_path, [{"id": "en-0", "text": EN[0]}, {"id": "ko", "text": KO}], None,
                    extra_sources=[str(extra)])  # fmt: skip
    assert manifest["summary"]["dropped"] == {"contaminated_extra": 1}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        gather_eval_texts(None, [], None, [bad])
    with pytest.raises(FileNotFoundError, match="extra_sources"):
        _run(tmp_path / "again", [{"id": "ko", "text": KO}], None, extra_sources=[str(tmp_path / "missing")])
