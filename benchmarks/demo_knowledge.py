"""The demo's figures beside their reference: the base model, and the targets the demo aims for.

    .venv/bin/python benchmarks/demo_knowledge.py                 # runs `cptflow run configs/demo.yaml --fresh`
    .venv/bin/python benchmarks/demo_knowledge.py --run-dir DIR   # reads a finished run instead

Prints wall time, documents per stage, tokens, and base vs trained: fact-probe accuracy (target: +30 points
or more) and bits-per-byte on held-out domain and general text (target: general worsens by at most 2 %).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_demo() -> tuple[Path, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "cptflow"), "run", "configs/demo.yaml", "--fresh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"demo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    match = re.search(r"^run:\s+\S+\s+\((.+)\)$", proc.stdout, re.M)
    return Path(match.group(1)), elapsed


def manifest(folder: Path) -> dict:
    path = folder / "_manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path)
    args = parser.parse_args()
    if args.run_dir:
        run_dir, wall = args.run_dir.resolve(), None
    else:
        run_dir, wall = run_demo()

    print(f"run: {run_dir}")
    if wall is not None:
        print(f"wall time of `cptflow run configs/demo.yaml --fresh`: {wall:.0f} s")
    print("\n| stage | in | out | dropped (reason: n) | seconds |\n|---|---|---|---|---|")
    stages = [("crawl", run_dir / "ingest" / "crawl"), ("extract", run_dir / "ingest" / "extract")]
    stages += [(f"curate/{s}", run_dir / "curate" / s) for s in ("language", "quality", "exact_dedup", "near_dedup")]
    for name, folder in stages:
        m = manifest(folder)
        s = m.get("summary", {})
        drops = ", ".join(f"{k}: {v}" for k, v in sorted(s.get("dropped", {}).items()) if v)
        print(f"| {name} | {s.get('docs_in', '')} | {s.get('docs_out', '')} | {drops} | {m.get('seconds', 0):.1f} |")

    mix = json.loads((run_dir / "tokens" / "mix.json").read_text())
    print("\n| token source | tokens | share |\n|---|---|---|")
    for source, n in mix["tokens_by_source"].items():
        print(f"| {source} | {n} | {mix['mix'].get(source, 0):.1%} |")
    print(f"tokens per byte of domain text: {mix.get('tokens_per_byte')}")
    train = manifest(run_dir / "model").get("summary", {})
    print(
        f"\ntraining: {train.get('steps')} steps, {train.get('tokens')} tokens, loss {train.get('first_loss', 0):.3f}"
        f" -> {train.get('final_loss', 0):.3f}, {train.get('tokens_per_s', 0):.0f} tok/s, "
        f"{train.get('precision')} on {train.get('device')}, {manifest(run_dir / 'model').get('seconds', 0):.0f} s"
    )

    results = json.loads((run_dir / "eval" / "results.json").read_text())
    base, trained = results["base"], results["trained"]
    print("\n| metric | base (reference) | trained | change | target |\n|---|---|---|---|---|")
    acc_b, acc_t = base.get("probe_acc"), trained.get("probe_acc")
    if acc_b is not None:
        gain = 100 * (acc_t - acc_b)
        ok = "met" if gain >= 30 else "not met"
        print(f"| fact-probe accuracy (n={base['probe']['n']}) | {acc_b:.1%} | {acc_t:.1%} | {gain:+.1f} pts "
              f"| >= +30 pts ({ok}) |")
    for key, label, target in (("domain_bpb", "domain bits/byte", "lower"),
                               ("general_bpb", "general bits/byte", "<= +2 %")):
        b, t = base[key], trained[key]
        rel = (t - b) / b
        ok = "" if key == "domain_bpb" else (" (met)" if rel <= 0.02 else " (not met)")
        print(f"| {label} | {b:.4f} | {t:.4f} | {rel:+.1%} | {target}{ok} |")
    decision = json.loads((run_dir / "promote" / "decision.json").read_text())
    print(f"\npromoted: {decision.get('promote')}  ({'; '.join(decision.get('reasons', []))})")


if __name__ == "__main__":
    main()
