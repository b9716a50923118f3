import pytest

from cpt_core.data.knowledge_graph import Fact, load_facts, probe_rows, qa_documents, save_facts


def _facts(n=6):
    return [
        Fact(id=f"f{i}", subject=f"Firm {i}", relation="acquired_by", object=f"Buyer {i}", object_type="company",
             date="2026-03-01", statement=f"Buyer {i} acquired Firm {i}.",
             questions=[f"Who acquired Firm {i}?", f"Which company bought Firm {i}?"],
             probe_question=f"Which firm now owns Firm {i}?")
        for i in range(n)
    ]


def test_round_trip_and_bad_line_named(tmp_path):
    path = tmp_path / "kg.jsonl"
    save_facts(_facts(), path)
    assert load_facts(path) == _facts()
    path.write_text(path.read_text() + '{"id": "broken"}\n')
    with pytest.raises(ValueError, match=r"kg.jsonl:7: not a valid fact"):
        load_facts(path)


def test_qa_documents_hold_one_answer_each_and_never_the_probe():
    facts = _facts()
    docs = qa_documents(facts, seed=1)
    assert len(docs) == len(facts) * 3  # the statement plus one document per training question
    for doc in docs:
        assert sum(doc.count(f.object) for f in facts) == 1, doc
        assert not any(f.probe_question in doc for f in facts)
    assert qa_documents(facts, seed=1) == docs
    assert qa_documents(facts, seed=2) != docs  # other seeds draw other answer templates


def test_probe_rows_draw_distractors_of_the_same_type():
    rows = probe_rows(_facts(), seed=0)
    for row, fact in zip(rows, _facts(), strict=True):
        assert row["question"] == fact.probe_question
        assert row["choices"][row["answer"]] == fact.object
        assert len(set(row["choices"])) == 4 and all(c.startswith("Buyer") for c in row["choices"])
    with pytest.raises(ValueError, match="distractors"):
        probe_rows(_facts(3))
