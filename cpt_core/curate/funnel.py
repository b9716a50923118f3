"""The per-language funnel of a curation step: documents in, out and dropped by reason, per language.

Every curation filter is a ``LanguageFunnelFilter``: as it decides on each document it also counts, in its own
datatrove stats, the document under its language (``metadata["language"]`` after the filter has run, so
the language step counts documents under the language it has just detected; none is ``unknown``):

    funnel|<language>|in                 documents the filter saw
    funnel|<language>|dropped|<reason>   documents it dropped, by reason (``unspecified`` when it gave none)

No second pass over the corpus: the counts come with the stats datatrove already merges over tasks.
``by_language`` turns them, with the reader's unreadable lines (no language: ``unknown``), into
``{language: {"in": n, "out": n, "dropped": {reason: n}}}`` for the step's summary.
"""

from __future__ import annotations

from collections.abc import Iterable

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result

UNKNOWN = "unknown"
PREFIX = "funnel|"


def language_of(doc: Document) -> str:
    return doc.metadata.get("language") or UNKNOWN


class LanguageFunnelFilter(BaseFilter):
    """A datatrove filter that also counts what it saw and dropped per document language (see the module)."""

    def filter_batch(self, batch: list[Document]) -> list:
        results = list(super().filter_batch(batch))
        for doc, result in zip(batch, results, strict=True):
            language = language_of(doc)
            self.stat_update(f"{PREFIX}{language}|in")
            keep, reason = get_filter_result(result)
            if not keep:
                self.stat_update(f"{PREFIX}{language}|dropped|{reason or 'unspecified'}")
        return results


def _entry(table: dict, language: str) -> dict:
    return table.setdefault(language, {"in": 0, "out": 0, "dropped": {}})


def by_language(filter_stats: Iterable[dict], reader_drops: dict[str, int]) -> dict[str, dict]:
    """``{language: {"in", "out", "dropped": {reason: n}}}`` from the filters' ``funnel|`` stats and the
    reader's drops (unreadable lines have no language: they count under ``unknown``)."""
    table: dict[str, dict] = {}
    for metrics in filter_stats:
        for key, value in metrics.items():
            if not key.startswith(PREFIX):
                continue
            language, kind, *reason = key.removeprefix(PREFIX).split("|", 2)
            entry = _entry(table, language)
            if kind == "in":
                entry["in"] += int(value)
            elif kind == "dropped" and reason:
                entry["dropped"][reason[0]] = entry["dropped"].get(reason[0], 0) + int(value)
    for reason, count in reader_drops.items():
        entry = _entry(table, UNKNOWN)
        entry["in"] += int(count)
        entry["dropped"][reason] = entry["dropped"].get(reason, 0) + int(count)
    for entry in table.values():
        entry["out"] = entry["in"] - sum(entry["dropped"].values())
        entry["dropped"] = dict(sorted(entry["dropped"].items()))
    return dict(sorted(table.items()))


def passed_through(languages: dict[str, int]) -> dict[str, dict]:
    """The funnel of a disabled step: every document in is out."""
    return {lang: {"in": n, "out": n, "dropped": {}} for lang, n in sorted(languages.items())}
