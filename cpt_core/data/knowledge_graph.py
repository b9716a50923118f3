"""Knowledge graphs of dated facts: synthetic question/answer documents and a multiple-choice probe.

A knowledge graph here is a JSONL file of :class:`Fact` rows. Each fact names its answer (``object``), the
kind of thing the answer is (``object_type``, which is where distractors for the probe are drawn from), the
question phrasings that may appear in training data (``questions``) and one phrasing reserved for
evaluation (``probe_question``), which never appears in anything the model trains on.

Why both: CPT on articles alone teaches a model facts weakly; adding short question/answer lines in several
wordings per fact lifts recall markedly (a phrasing-robust form of the same knowledge). Measuring with a
question phrased differently from every training line checks that the fact was learned, not the sentence.
"""

from __future__ import annotations

import random
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

QA_TEMPLATES = (
    "Q: {question}\nA: {answer}.",
    "Question: {question}\nAnswer: {answer}.",
    "{question} The answer is {answer}.",
    "Asked \"{question}\", the record says: {answer}.",
)


class Fact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    subject: str
    relation: str
    object: str
    object_type: str
    date: str = Field(description="ISO date the fact became true")
    statement: str = Field(description="one declarative sentence stating the fact")
    questions: list[str] = Field(min_length=1, description="training phrasings; the answer is `object`")
    probe_question: str = Field(description="evaluation phrasing, never used in training data")


def save_facts(facts: list[Fact], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for fact in facts:
            fh.write(fact.model_dump_json() + "\n")


def load_facts(path: Path) -> list[Fact]:
    facts = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                facts.append(Fact.model_validate_json(line))
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: not a valid fact: {err}") from None
    return facts


def qa_documents(facts: list[Fact], seed: int = 0) -> list[str]:
    """Short documents per fact: its statement alone, and each training question with its answer alone.

    One question per document, on purpose: packed with the statement or with another answered question,
    the answer could be copied from earlier in the same context, and the model would learn to copy rather
    than to recall. Documents are shuffled before packing, so each answer has to come from the weights.
    """
    rng = random.Random(seed)
    docs = []
    for fact in facts:
        docs.append(fact.statement)
        for i, question in enumerate(fact.questions):
            template = QA_TEMPLATES[(i + rng.randrange(len(QA_TEMPLATES))) % len(QA_TEMPLATES)]
            docs.append(template.format(question=question, answer=fact.object))
    return docs


def probe_rows(facts: list[Fact], n_choices: int = 4, seed: int = 0) -> list[dict]:
    """Multiple-choice rows ``{id, question, choices, answer}``; distractors share the answer's type."""
    rng = random.Random(seed)
    by_type: dict[str, list[str]] = {}
    for fact in facts:
        by_type.setdefault(fact.object_type, [])
        if fact.object not in by_type[fact.object_type]:
            by_type[fact.object_type].append(fact.object)
    rows = []
    for fact in facts:
        pool = [o for o in by_type[fact.object_type] if o != fact.object]
        if len(pool) < n_choices - 1:
            raise ValueError(
                f"fact {fact.id}: only {len(pool)} other answers of type {fact.object_type!r}; "
                f"{n_choices - 1} are needed for distractors"
            )
        choices = rng.sample(pool, n_choices - 1) + [fact.object]
        rng.shuffle(choices)
        rows.append(
            {"id": fact.id, "question": fact.probe_question, "choices": choices, "answer": choices.index(fact.object)}
        )
    return rows
