"""Data selection: recency (publication date) and domain relevance (a fastText classifier), one step.

The ``select`` curation step runs after quality and before dedup, so documents it drops never enter the
cross-run dedup index (a later run with another selection can still take them).

Recency: a document is kept when its date is on or after ``published_after``. Its date is
``metadata["published_at"]`` (set by extraction from the page, or by the documents reader), else
``metadata["fetched_at"]`` (when it was crawled: an upper bound on its age, the best left); ISO dates or
datetimes, read by their first 10 characters. A document with neither, or with an unreadable date, is kept or
dropped by ``undated`` (reasons ``recency_too_old``, ``recency_undated``).

Domain relevance (``domain``, off by default): a fastText supervised classifier trained for this run, as in
the DoReMi / "data selection for domain adaptation" line of work, but cheap: seed in-domain documents (a
JSONL file, and/or the run's own documents whose URL starts with one of ``seed_url_prefixes`` or whose host
is one of ``seed_hosts``) labelled ``domain`` against general text (``cpt_core.data.general_text``, the same
sources replay uses) labelled ``general``. Words and word bigrams (``char_ngrams`` adds character n-grams, which help Korean eojeol
with changing particles once there are enough seeds; with a few dozen seeds they dilute the signal), one
thread and a fixed seed, so the same inputs give the same model and the same scores. Every scored document gets ``metadata["domain_score"]`` = P(domain). Kept: score >=
``threshold``, or, with ``top_fraction``, the best-scoring fraction of the step's input (its cut-off score is
found by scoring all documents once before the pipeline runs; ties at the cut-off are all kept). Drop reason
``domain_low_score``. The model is saved as ``<step>/domain_model.bin`` for inspection.

Trade-offs: a bag-of-n-grams classifier separates topics well from a few dozen seeds and scores ~100k docs/s
per core; it does not judge quality (the quality step does) and it learns the seeds' style as well as their
topic, so seeds should be typical documents, not a single site's boilerplate.
"""

from __future__ import annotations

import json
import logging
import random
import re
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from datatrove.data import Document
from datatrove.pipeline.writers.disk_base import DiskWriter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cpt_core.curate.funnel import LanguageFunnelFilter
from cpt_core.data.general_text import GeneralTextConfig, general_texts
from cpt_core.io import iter_text_rows, jsonl_files

logger = logging.getLogger(__name__)

MODEL_FILE = "domain_model.bin"
DOMAIN, GENERAL = "__label__domain", "__label__general"
_SPACE = re.compile(r"\s+")


class DomainConfig(BaseModel):
    """A fastText classifier of in-domain (seed) against general text; keep documents that score high."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    seed_documents: str | None = Field(None, description="JSONL file or folder of in-domain documents (text)")
    seed_url_prefixes: list[str] = Field(default_factory=list, description="this run's documents as seeds")
    seed_hosts: list[str] = Field(default_factory=list, description="this run's documents from these hosts")
    general: GeneralTextConfig = Field(
        default_factory=GeneralTextConfig, description="the out-of-domain class (default: replay's source)"
    )
    threshold: float = Field(0.5, ge=0, le=1, description="keep documents with P(domain) >= threshold")
    top_fraction: float | None = Field(None, gt=0, le=1, description="instead: keep this best-scoring share")
    epoch: int = Field(25, ge=1)
    lr: float = Field(0.5, gt=0)
    dim: int = Field(32, ge=2)
    word_ngrams: int = Field(2, ge=1)
    char_ngrams: tuple[int, int] = Field(
        (0, 0), description="(min, max) character n-gram sizes as extra features; (0, 0): words only"
    )
    bucket: int = Field(100_000, ge=1000, description="hashed n-gram buckets (model size: bucket x dim floats)")
    seed: int = 0


class SelectConfig(BaseModel):
    """Recency (publication date) and domain relevance selection."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    published_after: date | None = Field(None, description="keep documents dated on or after this day")
    undated: Literal["keep", "drop"] = Field("keep", description="documents with no readable date")
    domain: DomainConfig = Field(default_factory=DomainConfig)

    @model_validator(mode="after")
    def _seeds(self) -> SelectConfig:
        d = self.domain
        if d.enabled and not (d.seed_documents or d.seed_url_prefixes or d.seed_hosts):
            raise ValueError("domain.enabled needs seed_documents, seed_url_prefixes or seed_hosts")
        return self


def document_date(metadata: dict) -> date | None:
    """``published_at``, else ``fetched_at``, as a date; None when neither is there or readable."""
    for key in ("published_at", "fetched_at"):
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            try:
                return date.fromisoformat(value.strip()[:10])
            except ValueError:
                continue
    return None


# ---------------------------------------------------------------------------------------------- the model


def _line(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


def is_seed(metadata: dict, cfg: DomainConfig) -> bool:
    url = metadata.get("url") or ""
    if not isinstance(url, str) or not url:
        return False
    host = (urlsplit(url).hostname or "").lower()
    return url.startswith(tuple(cfg.seed_url_prefixes)) or host in {h.lower() for h in cfg.seed_hosts}


def seed_texts(cfg: DomainConfig, documents: list[tuple[str, dict]]) -> list[str]:
    """In-domain texts: the seed file's, then those of ``documents`` (text, metadata) that match the seeds."""
    texts: list[str] = []
    if cfg.seed_documents:
        path = Path(cfg.seed_documents).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"curate.select.domain.seed_documents: {path} does not exist")
        texts += [row["text"] for file in jsonl_files(path) for _, row in iter_text_rows(file)]
    texts += [text for text, meta in documents if is_seed(meta, cfg)]
    return [t for t in texts if t.strip()]


def train_domain_model(cfg: DomainConfig, seeds: list[str], model_path: Path):
    """Train, save and return the classifier: one thread, a fixed seed and a fresh process, so the same inputs
    give the same model and the same scores."""
    import fasttext

    if not seeds:
        raise ValueError(
            "curate.select.domain: no seed documents found (seed_documents, seed_url_prefixes, seed_hosts "
            "matched nothing in this run's documents)"
        )
    general = [t for t in general_texts(cfg.general) if t.strip()]
    if not general:
        raise ValueError(f"curate.select.domain.general: source {cfg.general.source!r} yielded no text")
    rows = [f"{DOMAIN} {_line(t)}" for t in seeds] + [f"{GENERAL} {_line(t)}" for t in general]
    random.Random(cfg.seed).shuffle(rows)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    train_file = model_path.with_suffix(".train.txt")
    train_file.write_text("\n".join(rows) + "\n", encoding="utf-8")
    try:
        lr = cfg.lr
        for _ in range(4):
            err = _train_in_fresh_process(cfg, lr, train_file, model_path)
            if err is None:
                break
            if "NaN" not in err:  # fastText diverges on a small seed set at a high LR: halve it; else fail
                raise RuntimeError(f"curate.select.domain: fastText training failed: {err}")
            logger.warning("select: domain classifier diverged at lr %g; retrying at %g", lr, lr / 2)
            lr /= 2
        else:
            raise RuntimeError(f"curate.select.domain: fastText training diverged even at lr {lr * 2:g}")
    finally:
        train_file.unlink(missing_ok=True)
    model = fasttext.load_model(str(model_path))
    logger.info("select: domain classifier trained on %d seed and %d general documents", len(seeds), len(general))
    return model


_TRAIN = """
import json, sys
import fasttext
a = json.loads(sys.argv[1])
model = fasttext.train_supervised(**a["params"])
model.save_model(a["out"])
"""


def _train_in_fresh_process(cfg: DomainConfig, lr: float, train_file: Path, model_path: Path) -> str | None:
    """Train in a fresh interpreter; None on success, else fastText's error text.

    fastText's trainer reads memory it never wrote: in a long-lived process (a worker that has run other
    stages) the same inputs give different models, and sometimes NaN. A fresh process starts from the same
    heap every time, so the model is the same for the same inputs."""
    params = dict(
        input=str(train_file), epoch=cfg.epoch, lr=lr, dim=cfg.dim, wordNgrams=cfg.word_ngrams,
        minn=cfg.char_ngrams[0], maxn=cfg.char_ngrams[1], bucket=cfg.bucket, minCount=1, seed=cfg.seed,
        thread=1, verbose=0,
    )  # fmt: skip
    args = json.dumps({"params": params, "out": str(model_path)})
    done = subprocess.run([sys.executable, "-c", _TRAIN, args], capture_output=True, text=True, check=False)
    if done.returncode == 0:
        return None
    return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]


def domain_score(model, text: str) -> float:
    labels, probs = model.predict(_line(text) or " ", k=2)
    scores = dict(zip(labels, (float(p) for p in probs), strict=True))
    return round(min(scores.get(DOMAIN, 0.0), 1.0), 4)


def cutoff_for_fraction(scores: list[float], fraction: float) -> float:
    """The lowest score among the best ``fraction`` of ``scores`` (at least one kept)."""
    if not scores:
        return 0.0
    ranked = sorted(scores, reverse=True)
    return ranked[max(1, round(len(ranked) * fraction)) - 1]


# ---------------------------------------------------------------------------------------------- the filter


class SelectFilter(LanguageFunnelFilter):
    """Recency by date and (with a trained model) domain relevance by score, see the module docstring."""

    name = "🎯 Select (recency, domain)"

    def __init__(
        self,
        config: SelectConfig,
        model_path: Path | None = None,
        min_score: float | None = None,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.config = config
        self.model_path = str(model_path) if model_path else None
        self.min_score = config.domain.threshold if min_score is None else min_score
        self._model = None

    @property
    def model(self):
        # Loaded in the worker: the pipeline is deep-copied (and maybe pickled) and fastText models are not.
        if self._model is None and self.model_path:
            import fasttext

            self._model = fasttext.load_model(self.model_path)
        return self._model

    def __getstate__(self):
        return {**self.__dict__, "_model": None}

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        cfg = self.config
        if cfg.published_after:
            day = document_date(doc.metadata)
            if day is None:
                self.stat_update("select_undated")
                if cfg.undated == "drop":
                    return False, "recency_undated"
            elif day < cfg.published_after:
                return False, "recency_too_old"
        if self.model is not None:
            score = domain_score(self.model, doc.text)
            doc.metadata["domain_score"] = score
            if score < self.min_score:
                return False, "domain_low_score"
        return True
