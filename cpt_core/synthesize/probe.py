"""Knowledge probes made from the run's own documents, for runs without a knowledge graph.

Some relations of the training documents are *held out from synthesis*: chosen by a hash of their sentence
(``probe_fraction``, at most ``max_items``), they stay in the raw documents the model trains on, but no
synthetic document restates them. Each becomes probe items whose answer is one mention of the sentence (a
date, a number or an entity): a multiple-choice item and a cloze item, with distractors of the same type
(and, for dates and numbers, the same shape) drawn from the mentions of the whole corpus.

The question is built from the sentence's *other* mentions and a few of its content words, never from its
word order, so that answering tests recall of the fact rather than completion of a memorised line. The check
is measured, not assumed: every item's share of word n-grams found in any training line (raw or synthetic)
is computed, items above ``max_ngram_overlap`` are dropped, and the figures go into the stage report.
"""

from __future__ import annotations

import hashlib
import random
import re

from cpt_core.synthesize.extract import Mention, Relation, kiwi

TYPE_WORDS = {
    "en": {"date": "date", "number": "number", "entity": "name"},
    "ko": {"date": "날짜", "number": "수", "entity": "이름"},
}
MC_TEMPLATES = {
    "en": "Which {type} goes with {cues}, given the keywords {keywords}?",
    "ko": "{cues}와 관련된 {type}은 무엇인가? (핵심어: {keywords})",
}
CLOZE_TEMPLATES = {
    "en": "Fill the gap. Keywords {keywords}; {cues}; {type}: ___",
    "ko": "빈칸 채우기. 핵심어 {keywords}; {cues}; {type}: ___",
}
_STOP_EN = frozenset(
    "a an the of in on at to for from by with and or but its it is was were be been has have had this that "
    "which who whom as after before into over under than then there their they he she his her our we said "
    "says will would could should can may also not no new one".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)
_ANSWER_ORDER = {"date": 0, "number": 1, "entity": 2}


def _score(*parts: object) -> float:
    return int(hashlib.sha256("\0".join(map(str, parts)).encode("utf-8")).hexdigest()[:15], 16) / 16**15


def is_probe_sentence(sentence: str, fraction: float, seed: int) -> bool:
    """Whether a relation's sentence is held out from synthesis for the probe (a hash of its text)."""
    return fraction > 0 and _score(seed, "probe", sentence.strip()) < fraction


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _keywords(relation: Relation, limit: int = 3) -> list[str]:
    """Content words of the sentence outside its mentions, sorted (so no word order of the sentence is kept)."""
    inside = "".join(ch if any(m.start <= i < m.end for m in relation.mentions) else " "
                     for i, ch in enumerate(relation.sentence))
    outside = "".join(" " if ch != " " and inside[i] != " " else ch for i, ch in enumerate(relation.sentence))
    if relation.language == "ko":
        found = [t.form for t in kiwi().tokenize(outside) if t.tag in ("NNG", "VV", "VA") and len(t.form) > 1]
    else:
        found = [w for w in words(outside) if w not in _STOP_EN and len(w) > 2 and not w.isdigit()]
    unique = sorted(set(found), key=lambda w: (_score("kw", w), w))
    return sorted(unique[:limit])


def _shape(mention: Mention) -> str:
    """Dates and numbers compare by form (``March 3, 2026`` vs ``2026``); entities only by type."""
    return mention.type if mention.type == "entity" else re.sub(r"\d+", "9", mention.text)


def distractor_pools(relations: list[Relation]) -> dict[tuple[str, str], list[str]]:
    """Mention texts by ``(language, type)`` and ``(language, shape)``, sorted, from the whole corpus."""
    pools: dict[tuple[str, str], set[str]] = {}
    for relation in relations:
        for m in relation.mentions:
            pools.setdefault((relation.language, m.type), set()).add(m.text)
            pools.setdefault((relation.language, "shape:" + _shape(m)), set()).add(m.text)
    return {k: sorted(v) for k, v in pools.items()}


def _choices(answer: Mention, relation: Relation, pools: dict, n: int, key: str) -> list[str] | None:
    """``n`` choices (the answer among ``n-1`` distractors of its shape, else of its type), or None.

    No distractor is another mention of the same sentence: it would be named in the question, or be a second
    right answer."""
    rng = random.Random(key)
    taken = [m.text for m in relation.mentions]
    for pool_key in ((relation.language, "shape:" + _shape(answer)), (relation.language, answer.type)):
        pool = [t for t in pools.get(pool_key, []) if not any(t in x or x in t for x in taken)]
        if len(pool) >= n - 1:
            choices = rng.sample(pool, n - 1) + [answer.text]
            rng.shuffle(choices)
            return choices
    return None


def probe_items(relation: Relation, pools: dict, n_choices: int, seed: int) -> list[dict]:
    """A multiple-choice and a cloze item for one held-out relation (none when no answer has distractors)."""
    lang = relation.language
    for answer in sorted(relation.mentions, key=lambda m: (_ANSWER_ORDER[m.type], m.start)):
        cues = [m.text for m in relation.mentions if m is not answer and m.type == "entity"]
        if not cues:
            continue
        key = f"{seed}:{relation.doc_id}:{relation.sentence}:{answer.text}"
        choices = _choices(answer, relation, pools, n_choices, key)
        if choices is None:
            continue
        fill = {"type": TYPE_WORDS[lang][answer.type], "cues": (", " if lang == "ko" else " and ").join(cues),
                "keywords": ", ".join(_keywords(relation)) or "-"}
        item_id = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
        common = {"choices": choices, "answer": choices.index(answer.text), "answer_text": answer.text,
                  "answer_type": answer.type, "language": lang, "source_doc": relation.doc_id,
                  "evidence": relation.sentence}
        return [
            {"id": f"{item_id}-mc", "kind": "multiple_choice", "question": MC_TEMPLATES[lang].format(**fill), **common},
            {"id": f"{item_id}-cloze", "kind": "cloze", "question": CLOZE_TEMPLATES[lang].format(**fill), **common},
        ]
    return []


class OverlapIndex:
    """Word n-grams of every training line, to measure how much of a question a training line already says."""

    def __init__(self, lines: list[str], n: int) -> None:
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        self.lines = lines
        for line in lines:
            self.grams |= ngrams(line, n)

    def overlap(self, question: str) -> float:
        """Share of the question's n-grams found in some training line (0 when it has none)."""
        grams = ngrams(question, self.n)
        return len(grams & self.grams) / len(grams) if grams else 0.0

    def verbatim(self, question: str) -> bool:
        """Whether the question's text (without its blank) appears inside a training line."""
        core = question.replace("___", "").strip(" ?:;")
        return any(core in line for line in self.lines)


def checked_items(items: list[dict], index: OverlapIndex, max_overlap: float) -> tuple[list[dict], dict]:
    """Items whose wording overlaps no training line above ``max_overlap``, and the overlap report."""
    kept, dropped, overlaps = [], 0, []
    for item in items:
        share = index.overlap(item["question"])
        if share > max_overlap or index.verbatim(item["question"]):
            dropped += 1
            continue
        kept.append({**item, "ngram_overlap": round(share, 4)})
        overlaps.append(share)
    report = {
        "ngram": index.n,
        "max_allowed": max_overlap,
        "items_dropped_for_overlap": dropped,
        "max_overlap": round(max(overlaps), 4) if overlaps else None,
        "mean_overlap": round(sum(overlaps) / len(overlaps), 4) if overlaps else None,
    }
    return kept, report
