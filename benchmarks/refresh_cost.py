"""What a refresh pays for the history behind it: curating 10 % new documents against a committed history, vs
curating the same 10 % alone on an empty root.

    python benchmarks/refresh_cost.py [--history 1500] [--new-share 0.1] [--repeats 3] [--seed 0]
        [--backend memory|disk] 2>/dev/null

``--backend`` sets both dedup steps' backend (``curate.exact_dedup.backend``, ``curate.near_dedup.backend``):
memory loads run 1's committed index; disk searches it where it lies (datatrove's buckets stage merges run 1's
band index files as sorted streams, matches are looked up by binary search).

Corpus: real English (Python docs prose) and Korean (LibreOffice help, Debian FAQ) documents from
``curate_corpus``, 20 % Korean. Run 1 (the history): ``--history`` distinct documents plus their near and
exact copies, curated (language -> quality -> select -> exact_dedup -> near_dedup, ``run_curate_step``, one
worker; decontamination left out: it needs a run's evaluation texts), then, as the flow does after a
successful curation, its dedup indexes committed into ``state/dedup/run-1/`` (``commit_dedup_index``) and the
run recorded finished (``data_only``), so later runs see it.

The refresh's input: new documents numbering ``--new-share`` of run 1's input, as a crawl of changed pages
brings them (the crawl state keeps unchanged pages out): 70 % documents run 1 never saw, 20 % edited copies
of run-1 documents (updated pages), 10 % exact copies (republished ones).

Timed, CPU seconds of this one process (the machine is shared; wall beside), best of ``--repeats``:
- refresh: the new documents as a second run under run 1's root, deduplicated against its committed index
  (each repeat a fresh run id with the same view of the state);
- alone: the same documents as the only run on an empty root.

Last line: ``ratio`` = refresh time / alone time (goal <= 1.2), the seconds, and the history's size.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curate_corpus import STAGE_STEPS, curate, originals, with_copies, write_documents  # noqa: E402
from debian_text import DEFAULT_CACHE, edit_words, surface_noise  # noqa: E402

from cpt_core.curate.pipeline import CurateConfig  # noqa: E402
from cpt_core.state import record_outcome  # noqa: E402

CONFIG = {"language": {"languages": ["en", "ko"]}}


def refresh_rows(history: list[tuple[str, str]], fresh: list[tuple[str, str]], n: int, rng: random.Random):
    """``n`` rows: 70 % from ``fresh``, 20 % edited copies of ``history`` documents, 10 % exact copies."""
    n_near, n_exact = round(0.2 * n), round(0.1 * n)
    vocab = [w for _, t in history[:300] for w in t.split()]
    rows = [{"id": f"new{i}", "text": t, "metadata": {}} for i, (_, t) in enumerate(fresh[: n - n_near - n_exact])]
    for j, (language, text) in enumerate(rng.sample(history, n_near + n_exact)):
        if j < n_near:
            text = surface_noise(edit_words(text.split(), vocab, rng, rng.uniform(0.0, 0.04)), rng, language)
        rows.append({"id": f"updated{j}", "text": text, "metadata": {}})
    for row in rows:
        row["metadata"]["url"] = f"https://docs.example/{row['id']}"
    rng.shuffle(rows)
    return rows


def total(summaries: dict) -> dict[str, float]:
    return {k: sum(summaries[s][k] for s in STAGE_STEPS) for k in ("cpu_s", "wall_s")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--history", type=int, default=1500, help="distinct documents in run 1 (copies on top)")
    ap.add_argument("--new-share", type=float, default=0.1, help="refresh input / run 1 input")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", choices=("memory", "disk"), default="memory", help="both dedup steps' backend")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    backend = {"backend": args.backend}
    cfg = CurateConfig.model_validate({**CONFIG, "exact_dedup": backend, "near_dedup": backend})
    # Copies add ~20 % to run 1's input, so 1.3 x the share in distinct documents covers the refresh's 70 %.
    docs = originals(args.history + round(1.3 * args.new_share * args.history) + 1, args.cache, rng, 0.2)
    history, fresh = docs[: args.history], docs[args.history :]
    history_rows = with_copies(history, rng)
    n_new = round(args.new_share * len(history_rows))
    new_rows = refresh_rows(history, fresh, n_new, rng)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "root"
        run1 = curate(cfg, write_documents(tmp / "history", history_rows), root, "run-1", STAGE_STEPS, commit=True)
        record_outcome(root / "state", "run-1", "data_only")
        source = write_documents(tmp / "new", new_rows)
        curate(cfg, source, tmp / "warm", "warm", STAGE_STEPS)  # imports and tokenizers loaded before timing
        refresh, alone = [], []
        for i in range(args.repeats):  # interleaved, so a burst of other load hits both sides alike
            refresh.append(curate(cfg, source, root, f"refresh-{i}", STAGE_STEPS))
            alone.append(curate(cfg, source, tmp / f"empty-{i}", "alone", STAGE_STEPS))
    best_refresh = min(refresh, key=lambda s: total(s)["cpu_s"])
    best_alone = min(alone, key=lambda s: total(s)["cpu_s"])
    report(args, run1, best_refresh, best_alone, len(history_rows), n_new)


def report(args, run1: dict, refresh: dict, alone: dict, n_history: int, n_new: int) -> None:
    print(f"refresh cost: run 1 = {n_history} documents ({args.history} distinct + copies, 20 % Korean), "
          f"refresh = {n_new} new documents, seed {args.seed}, dedup backend {args.backend}; CPU s of this process, best of {args.repeats}")
    print("| step | run 1 (history) CPU s | refresh vs run 1's index CPU s | alone, empty root CPU s "
          "| refresh docs out (dropped as earlier-run duplicates) | alone docs out |")
    print("|---|---|---|---|---|---|")
    for step in STAGE_STEPS:
        r, a = refresh[step], alone[step]
        earlier = sum(v for k, v in r["dropped"].items() if "earlier_run" in k)
        print(f"| {step} | {run1[step]['cpu_s']:.2f} | {r['cpu_s']:.2f} | {a['cpu_s']:.2f} "
              f"| {r['docs_out']} ({earlier}) | {a['docs_out']} |")
    t1, tr, ta = total(run1), total(refresh), total(alone)
    print(f"| whole (CPU s / wall s) | {t1['cpu_s']:.2f} / {t1['wall_s']:.2f} | {tr['cpu_s']:.2f} / "
          f"{tr['wall_s']:.2f} | {ta['cpu_s']:.2f} / {ta['wall_s']:.2f} | | |")
    print(f"index committed by run 1: {refresh['exact_dedup'].get('earlier_exact_hashes', 0)} exact hashes, "
          f"{refresh['near_dedup'].get('earlier_signatures', 0)} MinHash signatures (loaded by the refresh)")
    print(f"ratio={tr['cpu_s'] / ta['cpu_s']:.4f} refresh_s={tr['cpu_s']:.2f} alone_s={ta['cpu_s']:.2f} "
          f"history_docs={n_history} new_docs={n_new}")


if __name__ == "__main__":
    sys.exit(main())
