"""Near dedup on disk (``curate.near_dedup.backend: disk``): datatrove's four MinHash stages, with our
shingles, bands chosen for recall, verified candidates and "first copy in input order wins".

    reader -> NearSignature        one ordered task: bucket signature files (datatrove's), plus per document
                                   its full signature, its 64-bit shingle digests and its id, all on disk
    MinhashDedupBuckets            one task per band (datatrove's, unchanged): equal band values -> candidate
                                   pairs; ``index_folder`` holds the visible earlier runs' indexes, so a band
                                   seen before is an index match; ``create_index_name`` writes this run's
    NearVerifyCluster              one task (replaces datatrove's union-find): per band, the candidate groups;
                                   then, in input order, a document is dropped when a kept earlier document of
                                   this run (exact Jaccard of the shingle digests) or an earlier run's kept
                                   document (MinHash estimate; found by binary search in that run's sorted
                                   band tables) reaches ``threshold``; writes the decisions and this run's index
    reader -> DiskNearDedupFilter  drops by the decisions, with ``duplicate_of`` / ``duplicate_similarity``

Shingles are ``cpt_core.curate.dedup.shingles`` (NFKC, case, punctuation, per-language units) hashed to the
same 64-bit digests the memory backend verifies with; bands x rows come from ``lsh_params``. So both backends
propose the same kind of candidates and verify them the same way: they differ only in the MinHash permutations
(datatrove's, not datasketch's), hence in rare borderline candidates, and in the number of hashes behind an
earlier run's estimate: datatrove signs with bands x rows hashes, which ``lsh_params`` keeps within
``rows - 1`` of ``num_perm`` (128 at the default 0.7, and at 0.5 and 0.9; 125 at 0.8, 126 at 0.6). The
estimate's standard error, sqrt(J(1-J)/hashes), is then at most 1.2 % wider than with ``num_perm`` hashes
(0.8: sqrt(128/125)), far below the noise of a 128-hash estimate itself (0.036 at J = 0.8), so precision is not
measurably lower; this run's candidates are verified by exact Jaccard and do not depend on it.

Memory: the signature files are sorted one band at a time (datatrove), the bands merged as sorted streams, and
the verification holds only documents that have candidates, plus this run's ids; earlier runs are read by
``np.memmap`` (index matches only). Nothing holds every earlier document: peak memory follows this run's
input, not the history. Disk: per kept document about (bands x rows x 8) bytes three times (datatrove index,
full signature, band table) in the state.

An earlier run's committed index (``<dedup_state>/<run>/minhash/``) is used when its ``params.json`` matches this
step's. A visible run with only the memory backend's ``minhash.npz``, or a disk index of other settings, is
rebuilt from its accepted documents (``<run>/curate/near_dedup/documents``, where the memory backend re-signs
from too): stages 1-3 over them, every document kept, stored as that run's ``minhash/`` in the state, so it
happens once and switching a recipe to ``backend: disk`` keeps deduplicating against history (stat
``earlier_runs_rebuilt``). A run whose documents are gone is skipped with a warning and counted in
``earlier_runs_incompatible``.

Scratch: stages 1-3 work in ``minhash_work/`` of the step's partial output; only the verification's
decisions stay there until the filter has read them, then the step removes the folder. Nothing later reads
them: the drops, with their kept copy and similarity, are in ``dropped/``. A crash leaves them in the partial
folder, which the rerun wipes and rebuilds (the decisions are deterministic).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from collections import defaultdict
from pathlib import Path

import numpy as np
from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.dedup.minhash import (
    SENTINEL,
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupSignature,
)
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.binaryio import read_tuples_from_file

from cpt_core.curate.dedup import (
    INDEX_DIR,
    NEAR_FILE,
    SHINGLING_VERSION,
    NearDedupConfig,
    lsh_params,
    shingle_digest,
    shingles,
)
from cpt_core.curate.funnel import LanguageFunnelFilter
from cpt_core.curate.reader import CountingJsonlReader
from cpt_core.executor import run_pipeline
from cpt_core.io import UNREADABLE_DIR, jsonl_files
from cpt_core.layout import RunLayout

logger = logging.getLogger(__name__)

DISK_INDEX = "minhash"  # the index folder, in the step's index/ and in <dedup_state>/<run>/
PARAMS_FILE = "params.json"
KEPT_SIGNATURES = "kept.sig"  # kept documents' full signatures, uint64 rows, in input order
KEPT_IDS = "kept_ids.npy"  # their ids (fixed width, memory-mapped)
BAND_TABLE = "bucket_{:03d}.bands"  # per band: (band values..., row) of kept documents, sorted
INDEX_NAME = "index"  # datatrove index file stem of a committed run
SIG, BUCKETS, DOCS, INDEX_VIEW, DECISIONS = "signatures", "buckets", "docs", "index_view", "decisions"
NEAR_WORK = "minhash_work"  # the step's scratch folder (in its partial output), removed when the step ends
DOCUMENTS = "documents"  # an earlier run's accepted documents: <run>/curate/near_dedup/documents
DIGESTS_VERSION = 1  # how shingles become 64-bit digests (``_shingle_digest`` of cpt_core.curate.dedup)


def minhash_config(cfg: NearDedupConfig) -> MinhashConfig:
    """datatrove's config with our bands (``num_buckets``) and rows (``hashes_per_bucket``)."""
    bands, rows = lsh_params(cfg.threshold, cfg.num_perm, cfg.lsh_recall)
    return MinhashConfig(n_grams=cfg.ngram, num_buckets=bands, hashes_per_bucket=rows, seed=cfg.seed)


def index_params(cfg: NearDedupConfig) -> dict:
    """What must match for an earlier run's index to be comparable with this step's signatures."""
    mh = minhash_config(cfg)
    return {
        "backend": "disk",
        "num_buckets": mh.num_buckets,
        "hashes_per_bucket": mh.hashes_per_bucket,
        "seed": cfg.seed,
        "ngram": cfg.ngram,
        "char_ngram": cfg.char_ngram,
        "shingling": SHINGLING_VERSION,
        "digests": DIGESTS_VERSION,
    }


def _band_dtype(rows: int) -> np.dtype:
    """datatrove's signature record: ``rows`` uint64 band values, then a uint32 document index."""
    return np.dtype([(f"h{i}", "<u8") for i in range(rows)] + [("doc", "<u4")])


class NearSignature(MinhashDedupSignature):
    """datatrove's signature stage over our shingles; also keeps, per document and in input order, its full
    signature, its shingle digests (for exact verification) and its id, under ``docs_folder``."""

    name = "🧬 Near dedup signatures"

    def __init__(self, output_folder: str, docs_folder: str, cfg: NearDedupConfig):
        super().__init__(output_folder, config=minhash_config(cfg))
        self.near = cfg
        self.docs_folder = docs_folder
        self._language: str | None = None
        self._files: dict | None = None

    def get_shingles(self, text: str) -> np.ndarray:
        grams = shingles(text, self.near.ngram, self._language, self.near.char_ngram)
        digests = np.unique(np.fromiter((shingle_digest(g) for g in grams), dtype=np.uint64, count=len(grams)))
        self._files["digests"].write(digests.tobytes())
        self._offset += len(digests)
        self._files["offsets"].write(struct.pack("<Q", self._offset))
        return digests.reshape((-1, 1))

    def get_signature(self, shingle_hashes: np.ndarray) -> list[list[int]]:
        bands = super().get_signature(shingle_hashes)
        self._files["full"].write(np.asarray(bands, dtype=np.uint64).tobytes())
        return bands

    def _tracked(self, data: DocumentsPipeline) -> DocumentsPipeline:
        for doc in data:
            self._language = doc.metadata.get("language")
            self._files["ids"].write(json.dumps(str(doc.id), ensure_ascii=False) + "\n")
            yield doc

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        if world_size != 1:
            raise ValueError("near dedup signatures must run as a single task: input order decides the winner")
        folder = Path(self.docs_folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._offset = 0
        names = {"digests": "digests.bin", "offsets": "offsets.bin", "full": "full.sig", "ids": "ids.jsonl"}
        self._files = {k: open(folder / v, "w" if k == "ids" else "wb") for k, v in names.items()}  # noqa: SIM115
        try:
            super().run(self._tracked(data), rank, world_size)
        finally:
            for fh in self._files.values():
                fh.close()
        return iter(())


class _RunDocs:
    """This run's per-document files from ``NearSignature``, memory-mapped."""

    def __init__(self, folder: Path, num_hashes: int):
        self.ids = [json.loads(line) for line in open(folder / "ids.jsonl", encoding="utf-8")]  # noqa: SIM115
        n = len(self.ids)
        self.full = _memmap(folder / "full.sig", (n, num_hashes))
        self.ends = _memmap(folder / "offsets.bin", (n,))
        self.digests = _memmap(folder / "digests.bin", (int(self.ends[-1]) if n else 0,))

    def shingle_digests(self, idx: int) -> np.ndarray:
        start = int(self.ends[idx - 1]) if idx else 0
        return self.digests[start : int(self.ends[idx])]


def _memmap(path: Path, shape: tuple) -> np.ndarray:
    if path.stat().st_size == 0 or 0 in shape:
        return np.zeros(shape, dtype=np.uint64)
    return np.memmap(path, dtype=np.uint64, mode="r", shape=shape)


class _EarlierIndex:
    """One earlier run's committed disk index: its band tables and signatures, memory-mapped."""

    def __init__(self, run: str, folder: Path, rows: int, num_hashes: int):
        self.run = run
        self.folder = folder
        self.ids = np.load(folder / KEPT_IDS, mmap_mode="r")
        self.dtype = _band_dtype(rows)
        self.full = _memmap(folder / KEPT_SIGNATURES, (len(self.ids), num_hashes))
        self._tables: dict[int, np.ndarray | None] = {}  # bucket -> its band table, mapped once

    def signature(self, row: int) -> np.ndarray:
        return self.full[row]

    def _table(self, bucket: int) -> np.ndarray | None:
        if bucket not in self._tables:
            path = self.folder / BAND_TABLE.format(bucket)
            present = path.is_file() and path.stat().st_size > 0
            self._tables[bucket] = np.memmap(path, dtype=self.dtype, mode="r") if present else None
        return self._tables[bucket]

    def rows_with_band(self, bucket: int, band: np.ndarray) -> list[int]:
        table = self._table(bucket)
        if table is None:
            return []
        first = table["h0"]
        lo, hi = np.searchsorted(first, band[0], "left"), np.searchsorted(first, band[0], "right")
        return [
            int(rec["doc"])
            for rec in table[lo:hi]
            if all(int(rec[f"h{i}"]) == int(v) for i, v in enumerate(band))
        ]


def _groups(dups_file: Path) -> list[list[tuple[int, int]]]:
    """The candidate groups of one band: datatrove writes chains of equal band values (each record pairs a
    document with the previous one of the same value), so a group is a connected run of records;
    ``(SENTINEL, SENTINEL)`` marks a value found in an earlier run's index."""
    groups: list[list[tuple[int, int]]] = []
    member: dict[tuple[int, int], int] = {}
    with open(dups_file, "rb") as fh:
        for f1, d1, f2, d2 in read_tuples_from_file(fh, "4I"):
            a, b = (f1, d1), (f2, d2)
            gid = member.get(a)
            if gid is None:
                gid = member[a] = len(groups)
                groups.append([a])
            if b not in member:
                member[b] = gid
                groups[gid].append(b)
    return groups


class NearVerifyCluster(MinhashDedupCluster):
    """Stage 3: candidates verified, first copy in input order kept (see the module docstring)."""

    name = "🧬 Near dedup verify"

    def __init__(
        self, work: str, cfg: NearDedupConfig, earlier: list[tuple[str, str]], index_out: str, keep_all: bool = False
    ):
        config = minhash_config(cfg)
        super().__init__(str(Path(work) / BUCKETS), str(Path(work) / DECISIONS), config=config)
        self.work = work
        self.near = cfg
        self.earlier = earlier  # (run id, committed index folder), in visible-run order
        self.index_out = index_out
        self.keep_all = keep_all  # rebuilding an earlier run's index: its documents were all accepted

    def _candidates(self) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
        """(doc -> this run's documents sharing a band, doc -> bands whose value an earlier run has)."""
        mine: dict[int, set[int]] = defaultdict(set)
        index_bands: dict[int, set[int]] = defaultdict(set)
        for bucket in range(self.config.num_buckets):
            for group in _groups(Path(self.work) / BUCKETS / f"{bucket:05d}_00.dups"):
                docs = [d for f, d in group if f != SENTINEL]
                for d in docs:
                    mine[d].update(o for o in docs if o != d)
                    if len(docs) < len(group):
                        index_bands[d].add(bucket)
        return mine, index_bands

    def _earlier_best(self, docs: _RunDocs, idx: int, bands: set[int], indexes) -> tuple[tuple, float]:
        """The most similar earlier run's document sharing one of ``bands`` with ``idx``: ((run, id), sim)."""
        rows, sig = self.config.hashes_per_bucket, np.asarray(docs.full[idx])
        best, best_sim = None, -1.0
        for index in indexes:
            for row in sorted({r for b in sorted(bands) for r in index.rows_with_band(b, sig[b * rows : (b + 1) * rows])}):
                sim = float(np.mean(index.signature(row) == sig))
                if sim > best_sim:
                    best, best_sim = (index.run, str(index.ids[row])), sim
        return best, best_sim

    def _decide(self, docs: _RunDocs, mine, index_bands, indexes) -> tuple[list[dict], np.ndarray]:
        kept = np.ones(len(docs.ids), dtype=bool)
        decisions, self.candidates = [], 0
        for idx in sorted(set(mine) | set(index_bands)):
            best, best_sim = None, -1.0
            if idx in index_bands:
                best, best_sim = self._earlier_best(docs, idx, index_bands[idx], indexes)
            earlier_mine = sorted(o for o in mine.get(idx, ()) if o < idx and kept[o])
            if earlier_mine:
                mine_digests = docs.shingle_digests(idx)
            for other in earlier_mine:
                sim = _jaccard(mine_digests, docs.shingle_digests(other)) if self.near.exact_verify else float(
                    np.mean(docs.full[idx] == docs.full[other])
                )
                if sim > best_sim:
                    best, best_sim = (None, docs.ids[other]), sim
            self.candidates += len(earlier_mine) + len(index_bands.get(idx, ()))
            if best is not None and best_sim >= self.near.threshold:
                kept[idx] = False
                decisions.append({"idx": idx, "duplicate_of": best[1], "similarity": round(best_sim, 4), "run": best[0]})
        return decisions, kept

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1):
        with self.track_time():
            num_hashes = self.config.num_buckets * self.config.hashes_per_bucket
            docs = _RunDocs(Path(self.work) / DOCS, num_hashes)
            rows = self.config.hashes_per_bucket
            indexes = [_EarlierIndex(run, Path(folder), rows, num_hashes) for run, folder in self.earlier]
            if self.keep_all:
                decisions, kept, self.candidates = [], np.ones(len(docs.ids), dtype=bool), 0
            else:
                decisions, kept = self._decide(docs, *self._candidates(), indexes)
            out = Path(self.work) / DECISIONS
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "00000.jsonl", "w", encoding="utf-8") as fh:
                for decision in decisions:
                    fh.write(json.dumps(decision, ensure_ascii=False) + "\n")
            (out / "summary.json").write_text(json.dumps({"lsh_candidates": self.candidates}), encoding="utf-8")
            self._write_index(docs, kept)
        return iter(())

    def _write_index(self, docs: _RunDocs, kept: np.ndarray) -> None:
        """This run's kept documents as an index other runs can search: signatures, ids, band tables."""
        out = Path(self.index_out)
        out.mkdir(parents=True, exist_ok=True)
        np.asarray(docs.full)[kept].astype("<u8").tofile(out / KEPT_SIGNATURES)
        ids = [i for i, k in zip(docs.ids, kept, strict=True) if k]
        np.save(out / KEPT_IDS, np.array(ids, dtype=str) if ids else np.zeros(0, dtype="<U1"))
        row_of = np.cumsum(kept) - 1
        dtype = _band_dtype(self.config.hashes_per_bucket)
        for bucket in range(self.config.num_buckets):
            sig_file = Path(self.work) / SIG / f"bucket_{bucket:03d}" / "00000.minhash.sig"
            records = np.fromfile(sig_file, dtype=dtype) if sig_file.is_file() else np.zeros(0, dtype)
            records = records[kept[records["doc"]]] if len(records) else records
            records["doc"] = row_of[records["doc"]] if len(records) else records["doc"]
            records.tofile(out / BAND_TABLE.format(bucket))  # still sorted: rows follow input order


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique digest arrays."""
    common = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - common
    return common / union if union else 1.0


class DiskNearDedupFilter(LanguageFunnelFilter):
    """Stage 4: drops the documents ``NearVerifyCluster`` found to be copies, naming the kept one."""

    name = "🧬 Near dedup (MinHash, on disk)"

    def __init__(self, decisions: str, extra_stats: dict, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.decisions = decisions
        self.extra_stats = extra_stats
        self._idx = 0
        self._next: dict | None = None
        self._fh = None

    def _advance(self) -> None:
        line = self._fh.readline()
        self._next = json.loads(line) if line else None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        idx, self._idx = self._idx, self._idx + 1
        if self._next is None or self._next["idx"] != idx:
            return True
        decision = self._next
        self._advance()
        doc.metadata["duplicate_of"] = decision["duplicate_of"]
        doc.metadata["duplicate_similarity"] = decision["similarity"]
        if decision["run"] is None:
            return False, "near_duplicate"
        doc.metadata["duplicate_of_run"] = decision["run"]
        return False, "near_duplicate_of_earlier_run"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError("near dedup must run as a single task: input order decides which copy is kept")
        for key, value in self.extra_stats.items():
            self.stat_update(key, value=value)
        with open(Path(self.decisions) / "00000.jsonl", encoding="utf-8") as self._fh:
            self._advance()
            yield from super().run(data, rank, world_size)


def _run_stages(cfg: NearDedupConfig, reader, work: Path, found: list, index_out: Path, executor, keep_all=False):
    """Stages 1-3 under ``work``: signatures, buckets against the ``found`` indexes, verification; this run's
    index (kept documents) lands in ``index_out``, the decisions in ``work/decisions``."""
    mh = minhash_config(cfg)
    run_pipeline([reader, NearSignature(str(work / SIG), str(work / DOCS), cfg)], work / "logs_signature",
                 executor.model_copy(update={"tasks": 1, "workers": 1}))  # fmt: skip
    _index_view(work / INDEX_VIEW, found, mh.num_buckets)
    buckets = MinhashDedupBuckets(str(work / SIG), str(work / BUCKETS), index_folder=str(work / INDEX_VIEW),
                                  config=mh, only_dedup_in_index=False, create_index_name="current")  # fmt: skip
    run_pipeline([buckets], work / "logs_buckets", executor.model_copy(update={"tasks": mh.num_buckets}))
    run_pipeline([NearVerifyCluster(str(work), cfg, found, str(index_out), keep_all)], work / "logs_verify",
                 executor.model_copy(update={"tasks": 1, "workers": 1}))  # fmt: skip
    for b in range(mh.num_buckets):
        own = work / INDEX_VIEW / f"bucket_{b:03d}" / "current_00.minhash.index"
        (index_out / f"bucket_{b:03d}").mkdir(parents=True, exist_ok=True)
        shutil.move(own, index_out / f"bucket_{b:03d}" / f"{INDEX_NAME}_00.minhash.index")
    (index_out / PARAMS_FILE).write_text(json.dumps(index_params(cfg), sort_keys=True), encoding="utf-8")


def rebuild_index(cfg: NearDedupConfig, run_dir: Path, documents: Path, work: Path, executor) -> bool:
    """Sign an earlier run's accepted ``documents`` (what its near_dedup step kept) with this step's settings
    and store them as that run's disk index, ``<dedup_state>/<run>/minhash/`` (built once: later steps find
    it there); False, with a warning, when the documents are gone."""
    if not (documents.is_dir() and jsonl_files(documents)):
        logger.warning("%s has no disk MinHash index with this step's settings and %s is gone: not deduplicating "
                       "against it", run_dir.name, documents)  # fmt: skip
        return False
    target, tmp = run_dir / DISK_INDEX, run_dir / (DISK_INDEX + ".rebuilding")
    shutil.rmtree(tmp, ignore_errors=True)
    reader = CountingJsonlReader(str(documents), work / UNREADABLE_DIR, add_file_path=False)
    _run_stages(cfg, reader, work, [], tmp, executor, keep_all=True)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    shutil.rmtree(work)
    logger.info("built %s's disk MinHash index from its %s", run_dir.name, documents)
    return True


def visible_indexes(cfg: NearDedupConfig, dedup_state: Path, earlier_runs: list[str], work: Path, executor) -> tuple:
    """([(run, index folder)] of the visible runs whose disk index matches this step's settings, the number
    of visible runs whose index was rebuilt from their accepted documents (a memory-backend run, or one of
    other MinHash settings), the number skipped because their documents are gone)."""
    want, found, rebuilt, incompatible = index_params(cfg), [], 0, 0
    root = Path(dedup_state).parents[1]  # <root>/state/dedup
    for i, run in enumerate(earlier_runs):
        run_dir = Path(dedup_state) / run
        params_file = run_dir / DISK_INDEX / PARAMS_FILE
        matches = params_file.is_file() and json.loads(params_file.read_text(encoding="utf-8")) == want
        if not matches and ((run_dir / NEAR_FILE).is_file() or (run_dir / DISK_INDEX).is_dir()):
            documents = RunLayout(root, run).curate_step("near_dedup") / DOCUMENTS
            if not rebuild_index(cfg, run_dir, documents, work / f"rebuild_{i:05d}", executor):
                incompatible += 1
                continue
            rebuilt += 1
            matches = True
        if matches:
            found.append((run, str(run_dir / DISK_INDEX)))
    return found, rebuilt, incompatible


def _index_view(view: Path, found: list, buckets: int) -> None:
    """datatrove's ``index_folder`` for this step: links to the visible runs' index files only (a failed or
    rejected run's index stays in the state but is not linked)."""
    for b in range(buckets):
        (view / f"bucket_{b:03d}").mkdir(parents=True, exist_ok=True)
        for i, (_, folder) in enumerate(found):
            source = Path(folder) / f"bucket_{b:03d}" / f"{INDEX_NAME}_00.minhash.index"
            if source.is_file():
                os.symlink(source.resolve(), view / f"bucket_{b:03d}" / f"earlier{i:05d}_00.minhash.index")


def prepare_disk_near_dedup(cfg, reader, partial: Path, dedup_state, earlier_runs, executor, excluded):
    """Run stages 1-3 under ``partial/minhash_work`` and return stage 4, the filter for the step's own
    pipeline; this run's index lands in ``partial/index/minhash``. Of the work folder only the decisions stay,
    for the filter; the step removes the folder once its pipeline has run (``NEAR_WORK``)."""
    work, mh = partial / NEAR_WORK, minhash_config(cfg)
    found, rebuilt, incompatible = visible_indexes(cfg, dedup_state, earlier_runs, work, executor)
    _run_stages(cfg, reader, work, found, partial / INDEX_DIR / DISK_INDEX, executor)
    stats = {"lsh_bands": mh.num_buckets, "lsh_rows": mh.hashes_per_bucket, "earlier_runs": len(earlier_runs),
             "earlier_signatures": sum(len(np.load(Path(f) / KEPT_IDS, mmap_mode="r")) for _, f in found)}  # fmt: skip
    stats |= json.loads((work / DECISIONS / "summary.json").read_text(encoding="utf-8"))
    if rebuilt:
        stats["earlier_runs_rebuilt"] = rebuilt
    if incompatible:
        stats["earlier_runs_incompatible"] = incompatible
    for path in work.iterdir():
        if path.name != DECISIONS:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return DiskNearDedupFilter(str(work / DECISIONS), stats, exclusion_writer=excluded)
