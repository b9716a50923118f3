"""Which shingles judge Korean near-duplicates best: Kiwi word 5-grams (FineWeb-2's choice) or character n-grams?

Text: real Korean documents (Debian's Korean LibreOffice help and Debian FAQ, see ``debian_text``). Each
original gets several copies edited at a known rate (whole words inserted, deleted or substituted), so the
truth spreads over Jaccard 0.4-1.0. Truth is defined before the noise that must not matter: the exact
Jaccard of the normalised word (eojeol) 5-gram sets of the edited texts, the unit English dedup uses. Then
every text gets that noise: punctuation, extra spaces and line breaks, and Korean spacing variation (two
words joined, one word split), which writers of the same sentence differ in.

Each shingling then sees only the noisy texts and calls a pair a duplicate when the exact Jaccard of its own
shingle sets is >= J, the threshold a user configures. Judged: every pair within a family (original and
copies, copies among themselves), duplicate in truth iff truth Jaccard >= J, at J 0.7 and 0.8. Shinglings:
plain word 5-grams (spacing-sensitive, for contrast), Kiwi morpheme 5-grams (Kiwi splits particles and
endings off, so 5 morphemes span about 2.5 words), and character n-grams with spaces removed, n = 3..24.

    python benchmarks/korean_shingles.py [--originals 300] [--copies 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from debian_text import (  # noqa: E402
    DEFAULT_CACHE,
    documents,
    edit_words,
    jaccard,
    reference_normalise,
    reference_shingles,
    surface_noise,
)

THRESHOLDS = (0.7, 0.8)
CHAR_SIZES = range(3, 25)


def families(n_originals: int, copies: int, cache: Path, rng: random.Random):
    """[[(clean text, noisy text), ...] per original], the original first."""
    originals = documents("ko", cache, rng)[:n_originals]
    vocab = [w for t in originals for w in t.split()]
    out = []
    for text in originals:
        words = text.split()
        family = [(text, surface_noise(words, rng, "ko"))]
        for _ in range(copies):
            rate = 0.0 if rng.random() < 0.15 else rng.uniform(0.0, 0.06)
            edited = edit_words(words, vocab, rng, rate)
            family.append((" ".join(edited), surface_noise(edited, rng, "ko")))
        out.append(family)
    return out


def kiwi_shingles(texts: list[str], n: int = 5) -> list[frozenset[str]]:
    try:
        from kiwipiepy import Kiwi
    except ImportError as exc:
        raise SystemExit("kiwipiepy is needed for the Kiwi shingles: pip install 'kiwipiepy<0.22'") from exc
    kiwi = Kiwi()
    out = []
    for tokens in kiwi.tokenize([reference_normalise(t) for t in texts]):
        forms = [t.form for t in tokens]
        out.append(frozenset(" ".join(forms[i : i + n]) for i in range(max(len(forms) - n + 1, 1))))
    return out


def scores(decisions: list[tuple[bool, bool]]) -> tuple[float, float, float]:
    tp = sum(p and t for p, t in decisions)
    fp = sum(p and not t for p, t in decisions)
    fn = sum(t and not p for p, t in decisions)
    prec = tp / (tp + fp) if tp + fp else 1.0
    rec = tp / (tp + fn) if tp + fn else 1.0
    return prec, rec, 2 * prec * rec / (prec + rec) if prec + rec else 0.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--originals", type=int, default=300)
    ap.add_argument("--copies", type=int, default=3, help="edited copies per original")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    fams = families(args.originals, args.copies, args.cache, rng)
    pairs = [(f, a, b) for f, fam in enumerate(fams) for a, b in combinations(range(len(fam)), 2)]
    truth = {
        (f, a, b): jaccard(*(reference_shingles(fams[f][i][0], "word", 5) for i in (a, b))) for f, a, b in pairs
    }
    noisy = [text for fam in fams for _, text in fam]
    offsets = [sum(len(fam) for fam in fams[:f]) for f in range(len(fams))]
    methods: dict[str, list[frozenset[str]]] = {"word 5-gram": [reference_shingles(t, "word", 5) for t in noisy]}
    started = time.perf_counter()
    methods["Kiwi 5-gram"] = kiwi_shingles(noisy)
    kiwi_s = time.perf_counter() - started
    for n in CHAR_SIZES:
        methods[f"char {n}-gram"] = [reference_shingles(t, "char", n) for t in noisy]
    print(
        f"Korean near-dup shingles: {len(fams)} originals, {len(noisy)} texts, {len(pairs)} judged pairs "
        f"(truth: word 5-gram Jaccard before spacing/punctuation noise), seed {args.seed}"
    )
    for t in THRESHOLDS:
        near = sum(abs(v - t) < 0.05 for v in truth.values())
        print(f"truth J >= {t}: {sum(v >= t for v in truth.values())} pairs, {near} within ±0.05 of it")
    print("| shingles | " + " | ".join(f"P@{t} | R@{t} | F1@{t}" for t in THRESHOLDS) + " | mean F1 |")
    print("|---|" + "---|---|---|" * len(THRESHOLDS) + "---|")
    results = {}
    for name, sets in methods.items():
        sim = {(f, a, b): jaccard(sets[offsets[f] + a], sets[offsets[f] + b]) for f, a, b in pairs}
        per_t = [scores([(sim[k] >= t, truth[k] >= t) for k in pairs]) for t in THRESHOLDS]
        results[name] = per_t
        cells = " | ".join(f"{p:.3f} | {r:.3f} | {f1:.3f}" for p, r, f1 in per_t)
        print(f"| {name} | {cells} | {sum(x[2] for x in per_t) / len(per_t):.3f} |")
    chars = {n: results[f"char {n}-gram"] for n in CHAR_SIZES}
    best = max(chars, key=lambda n: sum(x[2] for x in chars[n]))
    print(f"Kiwi tokenisation: {len(noisy) / kiwi_s:.0f} texts/s; best character n-gram: n={best}")
    kiwi, word, char = results["Kiwi 5-gram"], results["word 5-gram"], chars[best]
    print(
        f"best_char_n={best} "
        + " ".join(f"char_f1_{t}={char[i][2]:.4f} kiwi_f1_{t}={kiwi[i][2]:.4f} word_f1_{t}={word[i][2]:.4f}"
                   for i, t in enumerate(THRESHOLDS))
        + f" char_precision_0.8={char[1][0]:.4f} char_recall_0.8={char[1][1]:.4f}"
        f" kiwi_precision_0.8={kiwi[1][0]:.4f} kiwi_recall_0.8={kiwi[1][1]:.4f}"
    )


if __name__ == "__main__":
    sys.exit(main())
