"""A profile of the accepted corpus: documents and characters by host, language, domain score, length and month.

Computed in the same streaming pass that writes the last curation step's documents (``CorpusProfileStep``, a
datatrove stats step before the writer), so a report never re-reads the corpus: each executor task counts
its documents and writes ``<folder>/<rank>.json``; ``merge_profile`` adds the tasks' counts into the summary
the stage's manifest keeps.

Dimensions, each ``{bucket: {"docs": n, "chars": n}}``:

* ``host``: the URL's host name (``(no url)`` without one); the report keeps the top hosts and sums the
  rest as ``other`` (the per-task files hold every host, so the top is exact).
* ``language``: ``metadata["language"]`` (``unknown`` without one).
* ``domain_score``: ``metadata["domain_score"]`` in tenths (``0.7-0.8``); empty when the select step's
  classifier is off.
* ``length``: characters, in ``LENGTH_BUCKETS``.
* ``month``: ``YYYY-MM`` of ``published_at``, else ``fetched_at`` (as the select step reads dates), else
  ``undated``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from urllib.parse import urlsplit

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from cpt_core.curate.funnel import UNKNOWN
from cpt_core.curate.select import document_date
from cpt_core.io import atomic_write_json

DIMENSIONS = ("host", "language", "domain_score", "length", "month")
# Lower bounds in characters and their labels: a short page, an article, a long report, a book chapter.
LENGTH_BUCKETS = ((0, "<500"), (500, "500-2k"), (2_000, "2k-10k"), (10_000, "10k-50k"), (50_000, ">=50k"))
UNDATED = "undated"
NO_URL = "(no url)"
OTHER = "other"
TOP_HOSTS = 20


def host_of(url) -> str:
    if not isinstance(url, str) or not url:
        return NO_URL
    try:
        return (urlsplit(url).hostname or NO_URL).lower()
    except ValueError:  # a malformed URL (an unclosed IPv6 bracket) still counts, under no host
        return NO_URL


def length_bucket(chars: int) -> str:
    label = LENGTH_BUCKETS[0][1]
    for lower, name in LENGTH_BUCKETS:
        if chars >= lower:
            label = name
    return label


def score_bucket(score) -> str | None:
    if not isinstance(score, (int, float)) or isinstance(score, bool) or math.isnan(score):
        return None
    tenth = min(max(math.floor(float(score) * 10), 0), 9)
    return f"{tenth / 10:.1f}-{(tenth + 1) / 10:.1f}"


def month_of(metadata: dict) -> str:
    day = document_date(metadata)
    return f"{day:%Y-%m}" if day else UNDATED


class Profile:
    """Counts of documents and characters per bucket of each dimension (see the module docstring)."""

    def __init__(self, counts: dict | None = None):
        self.counts: dict[str, dict[str, list[int]]] = {dim: {} for dim in DIMENSIONS}
        for dim, buckets in (counts or {}).items():
            for bucket, row in buckets.items():
                self._add(dim, bucket, row["docs"], row["chars"])

    def _add(self, dim: str, bucket: str, docs: int, chars: int) -> None:
        row = self.counts[dim].setdefault(bucket, [0, 0])
        row[0] += docs
        row[1] += chars

    def add(self, text: str, metadata: dict) -> None:
        chars = len(text)
        self._add("host", host_of(metadata.get("url")), 1, chars)
        self._add("language", metadata.get("language") or UNKNOWN, 1, chars)
        self._add("length", length_bucket(chars), 1, chars)
        self._add("month", month_of(metadata), 1, chars)
        score = score_bucket(metadata.get("domain_score"))
        if score is not None:
            self._add("domain_score", score, 1, chars)

    def merge(self, other: Profile) -> None:
        for dim, buckets in other.counts.items():
            for bucket, (docs, chars) in buckets.items():
                self._add(dim, bucket, docs, chars)

    def raw(self) -> dict:
        """Every bucket, for a task's file."""
        return {
            dim: {b: {"docs": d, "chars": c} for b, (d, c) in rows.items()}
            for dim, rows in self.counts.items()
        }

    def _rows(self, dim: str, top_hosts: int) -> list[tuple[str, list[int]]]:
        rows = self.counts[dim]
        if dim == "length":
            return [(name, rows[name]) for _, name in LENGTH_BUCKETS if name in rows]
        if dim in ("month", "domain_score"):  # in order, undated last ("u" sorts after digits)
            return sorted(rows.items())
        ranked = sorted(rows.items(), key=lambda kv: (-kv[1][0], kv[0]))
        if dim == "host" and len(ranked) > top_hosts:
            rest = ranked[top_hosts:]
            ranked = ranked[:top_hosts] + [(OTHER, [sum(r[0] for _, r in rest), sum(r[1] for _, r in rest)])]
        return ranked

    def summary(self, top_hosts: int = TOP_HOSTS) -> dict:
        """The profile a manifest keeps: totals, and per dimension its buckets in reading order as
        ``[{"bucket", "docs", "chars"}]`` (a list: manifests sort their keys); hosts are the top ``top_hosts``
        by documents, the rest summed as ``other``."""
        by_lang = self.counts["language"].values()
        out: dict = {
            "documents": sum(d for d, _ in by_lang),
            "characters": sum(c for _, c in by_lang),
            "hosts": len(self.counts["host"]),
            "top_hosts": top_hosts,
        }
        for dim in DIMENSIONS:
            out[f"by_{dim}"] = [
                {"bucket": bucket, "docs": docs, "chars": chars}
                for bucket, (docs, chars) in self._rows(dim, top_hosts)
            ]
        return out


class CorpusProfileStep(PipelineStep):
    """Counts the documents passing through into a ``Profile``; writes ``<folder>/<rank>.json`` at the end."""

    name = "📐 Corpus profile"
    type = "📊 - STATS"

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = str(folder)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        profile = Profile()
        for doc in data:
            profile.add(doc.text, doc.metadata)
            yield doc
        atomic_write_json(Path(self.folder) / f"{rank:05d}.json", profile.raw())


def merge_profile(folder: Path, top_hosts: int = TOP_HOSTS) -> dict:
    """The tasks' profile files in ``folder`` added up, as ``Profile.summary``."""
    total = Profile()
    for path in sorted(Path(folder).glob("*.json")):
        total.merge(Profile(json.loads(path.read_text(encoding="utf-8"))))
    return total.summary(top_hosts)
