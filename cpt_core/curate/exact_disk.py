"""Exact dedup on disk (``curate.exact_dedup.backend: disk``): earlier runs' hashes are searched where they lie.

Same key and decisions as ``cpt_core.curate.dedup.ExactDedupFilter`` (sha256 of the case- and
whitespace-folded text; the first copy in input order wins), but an earlier run's index is not loaded: each
run commits ``exact/hashes.npy`` (its accepted sha256 digests in hex, sorted) and ``exact/ids.npy`` (the document
ids in the same order), and a document's digest is looked up by binary search in each visible run's
memory-mapped array, O(log n) page reads per run. Memory holds this run's digests only (the shard), never the
history. A memory-backend run's ``exact.txt`` is converted once into that run's ``exact/`` in the state (loaded
and sorted, that run's size only; stat ``earlier_runs_rebuilt``), so switching backends keeps deduplicating
against earlier runs and later steps search it on disk like any other.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from cpt_core.curate.dedup import EXACT_FILE, ExactDedupFilter, exact_hash, read_exact_index

EXACT_DIR = "exact"
HASHES, IDS = "hashes.npy", "ids.npy"


def _digest(text: str) -> bytes:
    """``exact_hash`` as bytes: fixed width, and no NUL bytes, which numpy's ``S`` arrays would strip."""
    return exact_hash(text).encode("ascii")


def _sorted_arrays(digests: list[bytes], ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    hashes = np.array(digests, dtype="S64") if digests else np.zeros(0, dtype="S64")
    order = np.argsort(hashes, kind="stable")
    id_array = np.array(ids, dtype=str) if ids else np.zeros(0, dtype="<U1")
    return hashes[order], id_array[order]


def load_run_index(run_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(sorted digests, ids) of one committed run, memory-mapped from ``exact/``; None when the run has no
    exact index. A memory-backend run's ``exact.txt`` is converted into ``exact/`` in the state first
    (``build_run_index``)."""
    folder = run_dir / EXACT_DIR
    if not (folder / HASHES).is_file() and not build_run_index(run_dir):
        return None
    return np.load(folder / HASHES, mmap_mode="r"), np.load(folder / IDS, mmap_mode="r")


def build_run_index(run_dir: Path) -> bool:
    """Store a memory-backend run's ``exact.txt`` as its ``exact/`` sorted arrays (written aside, then renamed),
    so it is converted once and later steps search it on disk; False when the run has no ``exact.txt``."""
    text = run_dir / EXACT_FILE
    if not text.is_file():
        return False
    accepted: dict[bytes, str] = {}
    for digest, doc_id in read_exact_index(text):
        accepted.setdefault(digest.encode("ascii"), doc_id)
    tmp = run_dir / (EXACT_DIR + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    write_run_index(tmp, accepted)
    os.replace(tmp, run_dir / EXACT_DIR)
    return True


def write_run_index(folder: Path, accepted: dict[bytes, str]) -> None:
    """This run's accepted digests as ``exact/hashes.npy`` + ``ids.npy`` (sorted, deterministic bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    hashes, ids = _sorted_arrays(list(accepted), list(accepted.values()))
    np.save(folder / HASHES, hashes)
    np.save(folder / IDS, ids)


class DiskExactDedupFilter(ExactDedupFilter):
    """Drops documents whose normalised text was already accepted, in this run or a visible earlier one; the
    earlier runs' hashes stay on disk (memory-mapped, searched), only this run's are held."""

    name = "🎯 Exact dedup (on disk)"

    def _load_earlier(self) -> None:
        self.earlier: list[tuple[str, np.ndarray, np.ndarray]] = []
        total = 0
        for run in self.earlier_runs:
            run_dir = Path(self.dedup_state) / run
            if not (run_dir / EXACT_DIR / HASHES).is_file() and (run_dir / EXACT_FILE).is_file():
                self.stat_update("earlier_runs_rebuilt")
            index = load_run_index(run_dir)
            if index is not None:
                self.earlier.append((run, *index))
                total += len(index[0])
        self.stat_update("earlier_runs", value=len(self.earlier))
        self.stat_update("earlier_exact_hashes", value=total)

    def _digest(self, text: str) -> bytes:
        return _digest(text)

    def _find_earlier(self, digest: bytes) -> tuple[str, str] | None:
        for run, hashes, ids in self.earlier:
            pos = int(np.searchsorted(hashes, digest))
            if pos < len(hashes) and hashes[pos] == digest:
                return run, str(ids[pos])
        return None

    def _write_index(self) -> None:
        write_run_index(Path(self.index_dir) / EXACT_DIR, self.accepted)
