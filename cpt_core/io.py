"""Shared I/O: JSON-lines documents (plain or gzip, errors name the file and line) and atomic writes.

Bad input is never skipped silently. Readers of configs and manifests raise, naming the file and line.
Readers of documents count instead: each malformed line, and each corrupt or truncated file (the lines
before the damage are kept), becomes an ``Unreadable`` entry with a named reason (``malformed_json``,
``no_text``, ``corrupt_file``, ``truncated_warc``), which the stage reports in its manifest: as drop counts
and as a list of ``file:line`` places. Pipelines running in other processes note them in
``<stage output>/unreadable/`` (``note_unreadable``) and the stage reads them back (``read_unreadable``).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# The content types the crawler keeps and the extractor reads as HTML.
HTML_TYPES = ("text/html", "application/xhtml+xml")


def jsonl_files(path: Path) -> list[Path]:
    """``path`` itself, or the ``*.jsonl`` / ``*.jsonl.gz`` files under it in sorted order."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))
    return [path]


def open_text(path: Path):
    path = Path(path)
    return (
        gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")
    )


UNREADABLE_DIR = "unreadable"
UNREADABLE_SHOWN = 20  # places listed in a manifest; the counts cover all
# what a truncated or non-gzip ``.gz`` file raises part-way through
CORRUPT_FILE_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError)


@dataclass
class Unreadable:
    """Input that could not be read as a document: where it is and why."""

    file: str
    line: int | None
    reason: str
    error: str

    @property
    def place(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


def iter_text_rows(path: Path, unreadable: list[Unreadable] | None = None) -> Iterator[tuple[int, dict]]:
    """``(line number, row)`` for each non-blank line; every row must be an object with a string ``text``.

    Without ``unreadable`` the first bad line or a corrupt file raises ``ValueError`` naming the file and
    line. With it (readers of documents), bad lines and a corrupt file's remainder are appended to it instead
    and reading goes on; the rows before the damage are still given.
    """
    lineno = 0
    try:
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                row, problem = parse_text_row(line)
                if problem is None:
                    yield lineno, row
                elif unreadable is None:
                    raise ValueError(f"{path}:{lineno}: {problem[1]}")
                else:
                    unreadable.append(Unreadable(str(path), lineno, *problem))
    except CORRUPT_FILE_ERRORS as err:
        error = f"file is corrupt or cut short after line {lineno}: {type(err).__name__}: {err}"
        if unreadable is None:
            raise ValueError(f"{path}: {error}") from None
        unreadable.append(Unreadable(str(path), lineno + 1, "corrupt_file", error))


def parse_text_row(line: str) -> tuple[dict | None, tuple[str, str] | None]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        return None, ("malformed_json", f"not valid JSON: {err}")
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        return None, ("no_text", "row has no string field 'text'")
    return row, None


def note_unreadable(folder: Path, task: int, item: Unreadable) -> None:
    """Append ``item`` to ``folder/<task>.jsonl`` (one file per pipeline task: no two writers share one)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{task:05d}.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(item), ensure_ascii=False) + "\n")


def read_unreadable(folder: Path) -> list[Unreadable]:
    """Everything noted under ``folder`` (none if it does not exist), ordered by file and line."""
    items = []
    for path in sorted(Path(folder).glob("*.jsonl")) if Path(folder).is_dir() else []:
        items += [Unreadable(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]
    return sorted(items, key=lambda u: (u.file, u.line or 0))


def unreadable_report(items: list[Unreadable]) -> tuple[dict[str, int], list[str]]:
    """``(count per reason, the first places as "file:line reason: error")`` for a stage summary."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.reason] = counts.get(item.reason, 0) + 1
    shown = [f"{u.place} {u.reason}: {u.error}" for u in items[:UNREADABLE_SHOWN]]
    if len(items) > UNREADABLE_SHOWN:
        shown.append(f"... and {len(items) - UNREADABLE_SHOWN} more")
    return dict(sorted(counts.items())), shown


def read_probe(path: Path) -> list[dict]:
    """Probe rows ``{id, question, choices, answer}`` from a JSONL file (``id`` defaults to ``<stem>:<line>``);
    a row without a question, choices or an answer that indexes them is an error naming the file and line."""
    rows = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            choices, answer = list(row["choices"]), int(row["answer"])
            if not 0 <= answer < len(choices):
                raise IndexError(f"answer {answer} is not one of the {len(choices)} choices")
            rows.append({"id": str(row.get("id", f"{Path(path).stem}:{lineno}")), "question": row["question"],
                         "choices": choices, "answer": answer})  # fmt: skip
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError) as err:
            raise ValueError(f"{path}:{lineno}: not a probe row with question, choices, answer ({err})") from None
    return rows


def write_jsonl(rows: list[dict], path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def stable_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
