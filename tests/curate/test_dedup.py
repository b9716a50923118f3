"""Exact and MinHash near dedup: within a run (first copy wins) and across runs through the dedup state."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from cpt_core.curate.dedup import (
    ExactDedupConfig,
    NearDedupConfig,
    commit_dedup_index,
    exact_hash,
    jaccard,
    shingles,
)
from cpt_core.curate.pipeline import CurateConfig, run_curate_step
from tests.doc_files import read_docs, write_docs

ARTICLES = {
    "harbour": (
        "The old harbour town sits at the mouth of a wide river, and its market square is busy every morning. "
        "Farmers bring fresh vegetables from the hills, and the bakers open their shops well before sunrise. "
        "Visitors like to walk along the stone bridge to watch the fishing boats come back with their catch. "
        "In the evening the cafes fill with families who come to enjoy the cool air from the sea."
    ),
    "library": (
        "The city library was built a hundred years ago with money raised by the people of the town. "
        "Its reading room has tall windows, long oak tables and green lamps that stay on until late at night. "
        "Students prepare for their exams there, and retired teachers come to read the morning newspapers. "
        "Every spring the library holds a book sale to pay for new children's books."
    ),
    "railway": (
        "The mountain railway climbs more than two thousand metres through tunnels and over stone viaducts. "
        "It was opened in the last years of the nineteenth century and still runs every day in summer. "
        "From the top station walkers can follow marked paths to the glacier or to a small lake. "
        "In winter the line carries skiers and the snow ploughs work through the night to keep it open."
    ),
}
KOREAN = (
    "제주도는 한반도 남쪽 바다에 있는 가장 큰 섬이다. 섬의 한가운데에는 남한에서 가장 높은 한라산이 있다. "
    "화산 활동으로 만들어진 섬이라서 용암 동굴과 오름이 곳곳에 있다. 따뜻한 기후 덕분에 귤 농사가 발달하였다."
)

# respaced, re-punctuated, one sentence added: a copy (a one-word change in a text this short is not)
KOREAN_COPY = KOREAN.replace("가장 큰", "가장큰").replace(" 있다.", " 있다!") + " 자세한 것은 누리집을 보라."


def near_copy(text: str) -> str:
    """The same article with one word changed and a sentence appended: a typical syndicated copy."""
    return text.replace("every", "each", 1) + " Read more stories like this one."






def write_en(folder: Path, docs: list[dict], name: str = "00000.jsonl.gz") -> Path:
    return write_docs(folder, docs, {"language": "en"}, name)


def dedup_run(tmp: Path, run_id: str, source: Path, state: Path, cfg: CurateConfig | None = None) -> dict:
    """exact_dedup then near_dedup for one run; returns {step: manifest}."""
    cfg = cfg or CurateConfig()
    # the runs this one may see: every other committed run (the flow passes its pinned state view)
    earlier = sorted(p.name for p in state.glob("*") if p.is_dir() and p.name != run_id)
    exact = run_curate_step(
        "exact_dedup", cfg, source, tmp / run_id / "exact_dedup", state, run_id, earlier_runs=earlier
    )
    near = run_curate_step(
        "near_dedup", cfg, tmp / run_id / "exact_dedup", tmp / run_id / "near_dedup", state, run_id,
        earlier_runs=earlier,
    )
    return {"exact_dedup": exact, "near_dedup": near}


def commit(tmp: Path, run_id: str, state: Path) -> None:
    commit_dedup_index(state, run_id, tmp / run_id / "exact_dedup", "exact")
    commit_dedup_index(state, run_id, tmp / run_id / "near_dedup", "near")


def unzipped(folder: Path) -> dict[str, bytes]:
    return {p.name: gzip.decompress(p.read_bytes()) for p in sorted(folder.glob("*.gz"))}


def test_normalisation_and_shingles():
    assert exact_hash("Hello   World\n") == exact_hash("hello world")
    assert exact_hash("hello world") != exact_hash("hello there world")
    words = shingles("one two three four five six", 5, "en")
    assert words == {"one two three four five", "two three four five six"}
    chars = shingles("日本の首都は東京", 5, "ja")
    assert "日本の首都" in chars and len(chars) == 4
    # Korean: character shingles, spaces dropped (spacing varies between writers of the same sentence)
    assert shingles("서울은 큰 도시이다", 5, "ko") == {"서울은큰도", "울은큰도시", "은큰도시이", "큰도시이다"}
    assert shingles("東京都の人口は多い", 3, None) >= {"東京都"}  # no language: few spaces -> characters
    assert shingles("tiny", 5, "en") == {"tiny"}


def test_exact_and_near_duplicates_within_a_run(tmp_path):
    harbour, library = ARTICLES["harbour"], ARTICLES["library"]
    source = write_en(
        tmp_path / "in",
        [
            {"id": "h1", "text": harbour},
            {"id": "l1", "text": library},
            {"id": "h2", "text": "  " + harbour.upper().replace(". ", ".\n")},  # case/whitespace copy
            {"id": "l2", "text": near_copy(library)},
            {"id": "r1", "text": ARTICLES["railway"]},
            {"id": "k1", "text": KOREAN, "metadata": {"language": "ko"}},
            {
                "id": "k2",
                "text": KOREAN_COPY,
                "metadata": {"language": "ko"},
            },
        ],
    )
    runs = dedup_run(tmp_path, "A", source, tmp_path / "state")
    exact, near = runs["exact_dedup"]["summary"], runs["near_dedup"]["summary"]
    assert exact["dropped"] == {"exact_duplicate": 1}
    assert near["dropped"] == {"near_duplicate": 2}
    assert near["docs_out"] == 4 and near["languages"] == {"en": 3, "ko": 1}

    kept = [d["id"] for d in read_docs(tmp_path / "A" / "near_dedup" / "documents")]
    assert kept == ["h1", "l1", "r1", "k1"]  # first copies, input order preserved
    (h2,) = read_docs(tmp_path / "A" / "exact_dedup" / "dropped")
    assert h2["id"] == "h2" and h2["metadata"]["filter_reason"] == "exact_duplicate"
    assert h2["metadata"]["duplicate_of"] == "h1" and h2["metadata"]["duplicate_similarity"] == 1.0
    dropped = {d["id"]: d["metadata"] for d in read_docs(tmp_path / "A" / "near_dedup" / "dropped")}
    assert dropped["l2"]["filter_reason"] == "near_duplicate" and dropped["l2"]["duplicate_of"] == "l1"
    assert dropped["k2"]["duplicate_of"] == "k1"
    # each dropped copy names a kept document and its exact shingle Jaccard with it
    texts = {"l1": library, "l2": near_copy(library), "k1": KOREAN}
    texts["k2"] = KOREAN_COPY
    for doc_id, meta in dropped.items():
        assert meta["duplicate_of"] in kept
        lang = "ko" if doc_id.startswith("k") else "en"
        exact = jaccard(shingles(texts[doc_id], 5, lang, 13), shingles(texts[meta["duplicate_of"]], 5, lang, 13))
        assert 0.7 <= meta["duplicate_similarity"] == round(exact, 4) < 1


def test_first_copy_in_input_order_wins_across_files(tmp_path):
    source = write_en(tmp_path / "in", [{"id": "first", "text": ARTICLES["railway"]}], "00000.jsonl.gz")
    write_en(tmp_path / "in", [{"id": "second", "text": ARTICLES["railway"]}], "00001.jsonl.gz")
    cfg = CurateConfig.model_validate({"executor": {"tasks": 2}})  # dedup ignores this: one ordered task
    runs = dedup_run(tmp_path, "A", source, tmp_path / "state", cfg)
    assert [d["id"] for d in read_docs(tmp_path / "A" / "exact_dedup" / "documents")] == ["first"]
    assert runs["exact_dedup"]["summary"]["dropped"] == {"exact_duplicate": 1}


def test_two_runs_share_history_and_a_redone_run_never_dedups_against_itself(tmp_path):
    state = tmp_path / "state"
    run_a = write_en(
        tmp_path / "in-a",
        [{"id": "harbour", "text": ARTICLES["harbour"]}, {"id": "library", "text": ARTICLES["library"]}],
    )
    a = dedup_run(tmp_path, "A", run_a, state)
    assert a["near_dedup"]["summary"]["dropped"] == {}
    commit(tmp_path, "A", state)
    assert (state / "A" / "exact.txt").read_text().count("\n") == 2
    with np.load(state / "A" / "minhash.npz") as index:
        assert index["ids"].tolist() == ["harbour", "library"]
        assert index["signatures"].shape == (2, 128)

    run_b = write_en(
        tmp_path / "in-b",
        [
            {"id": "b-harbour", "text": ARTICLES["harbour"]},
            {"id": "b-library", "text": near_copy(ARTICLES["library"])},
            {"id": "b-railway", "text": ARTICLES["railway"]},
        ],
    )
    b = dedup_run(tmp_path, "B", run_b, state)
    assert b["exact_dedup"]["summary"]["dropped"] == {"duplicate_of_earlier_run": 1}
    assert b["exact_dedup"]["summary"]["earlier_runs"] == 1
    assert b["near_dedup"]["summary"]["dropped"] == {"near_duplicate_of_earlier_run": 1}
    (exact_drop,) = read_docs(tmp_path / "B" / "exact_dedup" / "dropped")
    assert (
        exact_drop["metadata"]["duplicate_of"] == "harbour"
        and exact_drop["metadata"]["duplicate_of_run"] == "A"
    )
    (near_drop,) = read_docs(tmp_path / "B" / "near_dedup" / "dropped")
    assert near_drop["id"] == "b-library" and near_drop["metadata"]["duplicate_of"] == "library"
    assert near_drop["metadata"]["duplicate_of_run"] == "A"
    assert [d["id"] for d in read_docs(tmp_path / "B" / "near_dedup" / "documents")] == ["b-railway"]
    commit(tmp_path, "B", state)

    # Run A crashed after committing and is redone: its own entries in the state must not drop its documents.
    before = {step: unzipped(tmp_path / "A" / step / "documents") for step in ("exact_dedup", "near_dedup")}
    index_before = {
        "exact": (tmp_path / "A" / "exact_dedup" / "index" / "exact.txt").read_bytes(),
        "near": (tmp_path / "A" / "near_dedup" / "index" / "minhash.npz").read_bytes(),
    }
    shutil.rmtree(tmp_path / "A")
    again = dedup_run(tmp_path, "A", run_a, state)
    assert again["exact_dedup"]["summary"]["dropped"] == {}
    assert again["near_dedup"]["summary"]["dropped"] == {}
    assert again["exact_dedup"]["summary"]["earlier_runs"] == 1  # B only
    for step in ("exact_dedup", "near_dedup"):
        assert unzipped(tmp_path / "A" / step / "documents") == before[step]
    assert (tmp_path / "A" / "exact_dedup" / "index" / "exact.txt").read_bytes() == index_before["exact"]
    assert (tmp_path / "A" / "near_dedup" / "index" / "minhash.npz").read_bytes() == index_before["near"]


def test_incompatible_minhash_parameters_are_skipped_not_misread(tmp_path):
    state = tmp_path / "state"
    run_a = write_en(tmp_path / "in-a", [{"id": "library", "text": ARTICLES["library"]}])
    dedup_run(tmp_path, "A", run_a, state)
    commit(tmp_path, "A", state)
    run_b = write_en(tmp_path / "in-b", [{"id": "b-library", "text": near_copy(ARTICLES["library"])}])
    cfg = CurateConfig(near_dedup=NearDedupConfig(num_perm=64))
    near = dedup_run(tmp_path, "B", run_b, state, cfg)["near_dedup"]["summary"]
    assert near["earlier_runs_incompatible"] == 1
    assert near["docs_out"] == 1


def test_commit_needs_a_finished_step(tmp_path):
    with pytest.raises(FileNotFoundError, match="exact dedup index"):
        commit_dedup_index(tmp_path / "state", "A", tmp_path / "nothing", "exact")
    with pytest.raises(ValueError, match="kind"):
        commit_dedup_index(tmp_path / "state", "A", tmp_path / "nothing", "fuzzy")
    source = write_en(tmp_path / "in", [{"id": "a", "text": "some text"}])
    cfg = CurateConfig(exact_dedup=ExactDedupConfig(enabled=False))
    run_curate_step("exact_dedup", cfg, source, tmp_path / "exact", tmp_path / "state", "A")
    assert commit_dedup_index(tmp_path / "state", "A", tmp_path / "exact", "exact") is None


def test_config_rejects_unknown_keys():
    with pytest.raises(ValidationError, match="shingle"):
        NearDedupConfig.model_validate({"threshold": 0.8, "shingle": 3})
    with pytest.raises(ValidationError):
        NearDedupConfig(threshold=0)


def test_an_index_of_other_settings_is_re_signed_from_the_runs_documents(tmp_path):
    """After an upgrade changes the shingling, history still counts: the earlier run's accepted documents
    (under its run folder) are signed again with the new settings, once, and copies of them are dropped."""
    root = tmp_path / "root"
    state, run_a_dir = root / "state" / "dedup", root / "runs" / "A" / "curate"
    source = write_en(tmp_path / "in-a", [{"id": "library", "text": ARTICLES["library"]}])
    run_curate_step("exact_dedup", CurateConfig(), source, run_a_dir / "exact_dedup", state, "A", earlier_runs=[])
    run_curate_step("near_dedup", CurateConfig(), run_a_dir / "exact_dedup", run_a_dir / "near_dedup", state, "A",
                    earlier_runs=[])  # fmt: skip
    commit_dedup_index(state, "A", run_a_dir / "near_dedup", "near")
    with np.load(state / "A" / "minhash.npz") as index:
        old = {k: index[k] for k in index.files if k not in ("shingling", "char_ngram")}
    np.savez(state / "A" / "minhash.npz", **old)  # as written by an older version

    run_b = write_en(tmp_path / "in-b", [{"id": "b-library", "text": near_copy(ARTICLES["library"])}])
    near = run_curate_step("near_dedup", CurateConfig(), run_b, tmp_path / "B", state, "B", earlier_runs=["A"])
    summary = near["summary"]
    assert summary["earlier_runs_rebuilt"] == 1 and "earlier_runs_incompatible" not in summary
    assert summary["dropped"] == {"near_duplicate_of_earlier_run": 1}
    with np.load(state / "A" / "minhash.npz") as index:  # stored with the new settings: re-signed once
        assert int(index["shingling"]) == 3 and index["ids"].tolist() == ["library"]
    again = run_curate_step("near_dedup", CurateConfig(), run_b, tmp_path / "C", state, "C", earlier_runs=["A"])
    assert "earlier_runs_rebuilt" not in again["summary"]
