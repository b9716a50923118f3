"""Real English and Korean text for the dedup benchmarks, and a reference shingler independent of cptflow.

Text: Debian documentation packages, downloaded with ``apt-get download`` and unpacked with ``dpkg-deb -x``
into a cache folder (nothing is installed): the Python 3.11 documentation sources (English), the Korean
LibreOffice help and the Korean Debian FAQ. Paragraphs are grouped into documents of a few hundred words.

The reference shingler is written here from the definition, not imported from ``cpt_core``, so the truth
the benchmarks judge against is not the code under test: NFKC, case folding, every character of Unicode
category P* or S* (and controls) replaced by a space, whitespace runs to one space; then word n-grams, or
character n-grams of the text with its spaces removed.
"""

from __future__ import annotations

import html
import random
import re
import subprocess
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

PACKAGES = {"en": ["python3.11-doc"], "ko": ["libreoffice-help-ko", "debian-faq-ko"]}
HANGUL = re.compile(r"[\uac00-\ud7a3]")
DEFAULT_CACHE = Path.home() / ".cache" / "cptflow" / "debian-docs"


def fetch(cache: Path, package: str) -> Path:
    """``cache/<package>/`` holding the unpacked package, downloaded once."""
    target = cache / package
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", package], cwd=cache, check=True, capture_output=True)
    (deb,) = sorted(cache.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
    return target


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("script", "style")
        if tag in ("p", "div", "li", "h1", "h2", "h3", "br", "tr"):
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        self.skip -= tag in ("script", "style") and self.skip > 0

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_text(path: Path) -> str:
    parser = _Text()
    parser.feed(html.unescape(path.read_text(encoding="utf-8", errors="replace")))
    return "".join(parser.parts)


def paragraphs(language: str, cache: Path) -> list[str]:
    out: list[str] = []
    for package in PACKAGES[language]:
        root = fetch(cache, package)
        if language == "en":
            texts = (f.read_text(encoding="utf-8", errors="replace") for f in sorted(root.rglob("_sources/**/*.txt")))
        else:
            texts = (html_text(f) for f in sorted(root.rglob("*.htm*")))
        for text in texts:
            for para in re.split(r"\n\s*\n", text):
                para = " ".join(para.split())
                if language == "ko" and len(HANGUL.findall(para)) < 0.3 * max(len(para), 1):
                    continue
                if len(para.split()) >= 6:
                    out.append(para)
    return out


def documents(language: str, cache: Path, rng: random.Random) -> list[str]:
    """Distinct documents of consecutive paragraphs, shuffled: 120-400 English words, 60-250 Korean ones."""
    min_words, max_words = (120, 400) if language == "en" else (60, 250)
    docs, current, count, seen = [], [], 0, set()
    for para in paragraphs(language, cache):
        if para in seen:  # boilerplate repeated across pages would make unintended pairs
            continue
        seen.add(para)
        current.append(para)
        count += len(para.split())
        if count >= min_words:
            docs.append(" ".join("\n\n".join(current).split(" ")[:max_words]))
            current, count = [], 0
    rng.shuffle(docs)
    return docs


def reference_normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    kept = [" " if unicodedata.category(c)[0] in "PSC" else c for c in text]
    return " ".join("".join(kept).split())


def reference_shingles(text: str, unit: str, n: int) -> frozenset[str]:
    """``unit`` "word": word n-grams; "char": character n-grams with spaces removed. Short texts: one shingle."""
    norm = reference_normalise(text)
    seq: list[str] | str = norm.split() if unit == "word" else norm.replace(" ", "")
    sep = " " if unit == "word" else ""
    if len(seq) <= n:
        return frozenset([sep.join(seq)])
    return frozenset(sep.join(seq[i : i + n]) for i in range(len(seq) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def edit_words(words: list[str], vocab: list[str], rng: random.Random, rate: float) -> list[str]:
    """Insertions, deletions and substitutions of whole words at ``rate`` per word."""
    words = list(words)
    for _ in range(round(rate * len(words))):
        op, pos = rng.choice("ids"), rng.randrange(len(words))
        if op == "i":
            words.insert(pos, rng.choice(vocab))
        elif op == "d" and len(words) > 10:
            del words[pos]
        else:
            words[pos] = rng.choice(vocab)
    return words


def surface_noise(words: list[str], rng: random.Random, language: str, share: float = 0.125) -> str:
    """Noise normalisation must undo: punctuation added or removed, case, full-width letters, extra spaces
    and line breaks; for Korean also spacing (two words joined, a word split), which writers vary."""
    words = list(words)
    for pos in sorted(rng.sample(range(len(words)), k=int(len(words) * share)), reverse=True):
        noise = rng.choice("pcwsnj" if language == "ko" else "pcwsn")
        w = words[pos]
        if noise == "p":
            words[pos] = w.rstrip(".,;:!?") if rng.random() < 0.5 else w + rng.choice([",", ".", ";", "!", "…"])
        elif noise == "c":
            words[pos] = w.upper() if rng.random() < 0.5 else w.capitalize()
        elif noise == "w":  # full-width forms: NFKC folds them
            words[pos] = w.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
        elif noise == "s":
            words[pos] = w + " "
        elif noise == "n":
            words[pos] = w + "\n"
        elif pos + 1 < len(words) and rng.random() < 0.5:  # Korean: join with the next word
            words[pos : pos + 2] = [w + words[pos + 1]]
        elif len(w) >= 2:  # Korean: split the word
            cut = rng.randrange(1, len(w))
            words[pos] = w[:cut] + " " + w[cut:]
    return " ".join(words)
