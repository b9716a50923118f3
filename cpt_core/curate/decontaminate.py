"""Decontamination: drop (or flag) training documents that overlap the evaluation sets in use.

No evaluation may score the model on text it trained on, so the last curation step compares every document
with the run's evaluation texts (``eval_texts``): the knowledge-graph fact probe (each probe question with its
answer), the auto probes of earlier visible runs (``state/probes/``), the rows of local lm-eval tasks (task
YAMLs whose ``dataset_kwargs.data_files`` are local JSON/JSONL files, or folders of them), the general
held-out text (``evaluate.general_heldout``) and any ``extra_sources`` (JSONL with ``text`` or plain text).

Algorithm, as in GPT-3's and Llama's decontamination: texts are normalised (NFKC, case folding, words =
runs of letters/digits, so punctuation and whitespace do not matter) and every word ``ngram``-gram of an
evaluation text is indexed (13 by default). A document that shares at least ``min_overlap`` distinct n-grams
with the index is contaminated. An evaluation item shorter than ``ngram`` words (a probe question is often
8-12 words; a Korean one 3-6 eojeol) cannot produce an n-gram, so it is matched whole instead: the document
is contaminated when it contains the item's entire word sequence, provided the item has at least
``min_item_chars`` characters (shorter items would match ordinary prose by chance and are skipped, counted as
``eval_items_too_short``).

``mode: drop`` removes the document with the reason ``contaminated_<source>`` (``dropped/`` like every
step); ``mode: flag`` keeps it and adds ``metadata["contamination"] = {source, id, overlap}``. Either way the
stats ``contamination_<source>`` count the hits.

Trade-offs: exact n-gram matching is cheap and has no false negatives for verbatim copies, but misses
paraphrases (near dedup's MinHash covers those between documents; a paraphrased probe item is by design not
a leak of the item). The index lives in memory: ~13 n-grams per word of evaluation text, small next to
corpora, since evaluation sets are small.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Literal

from datatrove.data import Document
from datatrove.pipeline.writers.disk_base import DiskWriter
from pydantic import BaseModel, ConfigDict, Field

from cpt_core.curate.funnel import LanguageFunnelFilter
from cpt_core.io import iter_text_rows, jsonl_files, read_probe

logger = logging.getLogger(__name__)

EVAL_TEXTS_FILE = "eval_texts.jsonl"
_WORD = re.compile(r"\w+", re.UNICODE)


class DecontaminateConfig(BaseModel):
    """Word n-gram overlap with the evaluation texts: drop or flag the documents that share them."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    ngram: int = Field(13, ge=3, description="n-gram size in words")
    min_overlap: int = Field(1, ge=1, description="distinct shared n-grams that make a document contaminated")
    min_item_chars: int = Field(
        20, ge=1, description="evaluation items shorter than ngram words are matched whole if this long"
    )
    mode: Literal["drop", "flag"] = "drop"
    extra_sources: list[str] = Field(
        default_factory=list, description="more evaluation text: JSONL files (field text) or .txt files"
    )


def words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


# ---------------------------------------------------------------------------------------- evaluation texts


def fact_probe_texts(knowledge_graph: Path) -> list[dict]:
    """Each fact's probe question followed by its answer: the text the fact probe scores."""
    from cpt_core.data.knowledge_graph import load_facts

    return [
        {"source": "fact_probe", "id": f.id, "text": f"{f.probe_question} {f.object}"}
        for f in load_facts(Path(knowledge_graph))
    ]


def probe_file_texts(path: Path, source: str = "auto_probe") -> list[dict]:
    """Rows ``{source, id, text}`` of a probe JSONL: the question followed by its right choice."""
    return [{"source": source, "id": r["id"], "text": f"{r['question']} {r['choices'][r['answer']]}"} for r in read_probe(path)]


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def _task_data_files(task_yaml: Path) -> list[Path]:
    import yaml

    try:
        spec = yaml.safe_load(task_yaml.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"lm-eval task {task_yaml}: not valid YAML ({err})") from None
    kwargs = spec.get("dataset_kwargs") or {}
    names = _strings(kwargs.get("data_files")) if isinstance(kwargs, dict) else []
    if not names and isinstance(spec.get("dataset_path"), str):
        names = [spec["dataset_path"]]
    paths = [p if p.is_absolute() else task_yaml.parent / p for p in map(Path, names)]
    return [p for p in paths if p.exists()]


def lm_eval_texts(tasks: list[str]) -> list[dict]:
    """One text per row of the local data of lm-eval task YAMLs (or folders of them): its string fields.

    Registered task names fetch their data from the hub at evaluation time and cannot be read here; they are
    skipped with a warning.
    """
    rows: list[dict] = []
    for task in tasks:
        path = Path(task).expanduser()
        yamls = sorted([*path.rglob("*.yaml"), *path.rglob("*.yml")]) if path.is_dir() else [path]
        if not path.exists():
            logger.warning("decontaminate: lm-eval task %r is not a local file; its data cannot be checked", task)
            continue
        for task_yaml in yamls:
            for data in _task_data_files(task_yaml):
                files = sorted(p for p in data.rglob("*") if p.suffix in (".json", ".jsonl")) if data.is_dir() else [data]
                for file in files:
                    rows.extend(_data_rows(file, f"lm_eval:{task_yaml.stem}"))
    return rows


def _data_rows(file: Path, source: str) -> list[dict]:
    lines = file.read_text(encoding="utf-8").splitlines()
    records = None
    if file.suffix == ".json":  # a JSON array of rows or one object; else JSON lines, as datasets reads it
        try:
            data = json.loads("\n".join(lines) or "[]")
            records = data if isinstance(data, list) else [data]
        except json.JSONDecodeError:
            records = None
    if records is None:
        records = []
        for lineno, line in enumerate(lines, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{file}:{lineno}: not JSON ({err})") from None
    return [
        {"source": source, "id": f"{file.name}:{i}", "text": " ".join(_strings(r))}
        for i, r in enumerate(records)
        if _strings(r)
    ]


def text_file_texts(path: str, source: str = "extra") -> list[dict]:
    """A JSONL file or folder (field ``text``), or a plain-text file (one item)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"curate.decontaminate.extra_sources: {path} does not exist")
    if p.is_file() and not p.name.endswith((".jsonl", ".jsonl.gz")):
        return [{"source": source, "id": p.name, "text": p.read_text(encoding="utf-8")}]
    return [
        {"source": source, "id": f"{file.name}:{lineno}", "text": row["text"]}
        for file in jsonl_files(p)
        for lineno, row in iter_text_rows(file)
    ]


def gather_eval_texts(
    knowledge_graph: Path | None,
    lm_eval_tasks: list[str],
    general_heldout=None,
    probe_files: list[Path] = (),
) -> list[dict]:
    """Every evaluation text a run uses: fact probe, earlier auto probes, local lm-eval data, general held-out.

    ``general_heldout`` is a ``GeneralTextConfig`` (None: not checked).
    """
    rows = fact_probe_texts(knowledge_graph) if knowledge_graph else []
    for path in probe_files:
        rows.extend(probe_file_texts(path, source="auto_probe"))
    rows.extend(lm_eval_texts(lm_eval_tasks))
    if general_heldout is not None:
        from cpt_core.data.general_text import general_texts

        rows.extend(
            {"source": "general_heldout", "id": str(i), "text": text}
            for i, text in enumerate(general_texts(general_heldout))
            if text
        )
    return rows


def write_eval_texts(rows: list[dict], path: Path) -> Path:
    """Write ``{source, id, text}`` rows, sorted so the same texts give the same file (and stage key)."""
    from cpt_core.io import atomic_file

    rows = sorted(rows, key=lambda r: (r["source"], r["id"], r["text"]))
    with atomic_file(Path(path)) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return Path(path)


def read_eval_texts(path: Path) -> list[dict]:
    rows = []
    for lineno, row in iter_text_rows(Path(path)):
        rows.append({"source": str(row.get("source") or "eval"), "id": str(row.get("id", lineno)), "text": row["text"]})
    return rows


# ------------------------------------------------------------------------------------------------- matching


class OverlapIndex:
    """Word n-grams of the evaluation texts (and whole short items), each pointing at its first item."""

    def __init__(self, items: list[dict], ngram: int, min_item_chars: int):
        self.ngram = ngram
        self.grams: dict[tuple[str, ...], int] = {}
        self.short: dict[str, int] = {}  # " w1 w2 ... " of items shorter than ngram words
        self.items = items
        self.too_short = 0
        for i, item in enumerate(items):
            tokens = words(item["text"])
            if len(tokens) >= ngram:
                for j in range(len(tokens) - ngram + 1):
                    self.grams.setdefault(tuple(tokens[j : j + ngram]), i)
            elif tokens and len(" ".join(tokens)) >= min_item_chars:
                self.short.setdefault(f" {' '.join(tokens)} ", i)
            else:
                self.too_short += 1

    def match(self, text: str, min_overlap: int) -> tuple[dict, int] | None:
        """The evaluation item ``text`` overlaps most and the number of shared n-grams, or None."""
        tokens = words(text)
        hits: Counter[int] = Counter()
        seen: set[tuple[str, ...]] = set()
        if self.grams:
            for j in range(len(tokens) - self.ngram + 1):
                gram = tuple(tokens[j : j + self.ngram])
                if gram in self.grams and gram not in seen:
                    seen.add(gram)
                    hits[self.grams[gram]] += 1
        if len(seen) >= min_overlap:
            item, _ = hits.most_common(1)[0]
            return self.items[item], len(seen)
        if self.short:
            joined = f" {' '.join(tokens)} "
            for key, item in self.short.items():
                if key in joined:
                    return self.items[item], len(key.split())
        return None


class DecontaminateFilter(LanguageFunnelFilter):
    """Drops (or flags) documents that share n-grams with the evaluation texts in ``eval_texts``."""

    name = "🧪 Decontaminate"

    def __init__(
        self,
        config: DecontaminateConfig,
        eval_texts: Path | None,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.config = config
        self.eval_texts = str(eval_texts) if eval_texts else None
        self._index: OverlapIndex | None = None

    @property
    def index(self) -> OverlapIndex:
        # Built in the worker, on first use: the pipeline is deep-copied (and maybe pickled) before it runs.
        if self._index is None:
            items = read_eval_texts(Path(self.eval_texts)) if self.eval_texts else []
            for source in self.config.extra_sources:
                items.extend(text_file_texts(source))
            self._index = OverlapIndex(items, self.config.ngram, self.config.min_item_chars)
            for source, count in Counter(item["source"].split(":")[0] for item in items).items():
                self.stat_update(f"eval_items_{source}", value=count)
            if self._index.too_short:
                self.stat_update("eval_items_too_short", value=self._index.too_short)
        return self._index

    def __getstate__(self):
        return {**self.__dict__, "_index": None}

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        found = self.index.match(doc.text, self.config.min_overlap)
        if found is None:
            return True
        item, overlap = found
        source = item["source"].split(":")[0]
        self.stat_update(f"contamination_{source}")
        doc.metadata["contamination"] = {"source": item["source"], "id": item["id"], "overlap": overlap}
        return (False, f"contaminated_{source}") if self.config.mode == "drop" else True
