"""Entity extraction (English, Korean), restatements, the auto probe and the synthesize stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cpt_core.data.heldout import split_heldout
from cpt_core.io import write_jsonl
from cpt_core.synthesize.extract import extract_relations, mentions
from cpt_core.synthesize.probe import words
from cpt_core.synthesize.restate import clause_question, pair_documents, question_for, restate
from cpt_core.synthesize.stage import PROBE_FILE, SYNTHETIC_FILE, SynthesizeConfig, run_synthesize

CITIES = ["Busan", "Lisbon", "Oslo", "Denver", "Nairobi", "Quito", "Hanoi", "Perth", "Turin", "Leeds", "Austin",
          "Dakar", "Kyoto", "Bergen", "Cusco", "Gdansk"]
FIRMS = ["Aria Labs", "Bolt Works", "Cedar Systems", "Delta Foods", "Ember Motors", "Fjord Bank", "Granite Media",
         "Harbor Energy", "Indigo Health", "Juniper Air", "Kestrel Steel", "Lumen Retail", "Maple Robotics",
         "Nimbus Games", "Orchid Textiles", "Pioneer Rail"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
KO_PLACES = ["부산", "서울", "대구", "인천", "광주", "대전", "울산", "제주"]
KO_PEOPLE = ["김민수", "이영희", "박지성", "최유진", "정하늘", "강서연", "조현우", "윤소라"]


def _corpus() -> list[dict]:
    docs = []
    for i, (firm, city) in enumerate(zip(FIRMS, CITIES, strict=True)):
        text = (
            f"{firm} opened a new plant in {city} on {MONTHS[i % 12]} {i + 3}, 2026. "
            f"The plant employs {120 + 37 * i} people, the company said. "
            f"{firm} chose {city} after a long search."
        )
        docs.append({"id": f"en-{i:02d}", "text": text, "metadata": {"language": "en"}})
    for i, (place, person) in enumerate(zip(KO_PLACES, KO_PEOPLE, strict=True)):
        text = f"{person} 시장은 2026년 {i + 1}월 {i + 5}일 {place}에서 새 도서관 {i + 2}곳을 열었다. 주민들이 모였다."
        docs.append({"id": f"ko-{i:02d}", "text": text, "metadata": {"language": "ko"}})
    return docs


@pytest.fixture
def curated(tmp_path) -> Path:
    folder = tmp_path / "curated"
    write_jsonl(_corpus(), folder / "documents" / "00000.jsonl")
    return folder


def _synth(curated: Path, out: Path, **cfg):
    config = SynthesizeConfig(**{"probe": {"fraction": 0.3}, **cfg})
    return run_synthesize(config, curated, out, heldout_fraction=0.15, heldout_max_docs=5)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------------- extraction


def test_english_mentions_find_entities_dates_and_numbers():
    found = {(m.text, m.type) for m in mentions(
        "The Aria Labs board met in Busan on March 3, 2026, and approved $45 million for 1,200 workers.", "en")}
    assert {("Aria Labs", "entity"), ("Busan", "entity"), ("March 3, 2026", "date")} <= found
    assert ("$45 million", "number") in found and ("1,200", "number") in found
    assert not any(text in ("The", "March") for text, _ in found)  # sentence starts and months are no entities
    iso = {(m.text, m.type) for m in mentions("Fjord Bank reported on 2026-04-01 in Oslo.", "en")}
    assert ("2026-04-01", "date") in iso and ("2026", "number") not in iso


def test_korean_mentions_use_proper_nouns_numbers_and_dates():
    found = {(m.text, m.type) for m in mentions("김민수 대표는 2026년 3월 5일 부산에 공장 3곳을 열었다.", "ko")}
    assert {("김민수", "entity"), ("부산", "entity"), ("2026년 3월 5일", "date"), ("3곳", "number")} <= found
    assert not any(t == "number" and text in ("2026", "3", "5") for text, t in found)  # inside the date


def test_relations_need_two_mentions_one_an_entity():
    rels = extract_relations("d", "Aria Labs opened in Busan. It rained a lot. 1,200 people came in 2026.", "en")
    assert [r.sentence for r in rels] == ["Aria Labs opened in Busan."]
    ko = extract_relations("k", "김민수 시장은 서울에서 연설했다. 날씨가 좋았다.")  # language from the script
    assert ko and ko[0].language == "ko" and {m.text for m in ko[0].mentions} == {"김민수", "서울"}


def test_restatements_keep_the_fact_and_ask_one_question_per_document():
    rel = extract_relations("d", "Aria Labs opened a plant in Busan on March 3, 2026.", "en")[0]
    date = next(m for m in rel.mentions if m.type == "date")
    assert question_for(rel, date) == "Aria Labs opened a plant in Busan on which date?"
    docs = restate([rel], ["statement", "qa"], per_relation=3, seed=0)
    assert len(docs) == 4 and sum(d["form"] == "qa" for d in docs) == 1
    assert all("Aria Labs" in d["text"] for d in docs)
    qa = next(d["text"] for d in docs if d["form"] == "qa")
    assert qa.count("?") == 1 and ("Busan" in qa.split("?")[1] or "March 3, 2026" in qa.split("?")[1])
    assert restate([rel], ["statement", "qa"], 3, seed=0) == docs  # deterministic


def test_more_questions_per_relation_ask_about_each_end_of_the_fact():
    rel = extract_relations("d", "Ludolix Works acquired Ixlirune Analytics on 6 March 2026.", "en")[0]
    docs = restate([rel], ["qa"], per_relation=1, seed=0, questions=3)
    answers = [d["text"].split("?", 1)[1] for d in docs]
    assert len(docs) == 3 and all(d["form"] == "qa" and d["text"].count("?") == 1 for d in docs)
    assert len({d["text"].split("?")[0] for d in docs}) == 3  # three different questions
    assert any("Ludolix Works" in a for a in answers)  # the first entity is asked about too
    assert restate([rel], ["qa"], 1, seed=0) == docs[:1]  # one question: the same as before


def test_capitalised_sentence_starts_are_no_entities_and_dates_need_no_year():
    text = ("Voters in Ixmewick elected Ines Miraander as mayor. Staff at Ixlirune Analytics were told on Friday "
            "6 March. Eltemont chose Fenna Wendoris. The council of Eltemont met.")
    rels = {r.sentence: {(m.text, m.type) for m in r.mentions} for r in extract_relations("d", text, "en")}
    assert rels["Voters in Ixmewick elected Ines Miraander as mayor."] == {("Ixmewick", "entity"),
                                                                            ("Ines Miraander", "entity")}
    assert rels["Staff at Ixlirune Analytics were told on Friday 6 March."] == {("Ixlirune Analytics", "entity"),
                                                                                 ("6 March", "date")}
    # a one-word name that starts a sentence stays when the document names it inside another one
    assert ("Eltemont", "entity") in rels["Eltemont chose Fenna Wendoris."]


def test_pair_questions_ask_each_fact_from_both_ends_on_its_clause():
    sentence = "On 21 March 2026, Maander Logistics unveiled the Bredodor Air at a crowded press event, officials said."
    rel = extract_relations("d", sentence, "en")[0]
    maker, product = rel.entities
    assert clause_question(rel, product, maker) == "Which name unveiled the Bredodor Air at a crowded press event?"
    assert clause_question(rel, maker, product) == "Maander Logistics unveiled which name at a crowded press event?"
    docs = pair_documents(rel, copies=2, seed=0)
    assert len(docs) == 2 and all(len(copy) == 3 for copy in docs)  # each entity to the other, the date once; twice
    for copy in docs:
        answers = [d.rsplit("?", 1)[1] for d in copy]
        assert sum("Maander Logistics" in a for a in answers) == 1 and sum("Bredodor Air" in a for a in answers) == 1
        assert all("officials said" not in d for d in copy)  # the clause, not the whole sentence
    names = [m.text for m in rel.mentions]
    asked = [[next(n for n in names if n in d.rsplit("?", 1)[1]) for d in copy] for copy in docs]
    assert docs[0] != docs[1] and asked[0] == asked[1]  # the same questions in other templates
    assert pair_documents(rel, 2, seed=0) == docs  # deterministic
    ko = extract_relations("k", "김민수 시장은 2026년 3월 5일 부산에서 연설했다.", "ko")[0]
    assert all(d.count("?") == 1 for d in pair_documents(ko, 1, 0)[0])


# ------------------------------------------------------------------------------------------------ the stage


def test_synthetic_documents_hold_no_heldout_or_probe_text(curated, tmp_path):
    manifest = _synth(curated, tmp_path / "syn")
    s = manifest["summary"]
    synthetic = [r["text"] for r in _rows(tmp_path / "syn" / SYNTHETIC_FILE)]
    probe = _rows(tmp_path / "syn" / PROBE_FILE)
    assert s["docs_out"] == len(synthetic) > 0 and s["heldout_docs"] >= 1 and probe
    assert {"pair", "qa", "summary"} <= set(s["docs_by_form"])
    _, heldout = split_heldout(_corpus(), 0.15, 5)
    held_ids = {d["id"] for d in heldout}
    meta = json.loads((tmp_path / "syn" / "synthesis.json").read_text())
    assert set(meta["heldout_ids"]) == held_ids
    for row in _rows(tmp_path / "syn" / SYNTHETIC_FILE):
        assert not set(row["metadata"]["source_docs"]) & held_ids
    held_sentences = [sent for d in heldout for sent in d["text"].replace("다. ", "다.\n").split(". ") if len(sent) > 20]
    for text in synthetic:
        assert not any(sent.rstrip(".") in text for sent in held_sentences)
        for item in probe:
            assert item["evidence"] not in text and item["question"] not in text
    assert s["synthetic_chars"] <= 4 * s["train_chars"]  # the default budget: 4x
    smaller = _synth(curated, tmp_path / "small", budget_multiple=0.2)["summary"]
    assert 0 < smaller["synthetic_chars"] <= 0.2 * smaller["train_chars"] < s["synthetic_chars"]


def test_probe_items_are_answerable_from_their_source_and_not_verbatim_in_training(curated, tmp_path):
    manifest = _synth(curated, tmp_path / "syn")
    probe = _rows(tmp_path / "syn" / PROBE_FILE)
    docs = {d["id"]: d for d in _corpus()}
    _, heldout = split_heldout(_corpus(), 0.15, 5)
    training_lines = [d["text"] for d in _corpus() if d not in heldout]
    training_lines += [r["text"] for r in _rows(tmp_path / "syn" / SYNTHETIC_FILE)]
    assert {item["kind"] for item in probe} == {"multiple_choice", "cloze"}
    assert {item["language"] for item in probe} == {"en", "ko"}
    for item in probe:
        source = docs[item["source_doc"]]["text"]
        answer = item["choices"][item["answer"]]
        assert answer == item["answer_text"] and answer in item["evidence"] and item["evidence"] in source
        assert len(set(item["choices"])) == 4 and sum(answer == c for c in item["choices"]) == 1
        assert [c for c in item["choices"] if c in item["evidence"]] == [answer]  # one right answer
        assert not any(item["question"].replace("___", "").strip() in line for line in training_lines)
        assert item["ngram_overlap"] <= 0.5
        cues = [w for w in words(item["question"]) if w in words(source)]
        assert cues, "the question must name something of its source"
    report = manifest["summary"]["probe_overlap"]
    assert report["ngram"] == 4 and report["max_overlap"] <= 0.5 and report["relations_held_out"] >= 1


def test_stage_is_deterministic_and_resumable(curated, tmp_path):
    first = _synth(curated, tmp_path / "a")
    again = _synth(curated, tmp_path / "a")
    other = _synth(curated, tmp_path / "b")
    assert not first["skipped"] and again["skipped"] and first["key"] == again["key"]
    assert first["output_hash"] == other["output_hash"]
    # A crash before the rename leaves only a .partial folder, which the rerun replaces.
    (tmp_path / "c.partial").mkdir()
    (tmp_path / "c.partial" / "junk.jsonl").write_text("{}\n")
    assert _synth(curated, tmp_path / "c")["output_hash"] == first["output_hash"]
    assert not (tmp_path / "c.partial").exists()
    changed = _synth(curated, tmp_path / "a", seed=1)
    assert not changed["skipped"] and changed["key"] != first["key"]


def test_a_knowledge_graph_turns_the_default_strategy_off(curated, tmp_path):
    config = SynthesizeConfig()
    assert config.active_strategies(False) == ["entity"] and config.active_strategies(True) == []
    manifest = run_synthesize(config, curated, tmp_path / "syn", 0.15, 5, has_knowledge_graph=True)
    assert manifest["summary"]["docs_out"] == 0 and manifest["summary"]["probe_items"] == 0
    assert SynthesizeConfig(strategies=["entity"]).active_strategies(True) == ["entity"]
    with pytest.raises(ValueError, match="strategies"):
        SynthesizeConfig(strategies=["llm"])


def test_tokenize_mixes_the_synthetic_documents_within_their_budget(curated, tmp_path):
    from cpt_core.data.tokenize import TokenizeConfig, run_tokenize
    from cpt_core.train.base_model import build_tiny_llama

    texts = [d["text"] for d in _corpus()]
    tokenizer_dir = build_tiny_llama(tmp_path / "tiny", texts * 3, vocab_size=300, seq_len=32)
    tok = TokenizeConfig(seq_len=32, replay_ratio=0.0, synthetic_qa=False, heldout_fraction=0.15, heldout_max_docs=5)
    syn = tmp_path / "syn"
    run_synthesize(SynthesizeConfig(budget_multiple=0.5), curated, syn, tok.heldout_fraction, tok.heldout_max_docs)
    s = run_tokenize(tok, curated, tokenizer_dir, tmp_path / "tokens", synthetic_dir=syn)["summary"]
    budget = s["synthetic_budget"]
    assert s["tokens_by_source"]["synthetic"] > 0 and s["mix"]["synthetic"] > 0
    assert 0 < budget["tokens"] <= budget["budget_tokens"] and budget["realised_multiple"] <= 0.5
    assert json.loads((tmp_path / "tokens" / "mix.json").read_text())["synthetic_budget"] == budget
    heldout = [json.loads(x)["text"] for x in (tmp_path / "tokens" / "heldout" / "domain.jsonl").read_text().splitlines()]
    synthetic = {r["text"] for r in _rows(syn / SYNTHETIC_FILE)}
    assert heldout and not synthetic & set(heldout)  # synthetic documents never enter the held-out file
    # A synthesize output made with another held-out split is refused, not silently mixed.
    other = tmp_path / "syn-other"
    run_synthesize(SynthesizeConfig(), curated, other, 0.5, 10)
    with pytest.raises(ValueError, match="held out other documents"):
        run_tokenize(tok, curated, tokenizer_dir, tmp_path / "tokens2", synthetic_dir=other)
