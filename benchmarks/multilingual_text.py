"""Labelled paragraphs in many languages from the documentation installed on this Debian machine.

Two sources per language, labelled by where the file lives (its translation team's language):
- manual pages, ``/usr/share/man/<lang>[_<region>]/man*/*.gz`` (English: ``/usr/share/man/man*``), roff
  stripped to text (font and character escapes out, text-bearing macros kept, paragraph macros as breaks);
- gettext catalogs, ``/usr/share/locale/<lang>[_<region>]/LC_MESSAGES/*.mo``, read with ``gettext``:
  translated messages of one catalog, in msgid order, joined until they make a paragraph.

Translations are often partial (an untranslated English paragraph in a German page), so an item keeps its
label only when a check independent of fastText agrees: its letters are mostly in the language's script
(Hangul, kana, Han, Cyrillic, Latin) and, for languages written with spaces, it holds at least two of the
language's spaCy stop words and more of them than English ones. Items: 12-120 words, or 40-400 characters
for Chinese and Japanese.
"""

from __future__ import annotations

import gettext
import gzip
import importlib
import random
import re
import unicodedata
from pathlib import Path

MAN = Path("/usr/share/man")
LOCALE = Path("/usr/share/locale")
LANGUAGES = (
    "en ko ja zh de fr es it nl pt pl ru uk sv cs tr da fi hu ro id".split()
)  # lid.176 codes with enough text here
CJK = ("ja", "zh")
SCRIPTS = {
    "hangul": re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]"),
    "kana": re.compile(r"[\u3040-\u30ff]"),
    "han": re.compile(r"[\u4e00-\u9fff]"),
    "cyrillic": re.compile(r"[\u0400-\u04ff]"),
    "latin": re.compile(r"[A-Za-z\u00c0-\u024f]"),
}
ESCAPE = re.compile(r"\\(?:f(?:\(..|\[[^]]*\]|.)|s[-+]?\d|\*(?:\(..|\[[^]]*\]|.)|\(..|\[[^]]*\]|.)")
TEXT_MACROS = {"B", "I", "BR", "BI", "IB", "RB", "RI", "IR", "SM", "SB"}
BREAK_MACROS = {"PP", "P", "LP", "SH", "SS", "TP", "TQ", "IP", "HP", "sp", "RS", "RE", "TH", "nf", "fi", "EX",
                "EE", "Sh", "Pp", "Bl", "El", "It", "Ss"}  # fmt: skip
_ESCAPES = {"\\-": "-", "\\e": "\\", "\\ ": " ", "\\~": " ", "\\(em": "—", "\\(en": "–", "\\(lq": "“", "\\(rq": "”"}


ACCENT = re.compile(r"\\\(([:'`^~,])([A-Za-z])")  # groff accented letters: \(:a is ä
UNICODE = re.compile(r"\\\[u([0-9A-Fa-f]{4,5})\]")  # \[u00E4]
COMBINING = {":": "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", ",": "\u0327"}
MAX_FILES = 400  # manual pages or catalogs read per language, spread over the sorted list


def _unescape(line: str) -> str:
    for k, v in _ESCAPES.items():
        line = line.replace(k, v)
    line = ACCENT.sub(lambda m: unicodedata.normalize("NFC", m[2] + COMBINING[m[1]]), line)
    line = UNICODE.sub(lambda m: chr(int(m[1], 16)), line)
    line = line.replace("\\(ss", "ß")
    return ESCAPE.sub("", line)


def _spread(files: list[Path]) -> list[Path]:
    step = max(1, len(files) // MAX_FILES)
    return files[::step][:MAX_FILES]


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:  # older translated pages are Latin-1
        return data.decode("latin-1")


def roff_paragraphs(source: str) -> list[str]:
    """Paragraphs of a manual page's text (man or mdoc macros), one string each."""
    paragraphs, current = [], []
    for raw in source.splitlines():
        if raw.startswith((".\\\"", "'\\\"", '.\\"')):
            continue
        if raw.startswith((".", "'")):
            macro, _, args = raw[1:].strip().partition(" ")
            if macro in BREAK_MACROS or not raw[1:].strip():
                paragraphs.append(" ".join(current))
                current = []
            elif macro in TEXT_MACROS:
                current.append(_unescape(args.replace('"', "")))
            continue
        if not raw.strip():
            paragraphs.append(" ".join(current))
            current = []
        else:
            current.append(_unescape(raw))
    paragraphs.append(" ".join(current))
    return [" ".join(p.split()) for p in paragraphs if p.strip()]


def catalog_paragraphs(path: Path, cjk: bool) -> list[str]:
    """Translated messages of one ``.mo`` catalog, in msgid order, joined into paragraphs."""
    with open(path, "rb") as fh:
        catalog = gettext.GNUTranslations(fh)._catalog  # msgid -> msgstr; the public API only looks up
    out, current = [], []
    for _msgid, msgstr in sorted((k, v) for k, v in catalog.items() if isinstance(k, str) and k and v != k):
        text = " ".join(msgstr.split())
        if (len(text) < 10) if cjk else (len(text.split()) < 4):
            continue
        current.append(text)
        joined = " ".join(current)
        if (len(joined) >= 80) if cjk else (len(joined.split()) >= 25):
            out.append(joined)
            current = []
    return out


def _dirs(root: Path, language: str) -> list[Path]:
    if language == "en" and root == MAN:
        return [root]
    return sorted(p for p in root.glob(f"{language}*") if p.name == language or p.name.startswith(f"{language}_"))


def man_items(language: str) -> list[str]:
    files = _spread([f for d in _dirs(MAN, language) for f in sorted(d.glob("man*/*.gz"))])
    out = []
    for f in files:
        with gzip.open(f, "rb") as fh:
            out.extend(roff_paragraphs(_decode(fh.read())))
    return out


def catalog_items(language: str) -> list[str]:
    if language == "en":
        return []  # English is the msgid side; en_GB catalogs mostly repeat it
    files = _spread([f for d in _dirs(LOCALE, language) for f in sorted(d.glob("LC_MESSAGES/*.mo"))])
    out = []
    for f in files:
        try:
            out.extend(catalog_paragraphs(f, language in CJK))
        except (OSError, UnicodeDecodeError):  # a damaged or foreign-encoded catalog
            continue
    return out


def _stop_words(language: str) -> frozenset[str]:
    try:
        return frozenset(importlib.import_module(f"spacy.lang.{language}.stop_words").STOP_WORDS)
    except ImportError:
        return frozenset()


def _share(script: str, text: str, letters: int) -> float:
    return len(SCRIPTS[script].findall(text)) / letters


def agrees(language: str, text: str, stop: dict[str, frozenset[str]]) -> bool:
    """Whether the text looks like ``language`` by script and stop words (see the module docstring)."""
    letters = sum(c.isalpha() for c in text)
    if not letters:
        return False
    if language == "ko":
        return _share("hangul", text, letters) >= 0.5
    if language == "ja":
        return _share("kana", text, letters) >= 0.1 and _share("kana", text, letters) + _share("han", text, letters) >= 0.6
    if language == "zh":
        return _share("han", text, letters) >= 0.6 and not SCRIPTS["kana"].search(text)
    script = "cyrillic" if language in ("ru", "uk") else "latin"
    if _share(script, text, letters) < 0.9:
        return False
    words = re.findall(r"\w+", text.lower())
    own = sum(w in stop[language] for w in words)
    english = sum(w in stop["en"] for w in words)
    return own >= 2 and (language == "en" or own > english)


def _sized(text: str, cjk: bool) -> str | None:
    if cjk:
        return text[:400] if len(text) >= 40 else None
    words = text.split()
    return " ".join(words[:120]) if len(words) >= 12 else None


def labelled_items(per_language: int, rng: random.Random, languages=LANGUAGES) -> list[tuple[str, str, str]]:
    """[(language, source, text)]: up to ``per_language`` checked items per language, half from manual pages
    and half from catalogs where both have enough, shuffled."""
    stop = {lang: _stop_words(lang) for lang in set(languages) | {"en"}}
    items = []
    for language in languages:
        pools = {}
        for source, found in (("man", man_items(language)), ("mo", catalog_items(language))):
            seen, kept = set(), []
            for text in found:
                sized = _sized(text, language in CJK)
                if sized and sized not in seen and agrees(language, sized, stop):
                    seen.add(sized)
                    kept.append(sized)
            rng.shuffle(kept)
            pools[source] = kept
        half = per_language // 2
        take_man = min(len(pools["man"]), max(half, per_language - len(pools["mo"])))
        take_mo = min(len(pools["mo"]), per_language - take_man)
        items += [(language, "man", t) for t in pools["man"][:take_man]]
        items += [(language, "mo", t) for t in pools["mo"][:take_mo]]
    rng.shuffle(items)
    return items
