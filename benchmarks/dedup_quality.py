"""Near-dedup quality on real English and Korean text: precision, recall and F1 of every decision, judged by
exact Jaccard computed independently of cptflow, beside datasketch MinHashLSH.

Text: Debian documentation (``debian_text``): Python 3.11 docs (English), Korean LibreOffice help and Debian
FAQ (Korean). Each original gets 0-3 copies, each edited at its own rate (whole words inserted, deleted,
substituted), so the true similarities spread over 0.4-1.0 and many fall near the threshold, then noise
that must not matter (punctuation, case, full-width letters, spaces, line breaks; Korean spacing). Input
order is shuffled.

Truth: the exact Jaccard of reference shingle sets, computed by ``debian_text.reference_shingles`` (written
from the definition, not cptflow's code): normalised word 5-grams for English, normalised character
13-grams (spaces removed) for Korean, the unit ``benchmarks/korean_shingles.py`` found best. Every pair of
documents sharing a shingle is scored exactly (an inverted index, no sampling), so pairs across families
count too.

Judged decisions, for a deduplicator that keeps the first copy in input order:
- a dropped document is a true positive when its named kept document has truth Jaccard >= threshold with
  it, else a false positive;
- a kept document is a false negative when some document kept before it has truth Jaccard >= threshold.

Compared on the same documents in the same order:
- cptflow's ``NearDedupFilter`` with its defaults (LSH bands chosen for recall, exact verification);
- datasketch ``MinHashLSH(threshold, num_perm=128)`` over the reference shingles, where an LSH candidate
  means a duplicate (the library's usual use), credited with its best candidate (generous to it).

``--backend disk`` judges the disk backend instead (``curate.near_dedup.backend: disk``: datatrove's on-disk
MinHash stages), run as the ``near_dedup`` curate step on the documents written as JSONL; its time is the
whole step (four datatrove pipelines, reading and writing the documents), not the filter alone.

    python benchmarks/dedup_quality.py [--originals 600] [--threshold 0.8] [--seed 0] [--backend memory|disk]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasketch import MinHash, MinHashLSH  # noqa: E402
from datatrove.data import Document  # noqa: E402
from debian_text import DEFAULT_CACHE, documents, edit_words, reference_shingles, surface_noise  # noqa: E402

from cpt_core.curate.dedup import NearDedupConfig, NearDedupFilter  # noqa: E402

TRUTH_SHINGLES = {"en": ("word", 5), "ko": ("char", 13)}


def corpus(language: str, n_originals: int, cache: Path, rng: random.Random) -> list[tuple[str, str]]:
    """[(id, text)] in input order: originals and their edited, noisy copies."""
    originals = documents(language, cache, rng)[:n_originals]
    vocab = [w for t in originals for w in t.split()]
    docs = []
    for i, text in enumerate(originals):
        words = text.split()
        docs.append((f"{language}-{i}", surface_noise(words, rng, language) if rng.random() < 0.5 else text))
        for c in range(rng.choice([0, 1, 1, 2, 3])):
            rate = 0.0 if rng.random() < 0.15 else rng.uniform(0.0, 0.06)
            docs.append((f"{language}-{i}-{c}", surface_noise(edit_words(words, vocab, rng, rate), rng, language)))
    rng.shuffle(docs)
    return docs


def truth_similarities(sets: dict[str, frozenset]) -> dict[str, dict[str, float]]:
    """For every document, the exact Jaccard with every document it shares at least one shingle with."""
    postings: dict[str, list[str]] = defaultdict(list)
    for doc_id, grams in sets.items():
        for g in grams:
            postings[g].append(doc_id)
    sims: dict[str, dict[str, float]] = {}
    for doc_id, grams in sets.items():
        shared = Counter(other for g in grams for other in postings[g] if other != doc_id)
        sims[doc_id] = {o: k / (len(grams) + len(sets[o]) - k) for o, k in shared.items()}
    return sims


def judge(order: list[str], dropped: dict[str, str], sims, threshold: float) -> dict[str, int]:
    """Counts of tp / fp / fn over the decisions (see the module docstring)."""
    counts, kept = Counter(), set()
    for doc_id in order:
        if doc_id in dropped:
            counts["tp" if sims[doc_id].get(dropped[doc_id], 0.0) >= threshold else "fp"] += 1
            continue
        if any(sims[doc_id].get(k, 0.0) >= threshold for k in kept if k in sims[doc_id]):
            counts["fn"] += 1
        kept.add(doc_id)
    return counts


def run_disk(docs, language: str, threshold: float) -> tuple[dict[str, str], float]:
    """The disk backend as the ``near_dedup`` step: (dropped id -> kept id, seconds of the step)."""
    import gzip
    import json

    from cpt_core.curate.pipeline import CurateConfig, run_curate_step

    cfg = CurateConfig(near_dedup=NearDedupConfig(threshold=threshold, backend="disk"))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in" / "documents").mkdir(parents=True)
        with gzip.open(Path(tmp) / "in" / "documents" / "00000.jsonl.gz", "wt", encoding="utf-8") as fh:
            for d, t in docs:
                fh.write(json.dumps({"id": d, "text": t, "metadata": {"language": language}}) + "\n")
        started = time.perf_counter()
        run_curate_step("near_dedup", cfg, Path(tmp) / "in", Path(tmp) / "out", Path(tmp) / "state", "r", earlier_runs=[])
        seconds = time.perf_counter() - started
        dropped = {}
        for path in sorted((Path(tmp) / "out" / "dropped").rglob("*.jsonl.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    dropped[row["id"]] = row["metadata"]["duplicate_of"]
    return dropped, seconds


def run_ours(docs, language: str, threshold: float, backend: str = "memory") -> tuple[dict[str, str], float]:
    if backend == "disk":
        return run_disk(docs, language, threshold)
    cfg = NearDedupConfig(threshold=threshold)
    with tempfile.TemporaryDirectory() as tmp:
        step = NearDedupFilter(cfg, tmp, [], Path(tmp) / "index")
        batch = [Document(text=t, id=d, metadata={"language": language}) for d, t in docs]
        started = time.perf_counter()
        kept = {doc.id for doc in step.run(iter(batch))}
        seconds = time.perf_counter() - started
    return {d.id: d.metadata["duplicate_of"] for d in batch if d.id not in kept}, seconds


def run_datasketch(docs, language: str, threshold: float, sims) -> tuple[dict[str, str], float]:
    unit, n = TRUTH_SHINGLES[language]
    started = time.perf_counter()
    lsh, dropped = MinHashLSH(threshold=threshold, num_perm=128), {}
    for doc_id, text in docs:
        mh = MinHash(num_perm=128)
        mh.update_batch([s.encode("utf-8") for s in reference_shingles(text, unit, n)])
        candidates = lsh.query(mh)
        if candidates:
            dropped[doc_id] = max(sorted(candidates), key=lambda c: sims[doc_id].get(c, 0.0))
        else:
            lsh.insert(doc_id, mh)
    return dropped, time.perf_counter() - started


def prf(c: Counter) -> tuple[float, float, float]:
    p = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
    r = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0
    return p, r, 2 * p * r / (p + r) if p + r else 0.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--originals", type=int, default=600, help="original documents per language")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", choices=("memory", "disk"), default="memory", help="cptflow's near-dedup backend")
    args = ap.parse_args(argv)
    rng, t = random.Random(args.seed), args.threshold
    rows, total = [], {"ours": Counter(), "ref": Counter(), "n": 0, "s_ours": 0.0, "s_ref": 0.0}
    for language in ("en", "ko"):
        docs = corpus(language, args.originals, args.cache, rng)
        unit, n = TRUTH_SHINGLES[language]
        sims = truth_similarities({d: reference_shingles(text, unit, n) for d, text in docs})
        true_pairs = sum(v >= t for s in sims.values() for v in s.values()) // 2
        near = sum(abs(v - t) < 0.05 for s in sims.values() for v in s.values()) // 2
        order = [d for d, _ in docs]
        ours, s_ours = run_ours(docs, language, t, args.backend)
        ref, s_ref = run_datasketch(docs, language, t, sims)
        c_ours, c_ref = judge(order, ours, sims, t), judge(order, ref, sims, t)
        rows.append((f"{language} ({unit} {n}-grams)", len(docs), true_pairs, near, c_ours, c_ref))
        total["ours"] += c_ours
        total["ref"] += c_ref
        total["n"] += len(docs)
        total["s_ours"] += s_ours
        total["s_ref"] += s_ref
    rows.append(("all", total["n"], sum(r[2] for r in rows), sum(r[3] for r in rows), total["ours"], total["ref"]))
    print(f"near dedup at Jaccard >= {t}, truth: exact Jaccard of reference shingles, seed {args.seed}, "
          f"cptflow backend {args.backend}")
    print("| language | docs | true pairs | pairs within ±0.05 | cptflow P | R | F1 | tp/fp/fn "
          "| datasketch P | R | F1 | tp/fp/fn |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, n_docs, true_pairs, near, c_ours, c_ref in rows:
        cells = []
        for c in (c_ours, c_ref):
            p, r, f = prf(c)
            cells.append(f"{p:.4f} | {r:.4f} | {f:.4f} | {c['tp']}/{c['fp']}/{c['fn']}")
        print(f"| {name} | {n_docs} | {true_pairs} | {near} | {cells[0]} | {cells[1]} |")
    rate, ref_rate = total["n"] / total["s_ours"], total["n"] / total["s_ref"]
    print(f"throughput, one process, shingling included: cptflow {rate:.0f} docs/s, datasketch {ref_rate:.0f} docs/s")
    (p, r, f), (_, _, bf) = prf(total["ours"]), prf(total["ref"])
    print(f"precision={p:.4f} recall={r:.4f} f1={f:.4f} baseline_f1={bf:.4f} "
          f"docs_per_s={rate:.1f} baseline_docs_per_s={ref_rate:.1f}")


if __name__ == "__main__":
    sys.exit(main())
