"""Corpora of real text for the curation benchmarks, and the curate stage driven as the flow drives it.

Documents: Debian documentation via ``debian_text`` (Python 3.11 docs in English, Korean LibreOffice help and
Debian FAQ in Korean), a few hundred words each; English ones with their reST markup removed (``plain_text``) and only when mostly prose (``is_prose``). ``corpus`` adds the copies a crawl meets: near-copies
(whole words edited at 0-4 %, then punctuation, case, spacing and line-break noise) and exact copies up to
whitespace, and shuffles, so every dedup step has work to do.

``curate`` runs the steps with ``cpt_core.curate.pipeline.run_curate_step`` in a run layout, one step after
another as ``flows.curate`` does (each step reads the previous step's ``documents/``), and, like the flow's
``commit-dedup-index`` task, commits the dedup indexes into ``state/dedup/<run>/`` when asked.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import time
from pathlib import Path

from debian_text import documents, edit_words, surface_noise

from cpt_core.curate.dedup import commit_dedup_index
from cpt_core.curate.pipeline import STEPS, CurateConfig, run_curate_step
from cpt_core.layout import RunLayout

FOUR_STEPS = ("language", "quality", "exact_dedup", "near_dedup")
# The stage without decontamination, which needs a run's evaluation texts (its memory holds those, not the
# corpus); select runs with its defaults (recency; undated documents kept).
STAGE_STEPS = tuple(s for s in STEPS if s != "decontaminate")
# A word of running prose: letters, an inner apostrophe or hyphen, one trailing punctuation mark.
PLAIN_WORD = re.compile(r"^[A-Za-z][a-z]*(?:['-][a-z]+)*[.,;:!?]?$")

ROLE = re.compile(r":[a-z]+(?::[a-z]+)*:`~?([^`<]*?)\s*(?:<[^>]*>)?`")  # :meth:`name` -> name
DIRECTIVE = re.compile(r"^\.\. .*$", re.M)  # ".. note::" lines


def plain_text(rest: str) -> str:
    """reST source as a reader sees it rendered: roles, inline-literal quotes, emphasis stars and directive
    lines removed (the text an extractor gets from the HTML pages)."""
    text = DIRECTIVE.sub("", ROLE.sub(r"\1", rest))
    text = re.sub(r"``|\*\*?|(?<=\w)`_", "", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def is_prose(text: str, share: float = 0.85) -> bool:
    """Whether at least ``share`` of the words are plain words (the Python docs' reST sources also hold
    code, tables and markup, which every quality filter drops: they would leave the dedup steps no work)."""
    words = text.split()
    return bool(words) and sum(bool(PLAIN_WORD.match(w)) for w in words) >= share * len(words)


def originals(n: int, cache: Path, rng: random.Random, ko_share: float = 0.0) -> list[tuple[str, str]]:
    """``n`` distinct (language, text) documents, ``ko_share`` of them Korean, shuffled."""
    n_ko = round(n * ko_share)
    pool = {"en": [t for t in map(plain_text, documents("en", cache, rng)) if is_prose(t)], "ko": documents("ko", cache, rng) if n_ko else []}
    if len(pool["en"]) < n - n_ko or len(pool["ko"]) < n_ko:
        raise SystemExit(
            f"asked for {n - n_ko} English and {n_ko} Korean documents; the Debian docs give "
            f"{len(pool['en'])} and {len(pool['ko'])}"
        )
    docs = [("en", t) for t in pool["en"][: n - n_ko]] + [("ko", t) for t in pool["ko"][:n_ko]]
    rng.shuffle(docs)
    return docs


def with_copies(
    docs: list[tuple[str, str]], rng: random.Random, near: float = 0.15, exact: float = 0.05, prefix: str = "d"
) -> list[dict]:
    """Rows ``{"id", "text", "metadata"}``: ``docs`` plus near-copies of a ``near`` share of them and exact
    copies (case and whitespace changed) of an ``exact`` share, shuffled."""
    vocab = [w for _, t in docs[:500] for w in t.split()]
    rows = [_row(f"{prefix}{i}", text) for i, (_, text) in enumerate(docs)]
    for i, (language, text) in enumerate(docs):
        draw = rng.random()
        if draw < near:
            edited = edit_words(text.split(), vocab, rng, rng.uniform(0.0, 0.04))
            rows.append(_row(f"{prefix}{i}-near", surface_noise(edited, rng, language)))
        elif draw < near + exact:
            rows.append(_row(f"{prefix}{i}-copy", "  ".join(text.split(" ")) + " "))
    rng.shuffle(rows)
    return rows


def _row(doc_id: str, text: str) -> dict:
    return {"id": doc_id, "text": text, "metadata": {"url": f"https://docs.example/{doc_id}"}}


def write_documents(folder: Path, rows: list[dict]) -> Path:
    """``folder/documents/00000.jsonl.gz`` in datatrove's JSONL form (the extract stage's output); returns
    ``folder``."""
    (folder / "documents").mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "documents" / "00000.jsonl.gz", "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return folder


def curate(
    cfg: CurateConfig,
    source: Path,
    root: Path,
    run_id: str,
    steps: tuple[str, ...] = FOUR_STEPS,
    commit: bool = False,
) -> dict[str, dict]:
    """Run ``steps`` on ``source`` as run ``run_id`` under ``root``; returns ``{step: summary}`` with each
    step's wall time in ``summary["wall_s"]`` and this process's CPU time in ``summary["cpu_s"]`` (one worker
    runs in this process). ``commit``: commit the dedup indexes, as the flow does."""
    layout = RunLayout.create(root, run_id)
    summaries, current = {}, source
    for step in steps:
        wall, cpu = time.perf_counter(), time.process_time()
        manifest = run_curate_step(step, cfg, current, layout.curate_step(step), layout.dedup_dir, run_id)
        summaries[step] = {**manifest["summary"], **_elapsed(wall, cpu)}
        current = layout.curate_step(step)
    if commit:
        wall, cpu = time.perf_counter(), time.process_time()
        for kind, step in (("exact", "exact_dedup"), ("near", "near_dedup")):
            if step in steps:
                commit_dedup_index(layout.dedup_dir, run_id, layout.curate_step(step), kind)
        summaries["commit"] = _elapsed(wall, cpu)
    return summaries


def _elapsed(wall: float, cpu: float) -> dict[str, float]:
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def read_rows(folder: Path, limit: int | None = None) -> list[dict]:
    """The rows of the ``*.jsonl.gz`` files under ``folder``, in file order (the first ``limit``)."""
    rows: list[dict] = []
    for path in sorted(folder.rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if limit is not None and len(rows) >= limit:
                    return rows
                rows.append(json.loads(line))
    return rows
