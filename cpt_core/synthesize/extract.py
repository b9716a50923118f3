"""Entities, dates and numbers in a document, and the sentences that relate them (English and Korean).

No model is downloaded: English mentions are found by rules (capitalised word runs for entities, month-name
and ISO patterns for dates, digit runs with their unit for numbers), Korean ones by kiwipiepy's morphological
analysis, whose model ships inside its wheel (proper nouns ``NNP`` and foreign words ``SL`` for entities,
numbers ``SN`` with their counter for numbers, ``N년 N월 N일`` runs for dates). The trade-off: rules miss
lower-case entities and over-read capitalised sentence starts (a stop list drops the common ones), which costs
recall, not correctness: a relation is only kept when its sentence holds two or more mentions.

A *relation* is one sentence with at least two mentions of which at least one is an entity: the sentence is
the evidence, the mentions are what it relates. Restating and probing work on relations
(``cpt_core.synthesize.restate``, ``cpt_core.synthesize.probe``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

MENTION_TYPES = ("entity", "date", "number")

_MONTHS = (
    "January|February|March|April|May|June|July|August|September|October|November|December|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
)
_DATE_EN = re.compile(
    rf"\b(?:(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"  # March 3, 2026
    rf"|\d{{1,2}}\s+(?:{_MONTHS})\.?,?\s+\d{{4}}"  # 3 March 2026
    rf"|\d{{4}}-\d{{2}}-\d{{2}}"  # 2026-03-03
    rf"|(?:{_MONTHS})\s+\d{{4}}"  # March 2026
    rf"|(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?!\d)"  # March 3 (no year)
    rf"|\d{{1,2}}\s+(?:{_MONTHS}))\b"  # 3 March (no year)
)
_YEAR_EN = re.compile(r"\b(?:in|since|by|until|from|during|of)\s+((?:19|20)\d{2})\b")
_NUMBER_EN = re.compile(
    r"(?<![\w.])[$€£]?\d[\d,]*(?:\.\d+)?(?:\s?%|\s(?:percent|million|billion|thousand|km|kg|MW|GW|people|"
    r"employees|units|stores|plants|seats|votes|tonnes|metres|meters|years|days))?(?![\w])"
)
_WORD = r"[A-Z][A-Za-z0-9&'’.-]*[A-Za-z0-9]|[A-Z]"
_ENTITY_EN = re.compile(rf"(?:{_WORD})(?:\s+(?:(?:of|de|la|von|van|for|the)\s+)?(?:{_WORD}))*")
# Capitalised words that start sentences or name calendar things, not entities.
_NOT_ENTITY = frozenset(
    "A An The This That These Those It Its He She They We I You Our Their His Her In On At By For From "
    "With After Before During Since Until When While If As But And Or So Yet Also However Meanwhile Today "
    "Yesterday Tomorrow Last Next Each Every Some Many Most Several Both One Two Three Four Five Six Seven "
    "Eight Nine Ten Q A Answer Question Monday Tuesday Wednesday Thursday Friday Saturday Sunday January "
    "February March April May June July August September October November December Mr Mrs Ms Dr".split()
)
_SENTENCE_EN = re.compile(r"(?<=[.!?])\s+(?=[\"'“(]?[A-Z0-9])")
_DATE_KO = re.compile(r"(?:(?:19|20)\d{2}\s*년\s*)?(?:1[0-2]|0?[1-9])\s*월(?:\s*(?:3[01]|[12]\d|0?[1-9])\s*일)?"
                      r"|(?:19|20)\d{2}\s*년")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_KO_ENTITY_TAGS = ("NNP", "SL", "SH")
_KO_COUNTERS = ("NNB", "NNG", "NR")


@dataclass(frozen=True)
class Mention:
    text: str
    type: str  # one of MENTION_TYPES
    start: int  # character offsets in the sentence
    end: int


@dataclass
class Relation:
    """A sentence of a document and the mentions it relates."""

    doc_id: str
    language: str
    sentence: str
    mentions: list[Mention] = field(default_factory=list)

    @property
    def entities(self) -> list[Mention]:
        return [m for m in self.mentions if m.type == "entity"]


def detect_language(text: str, hint: str | None = None) -> str:
    """``ko`` or ``en``: the document's language tag when it is one of them, else by the share of Hangul."""
    if hint in ("en", "ko"):
        return hint
    letters = sum(ch.isalpha() for ch in text) or 1
    return "ko" if len(_HANGUL.findall(text)) / letters > 0.3 else "en"


@functools.cache
def kiwi():
    try:
        from kiwipiepy import Kiwi
    except ImportError as err:  # pragma: no cover - a dependency of the project
        raise ImportError("Korean extraction needs kiwipiepy (pip install 'kiwipiepy<0.22')") from err
    return Kiwi()


def split_sentences(text: str, language: str) -> list[str]:
    """Sentences of ``text`` (kiwipiepy's splitter for Korean, punctuation rules for English)."""
    out = []
    for para in (p.strip() for p in text.splitlines()):
        if not para:
            continue
        parts = [s.text for s in kiwi().split_into_sents(para)] if language == "ko" else _SENTENCE_EN.split(para)
        out.extend(s.strip() for s in parts if s.strip())
    return out


def _non_overlapping(found: list[Mention]) -> list[Mention]:
    """Longest-first, then leftmost: a date's digits are not also a number, a name inside a date not a name."""
    kept: list[Mention] = []
    for m in sorted(found, key=lambda m: (-(m.end - m.start), m.start)):
        if all(m.end <= k.start or m.start >= k.end for k in kept):
            kept.append(m)
    return sorted(kept, key=lambda m: m.start)


def _english_entities(sentence: str) -> list[Mention]:
    out = []
    for match in _ENTITY_EN.finditer(sentence):
        words = match.group().split()
        start = match.start()
        while words and words[0].rstrip(".") in _NOT_ENTITY:  # "The Aria Labs" -> "Aria Labs"
            start = sentence.index(words[1], start + len(words[0])) if len(words) > 1 else match.end()
            words = words[1:]
        text = " ".join(words).rstrip(".")
        if text and text not in _NOT_ENTITY and (len(text) > 1):
            out.append(Mention(text, "entity", start, start + len(text)))
    return out


def english_mentions(sentence: str) -> list[Mention]:
    found = [Mention(m.group(), "date", m.start(), m.end()) for m in _DATE_EN.finditer(sentence)]
    found += [Mention(m.group(1), "date", m.start(1), m.end(1)) for m in _YEAR_EN.finditer(sentence)]
    found += [Mention(m.group(), "number", m.start(), m.end()) for m in _NUMBER_EN.finditer(sentence)]
    found += _english_entities(sentence)
    return _non_overlapping(found)


def _korean_runs(sentence: str) -> list[Mention]:
    """Entities (runs of NNP/SL/SH tokens) and numbers (SN with the counter after it) from kiwipiepy."""
    tokens = kiwi().tokenize(sentence)
    out: list[Mention] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.tag in _KO_ENTITY_TAGS:
            j = i
            while j + 1 < len(tokens) and tokens[j + 1].tag in _KO_ENTITY_TAGS and tokens[j + 1].start <= tokens[j].end + 1:
                j += 1
            start, end = tok.start, tokens[j].start + tokens[j].len
            out.append(Mention(sentence[start:end], "entity", start, end))
            i = j + 1
            continue
        if tok.tag == "SN":
            end = tok.start + tok.len
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if nxt is not None and nxt.tag in _KO_COUNTERS and nxt.start == end and len(nxt.form) <= 2:
                end = nxt.start + nxt.len
            out.append(Mention(sentence[tok.start:end], "number", tok.start, end))
        i += 1
    return out


def korean_mentions(sentence: str) -> list[Mention]:
    found = [Mention(m.group().strip(), "date", m.start(), m.start() + len(m.group().strip()))
             for m in _DATE_KO.finditer(sentence)]
    return _non_overlapping(found + _korean_runs(sentence))


def mentions(sentence: str, language: str) -> list[Mention]:
    """Entities, dates and numbers in one sentence, in order, none overlapping."""
    return korean_mentions(sentence) if language == "ko" else english_mentions(sentence)


def _opens_sentence(m: Mention, sentence: str) -> bool:
    """Whether only quotes or an opening bracket come before ``m`` in its sentence."""
    return not sentence[: m.start].strip(" \"'“(")


def _sentence_initial_word(m: Mention, sentence: str, named_inside: set[str]) -> bool:
    """A one-word English "entity" that starts its sentence and is never capitalised inside one in the
    document: a capitalised common word ("Voters in ...", "Staff at ..."), not a name."""
    return m.type == "entity" and " " not in m.text and _opens_sentence(m, sentence) and m.text not in named_inside


def extract_relations(doc_id: str, text: str, language: str | None = None) -> list[Relation]:
    """The relations of a document: each sentence with two or more distinct mentions, one an entity."""
    language = detect_language(text, language)
    sentences = [(s, mentions(s, language)) for s in split_sentences(text, language)]
    named_inside = (  # English names seen inside a sentence somewhere in the document
        {m.text for s, found in sentences for m in found if not _opens_sentence(m, s)} if language == "en" else set()
    )
    relations = []
    for sentence, found_in in sentences:
        found: list[Mention] = []
        for m in found_in:
            if language == "en" and _sentence_initial_word(m, sentence, named_inside):
                continue
            if all(m.text != f.text for f in found):
                found.append(m)
        if len(found) >= 2 and any(m.type == "entity" for m in found):
            relations.append(Relation(doc_id, language, sentence, found))
    return relations
