"""URLs of documents in flow tests."""

from __future__ import annotations


def urls(docs: list[dict]) -> set[str]:
    return {d["metadata"].get("url", "") for d in docs}


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3] if url.count("/") >= 3 else url
