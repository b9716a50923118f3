"""Peak memory (RSS) of the curate stage at 1x and 4x a corpus, each size in a fresh process.

    python benchmarks/curate_memory.py [--docs 500] [--ko-share 0.2] [--seed 0] [--backend memory|disk] 2>/dev/null

Corpus: real English (Python docs prose) and Korean (LibreOffice help, Debian FAQ) documents from
``curate_corpus``, ``--ko-share`` Korean, with near-copies (15 %) and exact copies (5 %); the 4x corpus has 4x
the distinct documents (not repeats, which dedup would drop before they cost anything).

Each size runs in its own ``python`` process: the curate stage's steps language -> quality -> select ->
exact_dedup -> near_dedup with ``run_curate_step`` (English and Korean kept, other settings default, one
worker, so the steps run inside that process). Decontamination is left out: it needs a run's evaluation
texts, and its memory holds those, not the corpus. The child reports its peak RSS (``VmHWM`` of
``/proc/self/status``; see ``peak_mb`` for why not ``ru_maxrss``) after imports, after a warm-up on the same 10
English and 10 Korean documents at both sizes (the fixed cost), after each step, and at the end.

Then, in this process, what the near-dedup index costs per kept document. With ``--backend memory``: a
``NearDedupFilter`` fed the near_dedup input of each size, its memory measured with ``tracemalloc`` (its LSH
index, MinHash signatures and, for exact verification, each document's 64-bit shingle digests), which is what
grows with the corpus; once more with ``exact_verify`` off, to split the digests from the signatures and LSH.
With ``--backend disk`` the filter holds no index (it reads the verification's decisions): the rows give the
bytes of the index the step writes to disk for the state (``index/minhash/``: datatrove's band index, full
signatures, sorted band tables) per kept document instead.

``--backend`` picks the dedup backend of both dedup steps (``curate.exact_dedup.backend``,
``curate.near_dedup.backend``). For either, the near_dedup step is also run alone on the near_dedup input of
each size under ``tracemalloc``: its peak of Python allocations (the index, signatures, candidate groups; for
the disk backend every datatrove stage it runs, in this process) is the index-related memory, and its growth
from 1x to 4x is what a larger history or corpus costs.

Last line: ``ratio`` = peak RSS at 4x / peak RSS at 1x (goal <= 1.3), the peaks in MB, and the near-dedup
index's KB per kept document at 4x (``near_index_kb_per_doc``: in memory for the memory backend, on disk for
the disk backend).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curate_corpus import STAGE_STEPS, curate, originals, read_rows, with_copies, write_documents  # noqa: E402
from debian_text import DEFAULT_CACHE, HANGUL  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"language": {"languages": ["en", "ko"]}}


def config(backend: str) -> dict:
    return {**CONFIG, "exact_dedup": {"backend": backend}, "near_dedup": {"backend": backend}}


def peak_mb() -> float:
    """This process's peak RSS, MB: ``VmHWM``, the high-water mark of its own address space. Not
    ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries the parent's RSS at fork into it across exec, so a
    child started by a parent holding the 4x corpus would report the parent's size."""
    with open("/proc/self/status", encoding="ascii") as fh:
        kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    return kib / 1024


def warm_input(rows: list[dict], folder: Path) -> Path:
    """10 Korean and 10 English documents: the same warm-up for both sizes, so each fixed cost includes both
    word tokenizers (Kiwi is large) and the same texts."""
    korean = [r for r in rows if HANGUL.search(r["text"])][:10]
    return write_documents(folder, korean + [r for r in rows if r not in korean][:10])


def child(source: Path, root: Path, warm: Path, backend: str) -> None:
    """Curate ``source`` under ``root`` after a warm-up on ``warm``; print one JSON line of peak RSS figures."""
    from cpt_core.curate.pipeline import CurateConfig

    cfg = CurateConfig.model_validate(config(backend))
    imports_mb = peak_mb()
    curate(cfg, warm, root / "warm", "warm", STAGE_STEPS)
    report = {"imports_mb": imports_mb, "fixed_mb": peak_mb(), "steps": {}}
    started = time.perf_counter()
    layout_root = root / "root"
    current = source
    for step in STAGE_STEPS:  # one step at a time, so the peak after each is known
        summary = curate(cfg, current, layout_root, f"run-{step}", (step,))[step]
        current = layout_root / "runs" / f"run-{step}" / "curate" / step
        report["steps"][step] = {"peak_mb": peak_mb(), "docs_in": summary["docs_in"], "docs_out": summary["docs_out"]}
    report["peak_mb"] = peak_mb()
    report["seconds"] = time.perf_counter() - started
    report["near_input"] = str(layout_root / "runs" / "run-exact_dedup" / "curate" / "exact_dedup")
    print(json.dumps(report))


def run_child(source: Path, root: Path, warm: Path, backend: str) -> dict:
    env_path = f"{ROOT}:{Path(__file__).resolve().parent}"
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(source), str(root), str(warm), "--backend", backend],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": env_path},
    )  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def near_index_bytes(near_input: Path, exact_verify: bool = True) -> tuple[int, int]:
    """(bytes the near-dedup filter holds after a pass, documents it kept) for the documents in ``near_input``;
    ``exact_verify`` off: without the shingle digests kept for exact verification."""
    from datatrove.data import Document

    from cpt_core.curate.dedup import NearDedupConfig, NearDedupFilter

    rows = read_rows(near_input / "documents")
    docs = [Document(text=r["text"], id=r["id"], metadata=r.get("metadata") or {}) for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        # A first pass over a few documents, so lazy imports and caches are not counted as the index.
        sum(1 for _ in NearDedupFilter(NearDedupConfig(), tmp, [], Path(tmp) / "warm").run(iter(docs[:20])))
        step = NearDedupFilter(NearDedupConfig(exact_verify=exact_verify), tmp, [], Path(tmp) / "index")
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = sum(1 for _ in step.run(iter(docs)))
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    return held, kept


def near_step_peak(near_input: Path, backend: str) -> tuple[int, int, int]:
    """(peak Python allocations in bytes (``tracemalloc``) of the near_dedup step run alone on ``near_input``,
    bytes of the index it wrote, documents it kept)."""
    from cpt_core.curate.pipeline import CurateConfig, run_curate_step

    cfg = CurateConfig.model_validate(config(backend))
    with tempfile.TemporaryDirectory() as tmp:
        run_curate_step("near_dedup", cfg, near_input, Path(tmp) / "warm", Path(tmp) / "state", "w", earlier_runs=[])
        tracemalloc.start()
        manifest = run_curate_step(
            "near_dedup", cfg, near_input, Path(tmp) / "out", Path(tmp) / "state", "r", earlier_runs=[]
        )
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        index_bytes = sum(f.stat().st_size for f in (Path(tmp) / "out" / "index").rglob("*") if f.is_file())
    return peak, index_bytes, manifest["summary"]["docs_out"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=500, help="distinct documents at 1x (copies come on top)")
    ap.add_argument("--ko-share", type=float, default=0.2)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", choices=("memory", "disk"), default="memory", help="both dedup steps' backend")
    ap.add_argument("--child", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(*args.child, args.backend)
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        warm = None
        for scale in (1, 4):
            rng = random.Random(args.seed)
            rows = with_copies(originals(scale * args.docs, args.cache, rng, args.ko_share), rng)
            source = write_documents(Path(tmp) / f"x{scale}" / "extract", rows)
            warm = warm or warm_input(rows, Path(tmp) / "warm")
            reports[scale] = run_child(source, Path(tmp) / f"x{scale}", warm, args.backend)
            reports[scale]["rows"] = len(rows)
            near_input = Path(reports[scale]["near_input"])
            step_peak, disk_bytes, disk_kept = near_step_peak(near_input, args.backend)
            reports[scale]["step_peak"] = step_peak
            if args.backend == "memory":
                reports[scale]["near_bytes"], reports[scale]["near_kept"] = near_index_bytes(near_input)
                reports[scale]["lean_bytes"], _ = near_index_bytes(near_input, exact_verify=False)
            else:
                reports[scale]["near_bytes"], reports[scale]["near_kept"] = disk_bytes, disk_kept
    print(f"curate stage peak RSS, fresh process per size, {args.docs} distinct documents at 1x "
          f"({args.ko_share:.0%} Korean), seed {args.seed}, dedup backend {args.backend}")
    print("| | 1x | 4x |")
    print("|---|---|---|")
    r1, r4 = reports[1], reports[4]
    print(f"| documents in | {r1['rows']} | {r4['rows']} |")
    print(f"| after imports, MB | {r1['imports_mb']:.0f} | {r4['imports_mb']:.0f} |")
    print(f"| fixed: after imports + warm-up, MB | {r1['fixed_mb']:.0f} | {r4['fixed_mb']:.0f} |")
    for step in STAGE_STEPS:
        a, b = r1["steps"][step], r4["steps"][step]
        print(f"| peak after {step}, MB (docs in -> out) | {a['peak_mb']:.0f} ({a['docs_in']} -> {a['docs_out']}) "
              f"| {b['peak_mb']:.0f} ({b['docs_in']} -> {b['docs_out']}) |")
    print(f"| peak RSS, MB | {r1['peak_mb']:.0f} | {r4['peak_mb']:.0f} |")
    print(f"| stage seconds | {r1['seconds']:.1f} | {r4['seconds']:.1f} |")
    per_doc = [r["near_bytes"] / max(r["near_kept"], 1) for r in (r1, r4)]
    what = "memory backend's near-dedup filter, memory after its pass" if args.backend == "memory" else (
        "disk backend's near-dedup index written to disk (index/minhash)")  # fmt: skip
    print(f"| {what}, MB (kept docs) | {r1['near_bytes'] / 2**20:.1f} "
          f"({r1['near_kept']}) | {r4['near_bytes'] / 2**20:.1f} ({r4['near_kept']}) |")
    print(f"| ... per kept document, KB | {per_doc[0] / 1024:.1f} | {per_doc[1] / 1024:.1f} |")
    if args.backend == "memory":
        lean = [r["lean_bytes"] / max(r["near_kept"], 1) / 1024 for r in (r1, r4)]
        print(f"| ... of which signatures + LSH (exact_verify off), KB per kept document | {lean[0]:.1f} | {lean[1]:.1f} |")
    print(f"| near_dedup step alone ({args.backend} backend), peak traced allocations, MB | "
          f"{r1['step_peak'] / 2**20:.2f} | {r4['step_peak'] / 2**20:.2f} |")
    step_growth = (r4["step_peak"] - r1["step_peak"]) / max(r4["near_kept"] - r1["near_kept"], 1)
    print(f"near_dedup step's index memory growth: {step_growth / 1024:.2f} KB per added kept document")
    ratio = r4["peak_mb"] / r1["peak_mb"]
    growth = (r4["peak_mb"] - r1["peak_mb"]) / max(r4["rows"] - r1["rows"], 1) * 1024
    print(f"peak growth: {growth:.1f} KB per added input document")
    print(f"ratio={ratio:.4f} peak_mb_1x={r1['peak_mb']:.1f} peak_mb_4x={r4['peak_mb']:.1f} "
          f"fixed_mb={r1['fixed_mb']:.1f} near_index_kb_per_doc={per_doc[1] / 1024:.2f} "
          f"near_step_growth_kb_per_doc={step_growth / 1024:.2f}")


if __name__ == "__main__":
    sys.exit(main())
