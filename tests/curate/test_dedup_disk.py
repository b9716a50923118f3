"""The disk dedup backends (datatrove's on-disk MinHash stages, sorted exact hashes): within a run, across
runs through the committed state (visible runs only), agreement with the memory backend, crash and rerun."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cpt_core.curate.dedup import commit_dedup_index
from cpt_core.curate.minhash_disk import DiskNearDedupFilter
from cpt_core.curate.pipeline import CurateConfig, run_curate_step
from cpt_core.stage import read_manifest
from cpt_core.state import record_outcome
from tests.curate.test_dedup import ARTICLES, KOREAN, KOREAN_COPY, near_copy, unzipped, write_en
from tests.doc_files import read_docs

DISK = CurateConfig.model_validate({"exact_dedup": {"backend": "disk"}, "near_dedup": {"backend": "disk"}})
KOREAN_2 = (
    "서울은 대한민국의 수도이며 한강이 도시의 가운데를 흐른다. 조선 시대부터 나라의 중심이었고 궁궐과 성곽이 "
    "지금도 남아 있다. 지하철과 버스가 도시 곳곳을 잇고 있어 어디든 쉽게 갈 수 있다. 봄에는 벚꽃이 핀다."
)


def dedup(root: Path, run_id: str, source: Path, cfg: CurateConfig = DISK, earlier: list[str] | None = None) -> Path:
    """exact_dedup then near_dedup as run ``run_id`` under ``root`` (state view pinned from ``root/state``
    unless ``earlier`` is given); returns the run's curate folder."""
    state, out = root / "state" / "dedup", root / "runs" / run_id / "curate"
    run_curate_step("exact_dedup", cfg, source, out / "exact_dedup", state, run_id, earlier_runs=earlier)
    run_curate_step("near_dedup", cfg, out / "exact_dedup", out / "near_dedup", state, run_id, earlier_runs=earlier)
    return out


def commit(root: Path, run_id: str) -> None:
    out, state = root / "runs" / run_id / "curate", root / "state" / "dedup"
    commit_dedup_index(state, run_id, out / "exact_dedup", "exact")
    commit_dedup_index(state, run_id, out / "near_dedup", "near")


def ids(folder: Path) -> list[str]:
    return [d["id"] for d in read_docs(folder)]


def mixed_corpus(folder: Path) -> Path:
    harbour, library = ARTICLES["harbour"], ARTICLES["library"]
    ko = {"language": "ko"}
    return write_en(folder, [
        {"id": "h1", "text": harbour},
        {"id": "k1", "text": KOREAN, "metadata": ko},
        {"id": "l1", "text": library},
        {"id": "h2", "text": "  " + harbour.upper().replace(". ", ".\n")},
        {"id": "k2", "text": KOREAN_COPY, "metadata": ko},
        {"id": "l2", "text": near_copy(library)},
        {"id": "s1", "text": KOREAN_2, "metadata": ko},
        {"id": "r1", "text": ARTICLES["railway"]},
        {"id": "l3", "text": near_copy(near_copy(library))},
    ])  # fmt: skip


def test_within_a_run_first_copy_wins_and_drops_name_the_kept_document(tmp_path):
    out = dedup(tmp_path, "A", mixed_corpus(tmp_path / "in"), earlier=[])
    assert ids(out / "near_dedup" / "documents") == ["h1", "k1", "l1", "s1", "r1"]
    dropped = {d["id"]: d["metadata"] for d in read_docs(out / "near_dedup" / "dropped")}
    assert {k: (m["filter_reason"], m["duplicate_of"]) for k, m in dropped.items()} == {
        "k2": ("near_duplicate", "k1"), "l2": ("near_duplicate", "l1"), "l3": ("near_duplicate", "l1"),
    }  # fmt: skip
    assert all(0.7 <= m["duplicate_similarity"] < 1 for m in dropped.values())
    (h2,) = read_docs(out / "exact_dedup" / "dropped")
    assert h2["metadata"]["duplicate_of"] == "h1" and h2["metadata"]["filter_reason"] == "exact_duplicate"
    # the verification's decisions were scratch: nothing of stages 1-3 is left in the step's output
    assert sorted(p.name for p in (out / "near_dedup").iterdir()) == [
        "_manifest.json", "documents", "dropped", "index", "logs",
    ]  # fmt: skip


def test_same_kept_documents_as_the_memory_backend(tmp_path):
    source = mixed_corpus(tmp_path / "in")
    disk = dedup(tmp_path / "disk", "A", source, earlier=[])
    memory = dedup(tmp_path / "memory", "A", source, CurateConfig(), earlier=[])
    for step in ("exact_dedup", "near_dedup"):
        assert unzipped(disk / step / "documents") == unzipped(memory / step / "documents")
    drops = [{d["id"]: d["metadata"] for d in read_docs(o / "near_dedup" / "dropped")} for o in (disk, memory)]
    assert drops[0] == drops[1]  # same reasons, kept documents and exact similarities


def test_copies_of_a_visible_earlier_run_are_dropped_a_rejected_runs_are_not(tmp_path):
    state = tmp_path / "state"
    dedup(tmp_path, "A", write_en(tmp_path / "in-a", [{"id": "library", "text": ARTICLES["library"]},
                                                      {"id": "harbour", "text": ARTICLES["harbour"]}]))  # fmt: skip
    commit(tmp_path, "A")
    record_outcome(state, "A", "rejected")
    source = write_en(tmp_path / "in-b", [
        {"id": "b-library", "text": near_copy(ARTICLES["library"])},
        {"id": "b-railway", "text": ARTICLES["railway"]},
    ])  # fmt: skip
    b = dedup(tmp_path, "B", source)  # A rejected: its index is in the state but not visible
    assert ids(b / "near_dedup" / "documents") == ["b-library", "b-railway"]

    record_outcome(state, "A", "promoted")
    c = dedup(tmp_path, "C", source)
    assert ids(c / "near_dedup" / "documents") == ["b-railway"]
    (drop,) = read_docs(c / "near_dedup" / "dropped")
    meta = drop["metadata"]
    assert meta["filter_reason"] == "near_duplicate_of_earlier_run"
    assert meta["duplicate_of"] == "library" and meta["duplicate_of_run"] == "A"
    assert 0.7 <= meta["duplicate_similarity"] < 1

    # a failed run (no outcome) that committed its index is not seen either; a redone run never sees itself
    commit(tmp_path, "C")
    d = dedup(tmp_path, "D", write_en(tmp_path / "in-d", [{"id": "d-railway", "text": ARTICLES["railway"]}]))
    assert ids(d / "near_dedup" / "documents") == ["d-railway"]
    shutil.rmtree(c)  # C crashed after committing: redone, its own committed index does not drop its documents
    again = dedup(tmp_path, "C", source)
    assert ids(again / "near_dedup" / "documents") == ["b-railway"]


def test_exact_disk_index_is_read_by_the_memory_backend_and_back(tmp_path):
    dedup(tmp_path, "A", write_en(tmp_path / "in-a", [{"id": "railway", "text": ARTICLES["railway"]}]))
    commit(tmp_path, "A")
    record_outcome(tmp_path / "state", "A", "data_only")
    copy = write_en(tmp_path / "in-b", [{"id": "b", "text": ARTICLES["railway"].upper()}])
    b = dedup(tmp_path, "B", copy, CurateConfig())
    (drop,) = read_docs(b / "exact_dedup" / "dropped")
    assert drop["metadata"]["duplicate_of"] == "railway" and drop["metadata"]["duplicate_of_run"] == "A"


def test_a_crash_in_the_middle_then_a_rerun_gives_identical_output(tmp_path, monkeypatch):
    source = mixed_corpus(tmp_path / "in")
    clean = dedup(tmp_path / "clean", "A", source, earlier=[])
    original = DiskNearDedupFilter.filter

    def crashing(self, doc):
        if self._idx == 3:
            raise RuntimeError("killed")
        return original(self, doc)

    monkeypatch.setattr(DiskNearDedupFilter, "filter", crashing)
    with pytest.raises(Exception, match="killed"):
        dedup(tmp_path / "crash", "A", source, earlier=[])
    monkeypatch.setattr(DiskNearDedupFilter, "filter", original)
    again = dedup(tmp_path / "crash", "A", source, earlier=[])
    for sub in ("documents", "dropped"):
        assert unzipped(again / "near_dedup" / sub) == unzipped(clean / "near_dedup" / sub)
    index = sorted(p.relative_to(clean) for p in (clean / "near_dedup" / "index").rglob("*") if p.is_file())
    assert index and all((again / p).read_bytes() == (clean / p).read_bytes() for p in index)


def near_summary(out: Path) -> dict:
    return read_manifest(out / "near_dedup")["summary"]


def test_switching_to_disk_keeps_deduplicating_against_a_memory_runs_history(tmp_path):
    state = tmp_path / "state"
    ko = {"language": "ko"}
    dedup(tmp_path, "A", write_en(tmp_path / "in-a", [
        {"id": "library", "text": ARTICLES["library"]},
        {"id": "harbour", "text": ARTICLES["harbour"]},
        {"id": "korean", "text": KOREAN, "metadata": ko},
    ]), CurateConfig())  # fmt: skip
    commit(tmp_path, "A")
    record_outcome(state, "A", "promoted")
    assert not (state / "dedup" / "A" / "minhash").exists()  # the memory backend's minhash.npz only
    source = write_en(tmp_path / "in-b", [
        {"id": "b-library", "text": near_copy(ARTICLES["library"])},
        {"id": "b-harbour", "text": "  " + ARTICLES["harbour"].upper()},
        {"id": "b-korean", "text": KOREAN_COPY, "metadata": ko},
        {"id": "b-railway", "text": ARTICLES["railway"]},
    ])  # fmt: skip
    b = dedup(tmp_path, "B", source)
    assert ids(b / "near_dedup" / "documents") == ["b-railway"]
    near = {d["id"]: d["metadata"] for d in read_docs(b / "near_dedup" / "dropped")}
    assert {k: (m["filter_reason"], m["duplicate_of"], m["duplicate_of_run"]) for k, m in near.items()} == {
        "b-library": ("near_duplicate_of_earlier_run", "library", "A"),
        "b-korean": ("near_duplicate_of_earlier_run", "korean", "A"),
    }  # fmt: skip
    (exact,) = read_docs(b / "exact_dedup" / "dropped")
    assert exact["metadata"]["filter_reason"] == "duplicate_of_earlier_run"
    assert (exact["id"], exact["metadata"]["duplicate_of"]) == ("b-harbour", "harbour")
    assert near_summary(b)["earlier_runs_rebuilt"] == 1 and "earlier_runs_incompatible" not in near_summary(b)
    assert (state / "dedup" / "A" / "minhash" / "params.json").is_file()  # stored where later steps find it
    assert read_manifest(b / "exact_dedup")["summary"]["earlier_runs_rebuilt"] == 1
    assert (state / "dedup" / "A" / "exact" / "hashes.npy").is_file()

    c = dedup(tmp_path, "C", source, earlier=["A"])  # built once: found, not rebuilt
    assert "earlier_runs_rebuilt" not in near_summary(c) and near_summary(c)["earlier_signatures"] == 3
    assert "earlier_runs_rebuilt" not in read_manifest(c / "exact_dedup")["summary"]
    assert ids(c / "near_dedup" / "documents") == ["b-railway"]

    # a disk index of other MinHash settings is rebuilt with this step's, from the same documents
    strict = CurateConfig.model_validate({**DISK.model_dump(), "near_dedup": {"backend": "disk", "threshold": 0.8}})
    d = dedup(tmp_path, "D", source, strict, earlier=["A"])
    assert near_summary(d)["earlier_runs_rebuilt"] == 1 and near_summary(d)["lsh_rows"] == 5
    assert {x["id"] for x in read_docs(d / "near_dedup" / "dropped")} == {"b-library", "b-korean"}

    commit(tmp_path, "A")  # A recommitted (redone): what the disk backend derived from its old index goes
    assert sorted(p.name for p in (state / "dedup" / "A").iterdir()) == ["exact.txt", "minhash.npz"]


def test_a_memory_run_whose_documents_are_gone_is_skipped_with_a_count(tmp_path):
    dedup(tmp_path, "A", write_en(tmp_path / "in-a", [{"id": "library", "text": ARTICLES["library"]}]), CurateConfig())
    commit(tmp_path, "A")
    shutil.rmtree(tmp_path / "runs" / "A")
    b = dedup(tmp_path, "B", write_en(tmp_path / "in-b", [{"id": "b", "text": near_copy(ARTICLES["library"])}]),
              earlier=["A"])  # fmt: skip
    assert near_summary(b)["earlier_runs_incompatible"] == 1 and near_summary(b)["docs_out"] == 1
