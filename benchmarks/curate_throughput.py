"""Documents/s per core through cptflow's curate stage vs the same datatrove steps run bare, and its language
ID step vs raw fastText ``model.predict``.

    python benchmarks/curate_throughput.py [--docs 1200] [--seed 0] 2>/dev/null

Documents: real English prose from the Python 3.11 docs (``curate_corpus``), plus near-copies (15 %) and exact
copies up to whitespace (5 %), shuffled, written once as the extract stage's ``documents/`` JSONL. English
only, so the bare filters' defaults mean the same as ours (datatrove's Gopher defaults drop every Korean
document, which would leave the bare side less work).

Ours: the stage as the curate flow runs it, ``run_curate_step`` for language -> quality -> exact_dedup ->
near_dedup with ``CurateConfig()`` defaults, one worker, each step its own resumable datatrove pipeline (JSONL
read and write, exclusion writer, language tally, manifest with a content hash; the quality step also redacts
PII; near dedup verifies LSH candidates by exact Jaccard and writes its index).

Bare reference: ONE datatrove pipeline on ``LocalPipelineExecutor`` (one task, one worker) doing the same work
with nothing of cptflow: ``JsonlReader`` -> datatrove's ``LanguageFilter`` (``en``, 0.65; its own
``FT176LID`` backend pointed at the same local ``lid.176.ftz``) -> ``GopherQualityFilter`` ->
``GopherRepetitionFilter`` -> ``C4QualityFilter`` (same thresholds as our quality step; our quality step runs no
FineWeb filter, so the bare side runs none either) -> exact dedup (a datatrove ``BaseFilter`` keeping a set of
sha256 digests of the lower-cased, whitespace-collapsed text, our exact key) -> near dedup (a datatrove
``BaseFilter`` doing datasketch's usual use: ``MinHash(num_perm=128)`` of word 5-grams, ``MinHashLSH(threshold=
0.8)``, a candidate means a duplicate, no verification, no index written) -> ``JsonlWriter``. One pass instead
of four, so it is the cheapest way to do this work: what ours spends beyond it is the price of separate
resumable steps and of exact verification. (datatrove's own multi-stage ``MinhashDedup*``/``ExactDedup*``
pipelines read the data twice more each and are not a cheaper reference.)

LID alone: our language step (the stage, wall time) vs a loop of raw ``fasttext`` ``model.predict(text)``
(newlines to spaces, k=1) over the same texts, model loaded before the clock starts.

Times are CPU seconds of this one process (both sides run in it, one worker): on a shared machine wall time
swings with other load; wall seconds are printed beside. Per core = per CPU second.

Last line: ``overhead`` = our time / bare time - 1 (goal < 0.10), ``lid_ratio`` = our LID docs/s / raw
fastText docs/s, and the docs/s figures.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curate_corpus import FOUR_STEPS, curate, originals, read_rows, with_copies, write_documents  # noqa: E402
from datatrove.data import Document  # noqa: E402
from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.filters import (  # noqa: E402
    C4QualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
)
from datatrove.pipeline.filters.base_filter import BaseFilter  # noqa: E402
from datatrove.pipeline.readers import JsonlReader  # noqa: E402
from datatrove.pipeline.writers import JsonlWriter  # noqa: E402
from datatrove.utils.lid import FT176LID  # noqa: E402
from debian_text import DEFAULT_CACHE  # noqa: E402

from cpt_core.curate.language_id import default_model_path  # noqa: E402
from cpt_core.curate.pipeline import CurateConfig  # noqa: E402

LID_FILE = str(default_model_path())  # only the file's location: the bare side loads it with datatrove


class LocalLid(FT176LID):
    """datatrove's lid.176 backend reading the local ``.ftz`` (datatrove copies it into its asset cache)."""

    MODEL_URL = LID_FILE


class BareExactDedup(BaseFilter):
    name = "exact dedup (sha256 set)"

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, doc: Document) -> bool:
        digest = hashlib.sha256(" ".join(doc.text.lower().split()).encode("utf-8")).hexdigest()
        if digest in self.seen:
            return False
        self.seen.add(digest)
        return True


class BareNearDedup(BaseFilter):
    name = "near dedup (datasketch MinHashLSH)"

    def __init__(self, threshold: float = 0.8, num_perm: int = 128):
        super().__init__()
        self.threshold, self.num_perm = threshold, num_perm
        self.lsh = None

    def filter(self, doc: Document) -> bool:
        from datasketch import MinHash, MinHashLSH

        if self.lsh is None:
            self.lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        words = doc.text.lower().split()
        mh = MinHash(num_perm=self.num_perm)
        mh.update_batch([" ".join(words[i : i + 5]).encode("utf-8") for i in range(max(len(words) - 4, 1))])
        if self.lsh.query(mh):
            return False
        self.lsh.insert(doc.id, mh, check_duplication=False)
        return True


def bare_pipeline(source: Path, out: Path) -> tuple[dict[str, float], dict[str, float], int]:
    """({"wall_s", "cpu_s"}, {step: seconds inside it}, docs written) for the one-pass datatrove pipeline."""
    lid = LanguageFilter(languages=["en"], language_threshold=0.65)
    lid.model = LocalLid(["en"])
    pipeline = [
        JsonlReader(str(source / "documents")),
        lid,
        GopherQualityFilter(),
        GopherRepetitionFilter(),
        C4QualityFilter(filter_no_terminal_punct=False, min_words_per_line=3, min_num_sentences=5),
        BareExactDedup(),
        BareNearDedup(),
        JsonlWriter(str(out / "documents")),
    ]
    wall, cpu = time.perf_counter(), time.process_time()
    stats = LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(out / "logs")).run()
    took = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    per_step = {s.name.split(": ", 1)[-1]: s.time_stats.total for s in stats.stats}
    return took, per_step, len(read_rows(out / "documents"))


def raw_fasttext(texts: list[str]) -> dict[str, float]:
    import fasttext

    model = fasttext.load_model(LID_FILE)
    lines = [t.replace("\n", " ") for t in texts]
    wall, cpu = time.perf_counter(), time.process_time()
    for line in lines:
        model.predict(line)
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


BARE_STEPS = {
    "language": (LanguageFilter,),
    "quality": (GopherQualityFilter, GopherRepetitionFilter, C4QualityFilter),
    "exact_dedup": (BareExactDedup,),
    "near_dedup": (BareNearDedup,),
}


def report(n: int, ours: dict, bare: dict, bare_steps: dict, bare_kept: int, raw: dict) -> None:
    ours_total = {k: sum(ours[s][k] for s in FOUR_STEPS) for k in ("wall_s", "cpu_s")}
    print("| step | cptflow stage CPU s | wall s | docs in -> out | bare datatrove step s (inside its one pass) |")
    print("|---|---|---|---|---|")
    for step in FOUR_STEPS:
        inside = sum(bare_steps.get(cls.name, 0.0) for cls in BARE_STEPS[step])
        s = ours[step]
        print(f"| {step} | {s['cpu_s']:.2f} | {s['wall_s']:.2f} | {s['docs_in']} -> {s['docs_out']} | {inside:.2f} |")
    print(f"| whole, cptflow | {ours_total['cpu_s']:.2f} | {ours_total['wall_s']:.2f} "
          f"| {n} -> {ours['near_dedup']['docs_out']} | |")
    print(f"| whole, bare datatrove | {bare['cpu_s']:.2f} | {bare['wall_s']:.2f} | {n} -> {bare_kept} | |")
    print(f"| language ID, raw fastText predict | {raw['cpu_s']:.2f} | {raw['wall_s']:.2f} | {n} | |")
    rate = {k: n / ours_total["cpu_s"] for k in ("ours",)} | {"bare": n / bare["cpu_s"]}
    lid, raw_rate = n / ours["language"]["cpu_s"], n / raw["cpu_s"]
    print(f"docs/s per core (CPU time): cptflow {rate['ours']:.1f}, bare datatrove {rate['bare']:.1f}; "
          f"language ID step {lid:.0f}, raw fastText {raw_rate:.0f}")
    print(f"overhead={ours_total['cpu_s'] / bare['cpu_s'] - 1:.4f} lid_ratio={lid / raw_rate:.4f} "
          f"docs_per_s={rate['ours']:.1f} bare_docs_per_s={rate['bare']:.1f} lid_docs_per_s={lid:.1f} "
          f"fasttext_docs_per_s={raw_rate:.1f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=1200, help="distinct documents (copies come on top)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    rows = with_copies(originals(args.docs, args.cache, rng), rng)
    with tempfile.TemporaryDirectory() as tmp:
        source = write_documents(Path(tmp) / "extract", rows)
        # Warm both sides once (imports, spaCy blank model, fastText file into datatrove's asset cache).
        warm = write_documents(Path(tmp) / "warm", rows[:20])
        curate(CurateConfig(), warm, Path(tmp) / "warm-root", "warm")
        bare_pipeline(warm, Path(tmp) / "warm-bare")
        ours = curate(CurateConfig(), source, Path(tmp) / "root", "run-1")
        bare, bare_steps, bare_kept = bare_pipeline(source, Path(tmp) / "bare")
        raw = raw_fasttext([r["text"] for r in rows])
    print(f"curate throughput, one worker, {len(rows)} documents ({args.docs} distinct + copies), seed {args.seed}; "
          "figures from CPU time of the one process (the machine is shared), wall time beside")
    report(len(rows), ours, bare, bare_steps, bare_kept, raw)


if __name__ == "__main__":
    sys.exit(main())
