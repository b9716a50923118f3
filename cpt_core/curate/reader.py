"""datatrove's ``JsonlReader``, with every line it cannot read counted and named instead of skipped.

datatrove skips a line that is not JSON, or has no text, with only a log warning, and stops at a corrupt
gzip file with another. Here each such line becomes a stat (``dropped_malformed_json``, ``dropped_no_text``,
``dropped_corrupt_file``) that the stage summary turns into drop reasons, and an ``Unreadable`` entry noted
under ``unreadable_dir`` with the file and line. The lines before a corrupt part of a file are kept.
"""

from __future__ import annotations

from pathlib import Path

from datatrove.pipeline.readers import JsonlReader

from cpt_core.io import CORRUPT_FILE_ERRORS, Unreadable, note_unreadable, parse_text_row


class CountingJsonlReader(JsonlReader):
    """A ``JsonlReader`` that counts and notes bad lines and corrupt files (see the module docstring)."""

    name = "🐿 Jsonl (counting bad lines)"

    def __init__(self, data_folder: str, unreadable_dir: Path, **kwargs) -> None:
        super().__init__(data_folder, **kwargs)
        self.unreadable_dir = str(unreadable_dir)
        self._task = 0

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        self._task = rank
        yield from super().run(data, rank, world_size)

    def read_file(self, filepath: str):
        lineno = 0
        try:
            with self.data_folder.open(filepath, "r", compression=self.compression) as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    with self.track_time():
                        row, problem = parse_text_row(line)
                        if problem is None and not row["text"]:
                            problem = ("no_text", "field 'text' is empty")
                        if problem is not None:
                            self._unreadable(filepath, lineno, *problem)
                            continue
                        document = self.get_document_from_dict(row, filepath, lineno - 1)
                    yield document
        except CORRUPT_FILE_ERRORS as err:
            error = f"file is corrupt or cut short after line {lineno}: {type(err).__name__}: {err}"
            self._unreadable(filepath, lineno + 1, "corrupt_file", error)

    def _unreadable(self, filepath: str, line: int, reason: str, error: str) -> None:
        self.stat_update(f"dropped_{reason}")
        place = self.data_folder.resolve_paths(filepath)
        note_unreadable(Path(self.unreadable_dir), self._task, Unreadable(place, line, reason, error))
