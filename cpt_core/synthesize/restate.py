"""Templated restatements of relations: statements, one question/answer per document, entity summaries.

A fact seen once, in one wording, is stored by a model but rarely made recallable; stated in several forms
(Physics of LMs 3.1), or linked to the other facts about the same entities (EntiGraph), it becomes
extractable. Without a generator model the forms are templates around the relation's own sentence:

- ``statement``: the sentence framed by its entities, in ``statements_per_relation`` different frames;
- ``qa``: a question made by replacing one mention of the sentence with a question word, and its answer,
  one per document, so the answer has to come from the weights and not from earlier in the same context;
- ``summary``: for each entity named in two or more relations (across documents), a document that lists
  what the corpus says about it, which ties facts about one entity together.

Every document is a pure function of its relations and the seed: the same corpus gives the same documents.
"""

from __future__ import annotations

import hashlib
import random

from cpt_core.synthesize.extract import Mention, Relation

FORMS = ("statement", "qa", "summary")

STATEMENT_TEMPLATES = {
    "en": (
        "About {subject}: {sentence}",
        "{sentence} This record concerns {subject} and {others}.",
        "Noted for {subject} ({others}): {sentence}",
        "{subject}, {others}. In one sentence: {sentence}",
        "Here is what is known linking {subject} with {others}. {sentence}",
    ),
    "ko": (
        "{subject}에 관한 사실: {sentence}",
        "{sentence} 이 기록은 {subject}, {others}에 관한 것이다.",
        "{subject} ({others}) 관련 기록: {sentence}",
        "{subject}, {others}. 한 문장으로: {sentence}",
        "{subject}와 {others}를 잇는 내용은 다음과 같다. {sentence}",
    ),
}
QA_TEMPLATES = {
    "en": ("Q: {question}\nA: {answer}.", "Question: {question}\nAnswer: {answer}.", "{question} {answer}."),
    "ko": ("질문: {question}\n답: {answer}.", "문: {question}\n답: {answer}.", "{question} 정답은 {answer}."),
}
QUESTION_WORDS = {
    "en": {"date": "which date", "number": "what number", "entity": "which name"},
    "ko": {"date": "언제", "number": "몇", "entity": "무엇"},
}
SUMMARY_HEADS = {"en": "What the sources say about {entity}:", "ko": "{entity}에 대해 알려진 사실:"}


def _score(*parts: object) -> int:
    return int(hashlib.sha256("\0".join(map(str, parts)).encode("utf-8")).hexdigest()[:12], 16)


def _others(relation: Relation, subject: Mention, language: str) -> str:
    joiner = ", " if language == "ko" else " and "
    return joiner.join(m.text for m in relation.mentions if m is not subject)


def statements(relation: Relation, n: int, seed: int) -> list[str]:
    """``n`` framings of the relation's sentence (different templates, picked by the seed)."""
    templates = STATEMENT_TEMPLATES[relation.language]
    subject = relation.entities[0]
    start = _score(seed, relation.sentence) % len(templates)
    return [
        templates[(start + i) % len(templates)].format(
            subject=subject.text, others=_others(relation, subject, relation.language), sentence=relation.sentence
        )
        for i in range(min(n, len(templates)))
    ]


def question_for(relation: Relation, answer: Mention) -> str:
    """The sentence with ``answer`` replaced by a question word, ending in a question mark."""
    word = QUESTION_WORDS[relation.language][answer.type]
    text = (relation.sentence[: answer.start] + word + relation.sentence[answer.end :]).strip()
    return text.rstrip(".!?。 ") + "?"


def qa_document(relation: Relation, seed: int) -> str:
    """One question and its answer about the relation; which mention is asked about depends on the seed."""
    return qa_documents(relation, 1, seed)[0]


def qa_documents(relation: Relation, n: int, seed: int) -> list[str]:
    """Up to ``n`` question/answer documents about the relation, each asking about a different mention.

    The first asks about a mention other than the sentence's first entity (picked by the seed); the next ones
    ask about the remaining mentions, the first entity included, so a fact is asked from each of its ends
    (who acquired X, and whom did Y acquire), each in the next template."""
    others = [m for m in relation.mentions if m is not relation.entities[0]] or relation.mentions
    first = others[_score(seed, "qa", relation.sentence) % len(others)]
    answers = [first] + [m for m in others if m is not first] + [m for m in relation.mentions if m not in others]
    templates = QA_TEMPLATES[relation.language]
    start = _score(seed, "qa-template", relation.sentence) % len(templates)
    return [
        templates[(start + i) % len(templates)].format(question=question_for(relation, answer), answer=answer.text)
        for i, answer in enumerate(answers[:n])
    ]


def summaries(relations: list[Relation], seed: int, max_facts: int = 8) -> list[tuple[str, list[Relation]]]:
    """``(text, relations used)`` for each entity named in two or more relations, facts in a seeded order."""
    by_entity: dict[tuple[str, str], list[Relation]] = {}
    for relation in relations:
        for entity in relation.entities:
            group = by_entity.setdefault((relation.language, entity.text), [])
            if all(r.sentence != relation.sentence for r in group):
                group.append(relation)
    out = []
    for (language, entity), group in sorted(by_entity.items()):
        if len(group) < 2:
            continue
        rng = random.Random(_score(seed, "summary", entity))
        chosen = rng.sample(group, min(max_facts, len(group)))
        lines = [SUMMARY_HEADS[language].format(entity=entity)] + [f"- {r.sentence}" for r in chosen]
        out.append(("\n".join(lines), chosen))
    return out


def restate(
    relations: list[Relation], forms: list[str], per_relation: int, seed: int, questions: int = 1
) -> list[dict]:
    """Synthetic documents ``{text, form, language, source_docs, rank}`` in a seeded, budget-friendly order.

    ``questions`` is the number of question/answer documents per relation (``qa_documents``); they come
    before the statements. ``rank`` orders them for a budget: every relation's first form comes before any
    relation's second, so a small budget still covers many facts rather than many wordings of a few.
    """
    docs = []
    for relation in relations:
        forms_of = []
        if "statement" in forms:
            forms_of += [("statement", text) for text in statements(relation, per_relation, seed)]
        if "qa" in forms:
            forms_of[:0] = [("qa", text) for text in qa_documents(relation, questions, seed)]  # most useful first
        for rank, (form, text) in enumerate(forms_of):
            docs.append({"text": text, "form": form, "language": relation.language,
                         "source_docs": [relation.doc_id], "rank": rank})
    if "summary" in forms:
        for rank, (text, used) in enumerate(summaries(relations, seed)):
            docs.append({"text": text, "form": "summary", "language": used[0].language,
                         "source_docs": sorted({r.doc_id for r in used}), "rank": rank % (per_relation + 1)})
    docs.sort(key=lambda d: (d["rank"], _score(seed, d["text"])))
    return docs
