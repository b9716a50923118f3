"""Templated restatements of relations: statements, one question/answer per document, entity summaries.

A fact seen once, in one wording, is stored by a model but rarely made recallable; stated in several forms
(Physics of LMs 3.1), or linked to the other facts about the same entities (EntiGraph), it becomes
extractable. Without a generator model the forms are templates around the relation's own sentence:

- ``statement``: the sentence framed by its entities, in ``statements_per_relation`` different frames;
- ``qa``: a question made by replacing one mention of the sentence with a question word, and its answer,
  one per document, so the answer has to come from the weights and not from earlier in the same context;
- ``summary``: for each entity named in two or more relations (across documents), a document that lists
  what the corpus says about it, which ties facts about one entity together;
- ``pair``: short questions from one entity of the sentence to each other mention, in both directions, each
  asked on the clause that links the two (the words between them and a few either side), not the whole
  sentence, and rendered ``copies`` times in different templates. A model learns a fact in the direction it
  reads it (A is B does not teach B is A), and a question whose answer follows its cue directly, seen in
  several wordings, is what makes a fact recallable; the short clause keeps the budget on the fact rather
  than on the sentence's other clauses.

Every document is a pure function of its relations and the seed: the same corpus gives the same documents.
"""

from __future__ import annotations

import hashlib
import random
import re

from cpt_core.synthesize.extract import Mention, Relation

DEFAULT_FORMS = ("pair", "qa", "summary")

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
    "en": ("Q: {question}\nA: {answer}.", "Question: {question}\nAnswer: {answer}.", "{question} {answer}.",
           "{question} The answer is {answer}."),
    "ko": ("질문: {question}\n답: {answer}.", "문: {question}\n답: {answer}.", "{question} 정답은 {answer}.",
           "{question} 답은 {answer}이다."),
}
QUESTION_WORDS = {
    "en": {"date": "which date", "number": "what number", "entity": "which name"},
    "ko": {"date": "언제", "number": "몇", "entity": "무엇"},
}
# How far a pair's clause reaches beyond its two mentions (words), and where it stops regardless.
CLAUSE_BEFORE, CLAUSE_AFTER = 4, 6
_CLAUSE_STOP = ",;:()\u2014"
_TRAILING = frozenset("a an the of in on at to for from by with and or as its their his her".split())
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


def clause_question(relation: Relation, cue: Mention, answer: Mention) -> str:
    """A question on the clause linking ``cue`` and ``answer``: the words between them, up to
    ``CLAUSE_BEFORE`` words before and ``CLAUSE_AFTER`` after (stopping at punctuation or another mention),
    the answer replaced by a question word. Korean, whose clauses do not split that way, asks the sentence."""
    if relation.language != "en":
        return question_for(relation, answer)
    sentence = relation.sentence
    lo, hi = min(cue.start, answer.start), max(cue.end, answer.end)
    others = [m for m in relation.mentions if m is not cue and m is not answer]
    left_limit = max([0] + [m.end for m in others if m.end <= lo] + [sentence.rfind(c, 0, lo) + 1 for c in _CLAUSE_STOP])
    right_limit = min([len(sentence)] + [m.start for m in others if m.start >= hi]
                      + [i for c in _CLAUSE_STOP + "." if (i := sentence.find(c, hi)) >= 0])
    before = sentence[left_limit:lo].split()[-CLAUSE_BEFORE:]
    after = sentence[hi:right_limit].split()[:CLAUSE_AFTER]
    while after and after[-1].lower().strip(".!?") in _TRAILING:
        after.pop()
    word = QUESTION_WORDS["en"][answer.type]
    middle = sentence[lo:hi]
    middle = middle[: answer.start - lo] + word + middle[answer.end - lo :]
    text = " ".join(before + [middle] + after).strip().rstrip(".!? ")
    text = re.sub(rf"\b(?:the|a|an) ({word})\b", r"\1", text, flags=re.IGNORECASE)  # "the which name" -> "which name"
    return text[:1].upper() + text[1:] + "?"


def pair_documents(relation: Relation, copies: int, seed: int) -> list[list[str]]:
    """For each of ``copies`` renderings, a question/answer document per (entity, other mention) pair.

    Every entity of the sentence is a cue for every other entity, so each fact is asked from both ends; a
    date or number is asked from the entity nearest to it (its clause says most about it). Rendering ``c``
    uses the template after rendering ``c - 1``'s, starting from a seeded one."""
    templates = QA_TEMPLATES[relation.language]
    pairs = [(cue, answer) for cue in relation.entities for answer in relation.entities if answer is not cue]
    for answer in (m for m in relation.mentions if m.type != "entity"):  # a date or number: from its nearest entity
        pairs.append((min(relation.entities, key=lambda e: abs(e.start - answer.start)), answer))
    questions = [(clause_question(relation, cue, answer), answer.text) for cue, answer in pairs]
    start = _score(seed, "pair", relation.sentence) % len(templates)
    return [
        [templates[(start + c + i) % len(templates)].format(question=q, answer=a) for i, (q, a) in enumerate(questions)]
        for c in range(copies)
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
    relations: list[Relation], forms: list[str], per_relation: int, seed: int, questions: int = 1, copies: int = 1
) -> list[dict]:
    """Synthetic documents ``{text, form, language, source_docs, rank}`` in a seeded, budget-friendly order.

    ``questions`` is the number of question/answer documents per relation (``qa_documents``), ``copies`` the
    renderings of its pair questions (``pair_documents``). ``rank`` orders them for a budget: every
    relation's first rendering of its pairs, first question and first statement come before any relation's
    second, so a small budget still covers many facts rather than many wordings of a few.
    """
    docs = []
    for relation in relations:
        ranked: list[tuple[int, str, str]] = []
        if "pair" in forms:
            ranked += [(c, "pair", t) for c, texts in enumerate(pair_documents(relation, copies, seed)) for t in texts]
        if "qa" in forms:
            ranked += [(i, "qa", t) for i, t in enumerate(qa_documents(relation, questions, seed))]
        if "statement" in forms:
            ranked += [(i + 1, "statement", t) for i, t in enumerate(statements(relation, per_relation, seed))]
        for rank, form, text in ranked:
            docs.append({"text": text, "form": form, "language": relation.language,
                         "source_docs": [relation.doc_id], "rank": rank})
    if "summary" in forms:
        for rank, (text, used) in enumerate(summaries(relations, seed)):
            docs.append({"text": text, "form": "summary", "language": used[0].language,
                         "source_docs": sorted({r.doc_id for r in used}), "rank": rank % (per_relation + 1)})
    docs.sort(key=lambda d: (d["rank"], _score(seed, d["text"])))
    return docs
