"""Writing and reading datatrove-style JSONL document folders in tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def write_docs(folder: Path, docs: list[dict], metadata: dict | None = None, name: str = "00000.jsonl.gz") -> Path:
    """``folder/documents/<name>`` with one JSON line per doc; ``metadata`` is the default for docs lacking one."""
    (folder / "documents").mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "documents" / name, "wt", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps({"metadata": dict(metadata or {}), **doc}, ensure_ascii=False) + "\n")
    return folder


def read_docs(folder: Path) -> list[dict]:
    """Every document in ``folder/*.jsonl[.gz]``, in file order."""
    docs = []
    for path in sorted(Path(folder).glob("*.jsonl*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            docs.extend(json.loads(line) for line in fh if line.strip())
    return docs
