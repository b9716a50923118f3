"""Near-dedup quality on real English and Korean text: precision, recall and F1 at exact Jaccard >= 0.8.

Text: Debian documentation packages, downloaded with ``apt-get download`` and unpacked with ``dpkg-deb -x``
into ``--cache`` (nothing is installed): the Python 3.11 documentation sources (English) and the Korean
LibreOffice help and Debian FAQ (Korean). Paragraphs are grouped into documents of a few hundred words; the
documents are first made pairwise dissimilar (no two share Jaccard >= 0.3), so every true pair is one made
here.

Near copies: for most documents, one copy with a random number of word insertions, deletions and
substitutions (words drawn from the same language), then surface noise that must not matter: punctuation
added or removed, case changes, extra spaces and line breaks. Some copies get surface noise only, some
documents get no copy. Truth is the exact Jaccard similarity of the two documents' shingle sets (the
shingles cptflow uses: normalised word 5-grams for English, character n-grams for Korean), and a pair is a
duplicate when it is >= the threshold.

Compared, on the same documents in the same order:
- cptflow's ``NearDedupFilter`` (LSH bands chosen for recall, exact verification of candidates);
- the reference: plain datasketch ``MinHashLSH(threshold=0.8, num_perm=128)`` over the same shingle sets,
  where any LSH candidate counts as a duplicate (the usual use of the library).
A predicted pair is (dropped document, the kept document it is a duplicate of).

    python benchmarks/near_dedup_quality.py [--docs 800] [--threshold 0.8] [--cache DIR]
"""

from __future__ import annotations

import argparse
import html
import random
import re
import subprocess
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path

from datasketch import MinHash, MinHashLSH
from datatrove.data import Document

from cpt_core.curate.dedup import NearDedupConfig, NearDedupFilter, jaccard, shingles

PACKAGES = {"en": ["python3.11-doc"], "ko": ["libreoffice-help-ko", "debian-faq-ko"]}
HANGUL = re.compile(r"[\uac00-\ud7a3]")


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
            files = sorted(root.rglob("_sources/**/*.txt"))
            texts = (f.read_text(encoding="utf-8", errors="replace") for f in files)
        else:
            files = sorted(root.rglob("*.htm*"))
            texts = (html_text(f) for f in files)
        for text in texts:
            for para in re.split(r"\n\s*\n", text):
                para = " ".join(para.split())
                if language == "ko" and len(HANGUL.findall(para)) < 0.3 * max(len(para), 1):
                    continue
                if len(para.split()) >= 6:
                    out.append(para)
    return out


def documents(paras: list[str], min_words: int, max_words: int) -> list[str]:
    docs, current, count = [], [], 0
    for para in paras:
        current.append(para)
        count += len(para.split())
        if count >= min_words:
            docs.append("\n\n".join(current)[: max_words * 12])
            current, count = [], 0
    return docs


def make_dissimilar(texts: list[str], grams: list[set[str]], limit: float = 0.3) -> list[int]:
    """Indexes of documents that share Jaccard < ``limit`` with every document kept before them."""
    lsh, kept = MinHashLSH(threshold=limit, num_perm=64), []
    for i, g in enumerate(grams):
        mh = MinHash(num_perm=64)
        mh.update_batch([s.encode() for s in g])
        if not g or any(jaccard(g, grams[j]) >= limit for j in lsh.query(mh)):
            continue
        lsh.insert(i, mh)
        kept.append(i)
    return kept


def edit(text: str, vocab: list[str], rng: random.Random, rate: float, language: str) -> str:
    """Word insertions, deletions and substitutions at ``rate`` per word, then surface noise."""
    words = text.split(" ")
    for _ in range(round(rate * len(words))):
        op, pos = rng.choice("ids"), rng.randrange(len(words))
        if op == "i":
            words.insert(pos, rng.choice(vocab))
        elif op == "d" and len(words) > 10:
            del words[pos]
        else:
            words[pos] = rng.choice(vocab)
    for pos in rng.sample(range(len(words)), k=len(words) // 8):  # surface noise: must not matter
        noise = rng.choice("pcsn")
        if noise == "p":
            words[pos] = (
                words[pos].rstrip(".,;:!?") if rng.random() < 0.5 else words[pos] + rng.choice(",.;!")
            )
        elif noise == "c" and language == "en":
            words[pos] = words[pos].upper() if rng.random() < 0.5 else words[pos].capitalize()
        elif noise == "s":
            words[pos] = words[pos] + " "
        else:
            words[pos] = words[pos] + "\n"
    return " ".join(words)


def corpus(language: str, n_docs: int, cache: Path, rng: random.Random, char_ngram: int):
    """[(id, text)] in input order, and the shingle sets by id."""
    min_words, max_words = (120, 400) if language == "en" else (60, 250)
    texts = documents(paragraphs(language, cache), min_words, max_words)
    rng.shuffle(texts)
    texts = texts[: n_docs * 2]
    grams = [shingles(t, 5, language, char_ngram) for t in texts]
    originals = [texts[i] for i in make_dissimilar(texts, grams)][:n_docs]
    vocab = [w for t in originals for w in t.split()]
    docs = [(f"{language}-{i}", t) for i, t in enumerate(originals)]
    for i, text in enumerate(originals):
        r = rng.random()
        if r < 0.15:
            continue  # no copy
        rate = 0.0 if r < 0.3 else rng.uniform(0.0, 0.08)
        docs.append((f"{language}-{i}-copy", edit(text, vocab, rng, rate, language)))
    rng.shuffle(docs)
    return docs, {d: shingles(t, 5, language, char_ngram) for d, t in docs}


def truth_pairs(docs, grams, threshold: float) -> tuple[set[frozenset], list[float]]:
    ids = {d for d, _ in docs}
    pairs, sims = set(), []
    for d in ids:
        if d.endswith("-copy"):
            original = d.removesuffix("-copy")
            sim = jaccard(grams[d], grams[original])
            sims.append(sim)
            if sim >= threshold:
                pairs.add(frozenset((d, original)))
    return pairs, sims


def run_ours(
    docs, language: str, threshold: float, char_ngram: int, exact_verify: bool = True
) -> tuple[set[frozenset], float]:
    cfg = NearDedupConfig(threshold=threshold, char_ngram=char_ngram, exact_verify=exact_verify)
    with tempfile.TemporaryDirectory() as tmp:
        step = NearDedupFilter(cfg, tmp, [], Path(tmp) / "index")
        batch = [Document(text=t, id=d, metadata={"language": language}) for d, t in docs]
        started = time.perf_counter()
        kept = {doc.id for doc in step.run(iter(batch))}
        seconds = time.perf_counter() - started
    pairs = {frozenset((d.id, d.metadata["duplicate_of"])) for d in batch if d.id not in kept}
    return pairs, len(docs) / seconds


def run_reference(docs, grams, threshold: float) -> tuple[set[frozenset], float]:
    started = time.perf_counter()
    lsh, pairs = MinHashLSH(threshold=threshold, num_perm=128), set()
    for d, _ in docs:
        mh = MinHash(num_perm=128)
        mh.update_batch([s.encode("utf-8") for s in grams[d]])
        candidates = lsh.query(mh)
        if candidates:
            pairs.add(frozenset((d, sorted(candidates)[0])))
        else:
            lsh.insert(d, mh)
    return pairs, len(docs) / (time.perf_counter() - started)


def scores(predicted: set, truth: set) -> tuple[float, float, float]:
    tp = len(predicted & truth)
    p = tp / len(predicted) if predicted else 1.0
    r = tp / len(truth) if truth else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=800, help="original documents per language")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--char-ngram", type=int, default=NearDedupConfig().char_ngram)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "cptflow" / "debian-docs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    rows, totals = (
        [],
        {"ours": [set(), set()], "ref": [set(), set()], "est": set(), "n": 0, "t_ours": 0.0, "t_ref": 0.0},
    )
    for language in ("en", "ko"):
        docs, grams = corpus(language, args.docs, args.cache, rng, args.char_ngram)
        truth, sims = truth_pairs(docs, grams, args.threshold)
        ours, ours_rate = run_ours(docs, language, args.threshold, args.char_ngram)
        estimated, _ = run_ours(docs, language, args.threshold, args.char_ngram, exact_verify=False)
        ref, ref_rate = run_reference(docs, grams, args.threshold)
        near = sum(args.threshold - 0.05 <= s < args.threshold + 0.05 for s in sims)
        rows.append(
            (language, len(docs), len(truth), near, scores(ours, truth), scores(ref, truth), estimated)
        )
        totals["est"] |= estimated
        for key, pred in (("ours", ours), ("ref", ref)):
            totals[key][0] |= pred
            totals[key][1] |= truth
        totals["n"] += len(docs)
        totals["t_ours"] += len(docs) / ours_rate
        totals["t_ref"] += len(docs) / ref_rate
    all_ours = scores(*totals["ours"])
    all_ref = scores(*totals["ref"])
    rows.append(
        (
            "all",
            totals["n"],
            len(totals["ours"][1]),
            sum(r[3] for r in rows),
            all_ours,
            all_ref,
            totals["est"],
        )
    )
    print(f"near dedup at Jaccard >= {args.threshold} (exact truth on the shingle sets), seed {args.seed}")
    print(
        "| language | docs | true pairs | pairs within ±0.05 | cptflow P | R | F1 | "
        "cptflow, MinHash estimate F1 | datasketch P | R | F1 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for lang, n, t, near, (p, r, f), (rp, rr, rf), est in rows:
        truth = (
            totals["ours"][1] if lang == "all" else {x for x in totals["ours"][1] if min(x).startswith(lang)}
        )
        ef = scores(est, truth)[2]
        print(
            f"| {lang} | {n} | {t} | {near} | {p:.3f} | {r:.3f} | {f:.3f} | {ef:.3f} | "
            f"{rp:.3f} | {rr:.3f} | {rf:.3f} |"
        )
    rate, ref_rate = totals["n"] / totals["t_ours"], totals["n"] / totals["t_ref"]
    print(f"throughput: cptflow {rate:.0f} docs/s, datasketch {ref_rate:.0f} docs/s (one process)")
    print(
        f"precision={all_ours[0]:.4f} recall={all_ours[1]:.4f} f1={all_ours[2]:.4f} "
        f"ref_precision={all_ref[0]:.4f} ref_recall={all_ref[1]:.4f} ref_f1={all_ref[2]:.4f} "
        f"baseline_f1={all_ref[2]:.4f} docs_per_s={rate:.1f} baseline_docs_per_s={ref_rate:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
