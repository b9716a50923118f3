"""Reading a stage's datatrove JSONL output in tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def read_docs(folder: Path) -> list[dict]:
    docs = []
    for path in sorted(Path(folder).glob("*.jsonl*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            docs.extend(json.loads(line) for line in fh if line.strip())
    return docs


def urls(docs: list[dict]) -> set[str]:
    return {d["metadata"].get("url", "") for d in docs}


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3] if url.count("/") >= 3 else url
