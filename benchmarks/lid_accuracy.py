"""Macro-F1 of cptflow's language step on real multilingual text, beside raw fastText ``predict``.

    python benchmarks/lid_accuracy.py [--per-language 120] [--min-score 0.65] [--seed 0] 2>/dev/null

Items: paragraphs from this machine's Debian documentation in 21 languages (``multilingual_text``): manual
pages and gettext catalogs, labelled by the language folder they are installed in and kept only when a check
independent of fastText (script, spaCy stop words) agrees. Up to ``--per-language`` items per language.

Ours: the language step as the curate stage runs it (``run_curate_step("language")``), keeping the labelled
languages at ``min_score``; its prediction for an item is the ``metadata["language"]`` it wrote (kept and
dropped documents alike), or "abstain" when it dropped the item as ``language_low_score``: the step does not
claim any language for those, and an abstention counts against recall only.
Reference: the same ``lid.176.ftz`` loaded with ``fasttext``, ``model.predict(text)`` (newlines to spaces,
top label, no threshold).

Macro-F1 over the labelled languages with scikit-learn (a prediction outside them is a miss for its item's
language and a false positive for none). Last line: ``macro_f1``, ``baseline_macro_f1``, ``n``.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from curate_corpus import read_rows, write_documents  # noqa: E402
from multilingual_text import LANGUAGES, labelled_items  # noqa: E402
from sklearn.metrics import f1_score, precision_recall_fscore_support  # noqa: E402

from cpt_core.curate.language_id import REASON_LOW_SCORE, default_model_path  # noqa: E402
from cpt_core.curate.pipeline import CurateConfig, run_curate_step  # noqa: E402

ABSTAIN = "abstain"


def ours(items: list[tuple[str, str, str]], min_score: float, tmp: Path) -> list[str]:
    rows = [{"id": str(i), "text": text, "metadata": {}} for i, (_, _, text) in enumerate(items)]
    source = write_documents(tmp / "extract", rows)
    cfg = CurateConfig.model_validate({"language": {"languages": sorted({lang for lang, _, _ in items}),
                                                    "min_score": min_score}})  # fmt: skip
    out = tmp / "language"
    run_curate_step("language", cfg, source, out, tmp / "state", "lid-bench")
    predicted = {}
    for row in read_rows(out / "documents") + read_rows(out / "dropped"):
        meta = row["metadata"]
        predicted[row["id"]] = ABSTAIN if meta.get("filter_reason") == REASON_LOW_SCORE else meta["language"]
    return [predicted[str(i)] for i in range(len(items))]


def raw_fasttext(items: list[tuple[str, str, str]]) -> list[str]:
    import fasttext

    model = fasttext.load_model(str(default_model_path()))
    return [model.predict(text.replace("\n", " "))[0][0].removeprefix("__label__") for _, _, text in items]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-language", type=int, default=120)
    ap.add_argument("--min-score", type=float, default=0.65, help="the language step's min_score")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    items = labelled_items(args.per_language, random.Random(args.seed))
    truth = [lang for lang, _, _ in items]
    labels = [lang for lang in LANGUAGES if lang in set(truth)]
    with tempfile.TemporaryDirectory() as tmp:
        mine = ours(items, args.min_score, Path(tmp))
    ref = raw_fasttext(items)
    p1, r1, f1, n = precision_recall_fscore_support(truth, mine, labels=labels, zero_division=0)
    p2, r2, f2, _ = precision_recall_fscore_support(truth, ref, labels=labels, zero_division=0)
    sources = Counter((lang, src) for lang, src, _ in items)
    abstained = Counter(t for t, m in zip(truth, mine, strict=True) if m == ABSTAIN)
    print(f"language ID on {len(items)} labelled paragraphs of Debian documentation, {len(labels)} languages, "
          f"seed {args.seed}; ours at min_score {args.min_score}")
    print("| language | items (man/mo) | ours P | R | F1 | abstained | fastText P | R | F1 | fastText's top confusions |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for i, lang in enumerate(labels):
        wrong = Counter(p for t, p in zip(truth, ref, strict=True) if t == lang and p != lang).most_common(2)
        confusions = ", ".join(f"{p} {c}" for p, c in wrong) or "-"
        print(f"| {lang} | {n[i]} ({sources[(lang, 'man')]}/{sources[(lang, 'mo')]}) | {p1[i]:.3f} | {r1[i]:.3f} "
              f"| {f1[i]:.3f} | {abstained[lang]} | {p2[i]:.3f} | {r2[i]:.3f} | {f2[i]:.3f} | {confusions} |")
    macro, base = (f1_score(truth, pred, labels=labels, average="macro", zero_division=0) for pred in (mine, ref))
    agree = sum(m == r for m, r in zip(mine, ref, strict=True) if m != ABSTAIN)
    print(f"ours agrees with raw fastText on {agree} of {len(items) - sum(abstained.values())} items it labels; "
          f"abstained on {sum(abstained.values())}")
    print(f"macro_f1={macro:.4f} baseline_macro_f1={base:.4f} n={len(items)} languages={len(labels)}")


if __name__ == "__main__":
    sys.exit(main())
