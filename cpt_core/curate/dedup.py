"""Exact and MinHash near-duplicate removal, against this run and every earlier accepted document.

Exact: a document's key is the sha256 of its text lower-cased with every whitespace run collapsed to one
space, so copies that differ only in case, indentation or line wrapping collide.

Near: each document's text is normalised (NFKC, case folding, punctuation and symbols to spaces, whitespace
runs to one space) and becomes a set of shingles: word ``ngram``-grams, or character ``char_ngram``-grams
with the spaces removed for Korean and languages written without spaces (chosen by
``metadata["language"]`` or, without it, by how few spaces or how many Hangul syllables the text has).
The set is hashed into a datasketch ``MinHash`` and looked up in a ``MinHashLSH`` index whose bands and rows are chosen so that a
pair exactly at ``threshold`` becomes a candidate with probability ``lsh_recall`` (``lsh_params``), not
datasketch's balanced default, which loses a large share of the pairs just above the threshold. LSH only
proposes candidates: each is verified against ``threshold`` by exact Jaccard on the shingle sets (this run's
documents keep 64-bit digests of their shingles) or, for earlier runs' documents, of which only signatures
are stored, by the MinHash estimate. The most similar (ties: the earliest) becomes
``metadata["duplicate_of"]`` with ``metadata["duplicate_similarity"]`` (exact copies: 1.0).
``benchmarks/dedup_quality.py`` measures this on real English and Korean text against exact Jaccard computed
independently (F1 1.000 at 0.8; datasketch's ``MinHashLSH`` at 128 permutations 0.873).

Korean shingles: ``benchmarks/korean_shingles.py`` judged near-duplicates (truth: word 5-gram Jaccard before
spacing and punctuation noise) with Kiwi morpheme 5-grams, FineWeb-2's choice, and character n-grams, n =
3..24: character 13-grams were best (F1 0.972 at J 0.8, 0.966 at 0.7), Kiwi 5-grams reached 0.813 and 0.853
(five morphemes span about half as much text as five words, so their Jaccard runs high), and Kiwi
tokenises only 40-80 texts per second.

Order: within a run the first document in input order wins, so both steps run as a single datatrove task
(the input files are read in sorted order) and their output is deterministic. Across runs,
``<dedup_state>/<run_id>/`` holds each run's accepted ``exact.txt`` (``hash<TAB>doc id``) and
``minhash.npz`` (doc ids, signatures, MinHash parameters). A step loads the entries of the runs it may see
(``cpt_core.state.visible_runs``: finished runs whose documents were learned) -- never its own, so a step
redone after a crash never finds its own documents "already seen", and never a failed or rejected run's, so
their documents are not lost -- and drops matches as ``duplicate_of_earlier_run`` /
``near_duplicate_of_earlier_run``. The step writes this run's accepted entries to ``<step output>/index/``;
``commit_dedup_index`` copies them into the state once the run's curation has succeeded. The exact index holds documents the
later near step may still drop; they are near copies of something kept, so nothing is lost by remembering them.

Trade-offs: with ``backend: memory`` (this module) everything lives in memory (a 128-permutation signature
is 1 KB per document, the shingle digests of this run's documents more), which is simple and fast up to a
few million documents; ``backend: disk`` runs datatrove's multi-stage on-disk ``MinhashDedup*`` pipeline with
the same shingles, bands and verification (``cpt_core.curate.minhash_disk``) and searches earlier runs'
sorted exact hashes on disk (``cpt_core.curate.exact_disk``), so memory follows this run's input, not history. A step's key holds the list of runs it saw, which is pinned per run: a finished step
is not redone just because another run finished since. Signatures made with other MinHash parameters (num_perm, seed,
shingle sizes, shingling version) cannot be compared: such a run's accepted documents, still under its run
folder, are signed again with the current settings and stored as its index (``earlier_runs_rebuilt``), so an
upgrade keeps deduplicating against history; a run whose documents are gone is skipped with a warning and an
``earlier_runs_incompatible`` stat. The disk backend does the same the other way round (a memory-backend run's
documents are signed into a disk index, ``cpt_core.curate.minhash_disk``), so switching backends loses no history.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.writers.disk_base import DiskWriter
from pydantic import BaseModel, ConfigDict, Field

from cpt_core.curate.funnel import LanguageFunnelFilter
from cpt_core.io import atomic_file, iter_text_rows, jsonl_files
from cpt_core.layout import RunLayout
from cpt_core.stage import read_manifest

logger = logging.getLogger(__name__)

INDEX_DIR = "index"
EXACT_FILE = "exact.txt"
NEAR_FILE = "minhash.npz"
# What a dedup step leaves in its index/ and the commit copies into <dedup_state>/<run>/: the memory backend's
# file, the disk backend's folder (cpt_core.curate.exact_disk, cpt_core.curate.minhash_disk).
INDEX_FILES = {"exact": (EXACT_FILE, "exact"), "near": (NEAR_FILE, "minhash")}
# The default stays memory: on benchmarks/dedup_quality.py both reach F1 1.000, and on 1.4k documents the
# near step costs the same CPU, but disk adds ~0.7 s CPU per step (one datatrove task per band) to small runs;
# disk is the choice once history outgrows memory (its near step's memory grows ~1.5 KB per kept document of
# this run, not ~29 KB per document of history).
Backend = Literal["memory", "disk"]
BACKEND_HELP = (
    "memory: every earlier run's index loaded into memory (fast; memory grows with history); disk: "
    "datatrove's on-disk stages, earlier runs searched on disk (memory follows this run's input)"
)
# 2: NFKC, case folding and punctuation/symbol removal before shingling; Korean and space-less scripts
# shingled without spaces, in ``char_ngram`` characters. Signatures of another version are not comparable.
# 3: unlabelled text that is mostly Hangul is shingled in characters, like text labelled Korean.
SHINGLING_VERSION = 3

# Languages written without spaces between words (or, for Korean, with spaces between long inflected
# units whose particles change under paraphrase): character shingles compare them far better than words.
CHARACTER_SHINGLE_LANGUAGES = frozenset({"ja", "zh", "ko", "th", "lo", "km", "my", "bo", "wuu", "yue"})
MIN_SPACE_RATIO = 0.05  # below this share of spaces an unlabelled text is treated as space-less
MIN_HANGUL_RATIO = 0.3  # above this share of Hangul syllables an unlabelled text is shingled as Korean


class ExactDedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    backend: Backend = Field("memory", description=BACKEND_HELP)


class NearDedupConfig(BaseModel):
    """MinHash LSH over shingles: documents whose Jaccard similarity to a kept one is >= threshold."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    backend: Backend = Field("memory", description=BACKEND_HELP)
    threshold: float = Field(0.7, gt=0, le=1)
    num_perm: int = Field(128, ge=16)
    ngram: int = Field(5, ge=1, description="shingle size in words")
    char_ngram: int = Field(
        13,
        ge=1,
        description="shingle size in characters, for scripts without spaces and for Korean",
    )
    seed: int = 1
    lsh_recall: float = Field(
        0.999,
        gt=0,
        lt=1,
        description="chance that a pair exactly at the threshold becomes an LSH candidate; sets bands x rows",
    )
    exact_verify: bool = Field(
        True,
        description="verify candidates from this run by exact Jaccard on their shingles (memory: the "
        "shingle hashes of every kept document); earlier runs' candidates use the MinHash estimate",
    )


def normalise_text(text: str) -> str:
    """Case and whitespace folding: the key of exact dedup (unchanged, so earlier runs' hashes still match)."""
    return " ".join(text.lower().split())


class _DropTable(dict):
    """``str.translate`` table filled on first sight of each code point: punctuation (P*), symbols (S*)
    and control/format characters (C*) become a space, everything else stays."""

    def __missing__(self, cp: int) -> str:
        ch = chr(cp)
        value = " " if unicodedata.category(ch)[0] in "PSC" and not ch.isspace() else ch
        self[cp] = value
        return value


_DROP_TABLE = _DropTable()


def normalise_for_shingles(text: str) -> str:
    """NFKC, case folding, punctuation and symbols to spaces, whitespace runs to one space.

    NFKC maps full-width and compatibility forms (ｆｕｌｌ, ①, ﬁ) to their plain letters first, so the
    later steps see one spelling; punctuation becomes a space rather than nothing so "end.Start" stays two
    words.
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().translate(_DROP_TABLE).split())


def lsh_params(threshold: float, num_perm: int, recall: float) -> tuple[int, int]:
    """(bands, rows) with bands x rows <= num_perm: the most rows (fewest false candidates) for which a
    pair of Jaccard ``threshold`` still becomes a candidate with probability >= ``recall``.

    datasketch's default choice balances false positives and negatives equally, which puts the S-curve's
    midpoint near the threshold and loses a large share of the pairs just above it; here candidates are
    verified afterwards, so false candidates only cost time and recall is what the bands must buy.
    """
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1 - (1 - threshold**rows) ** bands >= recall:
            best = (bands, rows)
    return best


def exact_hash(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def read_exact_index(path: Path) -> Iterator[tuple[str, str]]:
    """``(hex sha256, doc id)`` of each line of a memory-backend run's ``exact.txt``; a malformed line is an
    error naming the file and line."""
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            digest, sep, doc_id = line.rstrip("\n").partition("\t")
            if not sep or len(digest) != 64:
                raise ValueError(f"{path}:{line_no}: expected '<sha256>\\t<doc id>', got {line[:80]!r}")
            yield digest, doc_id


def uses_character_shingles(text: str, language: str | None) -> bool:
    if language:
        return language in CHARACTER_SHINGLE_LANGUAGES
    size = max(len(text), 1)
    if text.count(" ") < MIN_SPACE_RATIO * size:
        return True
    return sum("\uac00" <= ch <= "\ud7a3" for ch in text) > MIN_HANGUL_RATIO * size


def shingles(text: str, ngram: int, language: str | None = None, char_ngram: int | None = None) -> set[str]:
    """Word ``ngram``-grams of the normalised text, or character ``char_ngram``-grams (default: ``ngram``)
    for space-less scripts and Korean, whose spaces are dropped first (Korean spacing varies between
    writers of the same sentence).

    A text shorter than one shingle is its own single shingle: an empty MinHash would match every other
    empty one.
    """
    norm = normalise_for_shingles(text)
    if uses_character_shingles(norm, language):
        units: list[str] | str = norm.replace(" ", "")
        joiner, size = "", char_ngram or ngram
    else:
        units, joiner, size = norm.split(" "), " ", ngram
    if len(units) <= size:
        return {joiner.join(units)}
    return {joiner.join(units[i : i + size]) for i in range(len(units) - size + 1)}


def shingle_digest(gram: str) -> int:
    return int.from_bytes(hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest(), "little")


def _safe_id(doc_id: str) -> str:
    return str(doc_id).replace("\t", " ").replace("\n", " ")


def _earlier_runs(dedup_state: Path, runs: list[str]) -> list[Path]:
    """The index folders of ``runs`` (the finished runs this one may see) that exist, in their order."""
    return [Path(dedup_state) / r for r in runs if (Path(dedup_state) / r).is_dir()]


def save_npz_deterministic(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed``, but with fixed zip timestamps so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(array), allow_pickle=False)


def _write_index_file(index_dir: str, name: str, write) -> None:
    with atomic_file(Path(index_dir) / name) as tmp:
        write(tmp)


class ExactDedupFilter(LanguageFunnelFilter):
    """Drops documents whose normalised text was already accepted, in this run or an earlier one."""

    name = "🎯 Exact dedup"

    def __init__(
        self,
        dedup_state: str | Path,
        earlier_runs: list[str],
        index_dir: str | Path,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.dedup_state = str(dedup_state)
        self.earlier_runs = list(earlier_runs)
        self.index_dir = str(index_dir)
        self.earlier: dict[str, tuple[str, str]] = {}  # hash -> (run id, doc id)
        self.accepted: dict[str, str] = {}  # hash -> doc id, in input order

    def _load_earlier(self) -> None:
        runs = _earlier_runs(Path(self.dedup_state), self.earlier_runs)
        for run_dir in runs:
            path = run_dir / EXACT_FILE
            if not path.is_file():
                self._load_disk_run(run_dir)
                continue
            for digest, doc_id in read_exact_index(path):
                self.earlier.setdefault(digest, (run_dir.name, doc_id))
        self.stat_update("earlier_runs", value=len(runs))
        self.stat_update("earlier_exact_hashes", value=len(self.earlier))

    def _load_disk_run(self, run_dir: Path) -> None:
        """A disk-backend run's ``exact/hashes.npy`` and ``ids.npy`` (hex digests), if it has them."""
        hashes, ids = run_dir / "exact" / "hashes.npy", run_dir / "exact" / "ids.npy"
        if hashes.is_file():
            for digest, doc_id in zip(np.load(hashes).tolist(), np.load(ids).tolist(), strict=True):
                self.earlier.setdefault(digest.decode("ascii"), (run_dir.name, doc_id))

    def _digest(self, text: str):
        return exact_hash(text)

    def _find_earlier(self, digest) -> tuple[str, str] | None:
        """``(run id, doc id)`` of an earlier run's document with this key, if any."""
        return self.earlier.get(digest)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        digest = self._digest(doc.text)
        if digest in self.accepted:
            doc.metadata["duplicate_of"] = self.accepted[digest]
            doc.metadata["duplicate_similarity"] = 1.0
            return False, "exact_duplicate"
        found = self._find_earlier(digest)
        if found is not None:
            run, doc_id = found
            doc.metadata["duplicate_of"] = doc_id
            doc.metadata["duplicate_similarity"] = 1.0
            doc.metadata["duplicate_of_run"] = run
            return False, "duplicate_of_earlier_run"
        self.accepted[digest] = str(doc.id)
        return True

    def _write_index(self) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                for digest, doc_id in self.accepted.items():
                    fh.write(f"{digest}\t{_safe_id(doc_id)}\n")

        _write_index_file(self.index_dir, EXACT_FILE, write)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError("exact dedup must run as a single task: input order decides which copy is kept")
        self._load_earlier()
        yield from super().run(data, rank, world_size)
        self._write_index()


@dataclass
class _Entry:
    run: str | None  # None: this run
    doc_id: str
    minhash: object  # datasketch LeanMinHash
    shingle_hashes: frozenset[int] | None = None  # this run's documents, for exact verification


def jaccard(a: frozenset | set, b: frozenset | set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


class NearDedupFilter(LanguageFunnelFilter):
    """MinHash-LSH near-duplicate filter over this run's earlier documents and every other run's."""

    name = "🧬 Near dedup (MinHash)"
    _requires_dependencies = ["datasketch"]

    def __init__(
        self,
        config: NearDedupConfig,
        dedup_state: str | Path,
        earlier_runs: list[str],
        index_dir: str | Path,
        exclusion_writer: DiskWriter | None = None,
    ):
        super().__init__(exclusion_writer)
        self.config = config
        self.dedup_state = str(dedup_state)
        self.earlier_runs = list(earlier_runs)
        self.index_dir = str(index_dir)
        self._entries: list[_Entry] = []
        self._lsh = None
        self._template = None

    def _params(self) -> dict:
        cfg = self.config
        return {
            "num_perm": cfg.num_perm,
            "seed": cfg.seed,
            "ngram": cfg.ngram,
            "char_ngram": cfg.char_ngram,
            "shingling": SHINGLING_VERSION,
        }

    @staticmethod
    def _stored_params(data) -> dict:
        """The parameters an index was made with; indexes from before ``char_ngram`` and the shingle
        normalisation existed read as shingling version 1 (character shingles of ``ngram`` characters)."""
        params = {k: int(data[k]) for k in ("num_perm", "seed", "ngram")}
        params["char_ngram"] = int(data["char_ngram"]) if "char_ngram" in data else params["ngram"]
        params["shingling"] = int(data["shingling"]) if "shingling" in data else 1
        return params

    def _setup(self) -> None:
        from datasketch import MinHash, MinHashLSH

        cfg = self.config
        bands, rows = lsh_params(cfg.threshold, cfg.num_perm, cfg.lsh_recall)
        self._lsh = MinHashLSH(num_perm=cfg.num_perm, params=(bands, rows))
        self.stat_update("lsh_bands", value=bands)
        self.stat_update("lsh_rows", value=rows)
        # One template: computing the permutations once instead of per document.
        self._template = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        runs = _earlier_runs(Path(self.dedup_state), self.earlier_runs)
        incompatible = 0
        for run_dir in runs:
            path = run_dir / NEAR_FILE
            if not path.is_file():
                # a disk-backend run (its own signature scheme): re-signed from its documents, like a stale index
                rebuilt = self._rebuild(run_dir, {"backend": "disk"}) if (run_dir / "minhash").is_dir() else None
                if rebuilt is None:
                    incompatible += (run_dir / "minhash").is_dir()
                    continue
                self._insert_run(run_dir.name, *rebuilt, self._template.scheme)
                continue
            with np.load(path, allow_pickle=False) as data:
                params = self._stored_params(data)
                scheme = str(data["scheme"])
                stale = params != self._params() or scheme != self._template.scheme
                ids, signatures = (None, None) if stale else (data["ids"], data["signatures"])
            if stale:
                rebuilt = self._rebuild(run_dir, params)
                if rebuilt is None:
                    incompatible += 1
                    continue
                ids, signatures = rebuilt
            self._insert_run(run_dir.name, ids, signatures, scheme)
        self.stat_update("earlier_runs", value=len(runs))
        self.stat_update("earlier_signatures", value=len(self._entries))
        if incompatible:
            self.stat_update("earlier_runs_incompatible", value=incompatible)

    def _insert_run(self, run: str, ids: np.ndarray, signatures: np.ndarray, scheme) -> None:
        from datasketch import LeanMinHash

        for doc_id, hashvalues in zip(ids.tolist(), signatures, strict=True):
            self._insert(_Entry(run, doc_id, LeanMinHash(seed=self.config.seed, hashvalues=hashvalues, scheme=scheme)))

    def _rebuild(self, run_dir: Path, params: dict) -> tuple[np.ndarray, np.ndarray] | None:
        """Re-sign an earlier run's accepted documents with this run's MinHash settings, and store the result
        as that run's index (so it happens once), when its documents are still under its run folder.

        An index made with other settings (a changed shingle size or normalisation after an upgrade) cannot be
        compared; without its documents, that run is skipped with a warning."""
        root = Path(self.dedup_state).parents[1]
        docs = RunLayout(root, run_dir.name).curate_step("near_dedup") / "documents"
        files = jsonl_files(docs) if docs.is_dir() else []
        if not files:
            logger.warning(
                "%s was made with MinHash %s, this run uses %s, and %s is gone: not deduplicating against it",
                run_dir / NEAR_FILE, params, self._params(), docs,
            )  # fmt: skip
            return None
        ids, signatures = [], []
        for path in files:
            for _, row in iter_text_rows(path):
                doc = Document(text=row["text"], id=str(row.get("id")), metadata=row.get("metadata") or {})
                ids.append(doc.id)
                signatures.append(self.minhash(doc).hashvalues)
        arrays = {
            "ids": np.array(ids, dtype=str),
            "signatures": np.stack(signatures).astype(np.uint64) if signatures else np.zeros((0, self.config.num_perm), np.uint64),
            "scheme": np.array(self._template.scheme),
            **{k: np.array(v) for k, v in self._params().items()},
        }  # fmt: skip
        _write_index_file(str(run_dir), NEAR_FILE, lambda tmp: save_npz_deterministic(tmp, **arrays))
        logger.info("re-signed %d documents of %s with this run's MinHash settings", len(ids), run_dir.name)
        self.stat_update("earlier_runs_rebuilt")
        return arrays["ids"], arrays["signatures"]

    def _insert(self, entry: _Entry) -> None:
        self._lsh.insert(len(self._entries), entry.minhash, check_duplication=False)
        self._entries.append(entry)

    def shingles(self, doc: Document) -> set[str]:
        cfg = self.config
        return shingles(doc.text, cfg.ngram, doc.metadata.get("language"), cfg.char_ngram)

    def minhash(self, doc: Document, grams: set[str] | None = None):
        from datasketch import LeanMinHash, MinHash

        mh = MinHash(
            num_perm=self.config.num_perm,
            seed=self.config.seed,
            permutations=self._template.permutations,
            scheme=self._template.scheme,
        )
        mh.update_batch([s.encode("utf-8") for s in (self.shingles(doc) if grams is None else grams)])
        return LeanMinHash(mh)

    def _similarity(self, mh, hashes: frozenset[int] | None, entry: _Entry) -> float:
        """Exact Jaccard when both shingle sets are at hand (this run), else the MinHash estimate."""
        if hashes is not None and entry.shingle_hashes is not None:
            return jaccard(hashes, entry.shingle_hashes)
        return mh.jaccard(entry.minhash)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        grams = self.shingles(doc)
        mh = self.minhash(doc, grams)
        # 64-bit digests of the shingles: exact set comparison at a fraction of the strings' memory.
        hashes = frozenset(shingle_digest(g) for g in grams) if self.config.exact_verify else None
        best, best_sim = None, -1.0
        candidates = sorted(self._lsh.query(mh))  # sorted: ties go to the earliest document
        for key in candidates:
            sim = self._similarity(mh, hashes, self._entries[key])
            if sim > best_sim:
                best, best_sim = self._entries[key], sim
        if candidates:
            self.stat_update("lsh_candidates", value=len(candidates))
        if best is not None and best_sim >= self.config.threshold:
            doc.metadata["duplicate_of"] = best.doc_id
            doc.metadata["duplicate_similarity"] = round(best_sim, 4)
            if best.run is not None:
                doc.metadata["duplicate_of_run"] = best.run
                return False, "near_duplicate_of_earlier_run"
            return False, "near_duplicate"
        self._insert(_Entry(None, doc.id, mh, hashes))
        return True

    def _write_index(self) -> None:
        mine = [e for e in self._entries if e.run is None]
        signatures = (
            np.stack([e.minhash.hashvalues for e in mine]).astype(np.uint64)
            if mine
            else np.zeros((0, self.config.num_perm), dtype=np.uint64)
        )
        arrays = {
            "ids": np.array([str(e.doc_id) for e in mine], dtype=str),
            "signatures": signatures,
            "scheme": np.array(self._template.scheme),
            **{k: np.array(v) for k, v in self._params().items()},
        }
        _write_index_file(self.index_dir, NEAR_FILE, lambda tmp: save_npz_deterministic(tmp, **arrays))

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError("near dedup must run as a single task: input order decides which copy is kept")
        self._setup()
        yield from super().run(data, rank, world_size)
        self._write_index()


def commit_dedup_index(
    dedup_state: Path, run_id: str, step_output: Path, kind: Literal["exact", "near"]
) -> Path | None:
    """Copy a finished dedup step's index (the memory backend's file or the disk backend's folder) into
    ``<dedup_state>/<run_id>/``, atomically (copy, then rename).

    Returns the committed file or folder, or None when the step was disabled (it wrote no index).
    Recommitting the same run replaces its entry, which is what a redone run needs, and removes the index the
    other backend derived from the previous entry (re-signed or converted), which would no longer match it.
    """
    if kind not in INDEX_FILES:
        raise ValueError(f"kind must be one of {sorted(INDEX_FILES)}, got {kind!r}")
    sources = [Path(step_output) / INDEX_DIR / name for name in INDEX_FILES[kind]]
    source = next((p for p in sources if p.exists()), None)
    if source is None:
        manifest = read_manifest(Path(step_output)) or {}
        if manifest.get("summary", {}).get("enabled") is False:
            return None
        raise FileNotFoundError(f"{sources[0]}: no {kind} dedup index; has the {kind} dedup step finished?")
    target = Path(dedup_state) / run_id / source.name
    for derived in (Path(dedup_state) / run_id / name for name in INDEX_FILES[kind] if name != source.name):
        shutil.rmtree(derived) if derived.is_dir() else derived.unlink(missing_ok=True)
    if source.is_file():
        with atomic_file(target) as tmp:
            shutil.copyfile(source, tmp)
        return target
    tmp = target.with_name(target.name + ".committing")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target
