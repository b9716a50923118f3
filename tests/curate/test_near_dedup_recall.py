"""Near dedup finds the copies: normalisation, LSH bands chosen for recall, verified candidates."""

from __future__ import annotations

import numpy as np
from datatrove.data import Document

from cpt_core.curate.dedup import (
    NearDedupConfig,
    NearDedupFilter,
    jaccard,
    lsh_params,
    normalise_for_shingles,
    shingles,
)
from cpt_core.curate.pipeline import CurateConfig
from tests.curate.test_dedup import ARTICLES, KOREAN, commit, dedup_run, write_en
from tests.doc_files import read_docs


def test_normalisation_folds_width_case_punctuation_and_spaces():
    assert normalise_for_shingles("Ｈｅｌｌｏ,  WORLD!!\n—it’s ﬁne…") == "hello world it s fine"
    assert normalise_for_shingles("서울은, 큰 「도시」이다.") == "서울은 큰 도시 이다"
    assert shingles("One, two; THREE four five!", 5, "en") == shingles("one two three four five", 5, "en")
    # Korean: spacing differences do not change the character shingles
    assert shingles("서울은 큰 도시이다", 3, "ko") == shingles("서울은  큰도시 이다", 3, "ko")
    assert shingles("서울은 큰 도시이다", 5, "ko", char_ngram=3) >= {"서울은", "큰도시"}


def test_lsh_bands_put_the_threshold_on_the_steep_part_of_the_curve():
    for threshold in (0.5, 0.7, 0.8, 0.9):
        bands, rows = lsh_params(threshold, 128, 0.999)
        assert bands * rows <= 128
        assert 1 - (1 - threshold**rows) ** bands >= 0.999  # pairs at the threshold become candidates
        # one more row would miss them: the fewest false candidates that still keep the recall
        more = 128 // (rows + 1)
        assert 1 - (1 - threshold ** (rows + 1)) ** more < 0.999
    assert lsh_params(0.8, 128, 0.999) == (25, 5)


def _docs(texts: dict[str, str], language: str = "en") -> list[Document]:
    return [Document(text=t, id=i, metadata={"language": language}) for i, t in texts.items()]


def run_filter(tmp_path, docs: list[Document], **cfg) -> list[str]:
    step = NearDedupFilter(NearDedupConfig(**cfg), tmp_path / "state", [], tmp_path / "index")
    return [d.id for d in step.run(iter(docs))]


def test_copies_differing_only_in_punctuation_case_and_width_are_found(tmp_path):
    text = ARTICLES["library"]
    noisy = text.upper().replace(",", " ,").replace(".", " !").replace("the", "ｔｈｅ")
    docs = _docs({"a": text, "b": noisy})
    assert run_filter(tmp_path, docs, threshold=0.8) == ["a"]
    assert docs[1].metadata["duplicate_of"] == "a" and docs[1].metadata["duplicate_similarity"] == 1.0


def test_similarity_recorded_is_the_exact_jaccard_and_the_threshold_is_exact(tmp_path):
    words = ARTICLES["railway"].split()
    edited = " ".join(words[:20] + ["suddenly"] + words[20:])  # one insertion
    exact = jaccard(shingles(ARTICLES["railway"], 5, "en"), shingles(edited, 5, "en"))
    docs = _docs({"a": ARTICLES["railway"], "b": edited})
    assert run_filter(tmp_path, docs, threshold=exact) == ["a"]
    assert docs[1].metadata["duplicate_similarity"] == round(exact, 4)
    docs = _docs({"a": ARTICLES["railway"], "b": edited})
    assert run_filter(tmp_path / "above", docs, threshold=exact + 0.001) == ["a", "b"]


def test_korean_near_copy_with_different_spacing_and_punctuation(tmp_path):
    copy = KOREAN.replace("가장 큰 섬이다.", "가장큰 섬이다!").replace(" 있다.", " 있다 ...")
    docs = _docs({"k1": KOREAN, "k2": copy}, "ko")
    assert run_filter(tmp_path, docs, threshold=0.8) == ["k1"]
    assert docs[1].metadata["duplicate_of"] == "k1"


def test_index_of_an_older_shingling_is_skipped_not_misread(tmp_path):
    state = tmp_path / "state"
    run_a = write_en(tmp_path / "in-a", [{"id": "library", "text": ARTICLES["library"]}])
    dedup_run(tmp_path, "A", run_a, state)
    commit(tmp_path, "A", state)
    with np.load(state / "A" / "minhash.npz") as index:
        assert int(index["shingling"]) == 3 and int(index["char_ngram"]) == 13
        old = {k: index[k] for k in index.files if k not in ("shingling", "char_ngram")}
    np.savez(state / "A" / "minhash.npz", **old)  # an index written before the normalisation existed
    run_b = write_en(tmp_path / "in-b", [{"id": "b-library", "text": ARTICLES["library"] + " More."}])
    near = dedup_run(tmp_path, "B", run_b, state, CurateConfig())["near_dedup"]["summary"]
    assert near["earlier_runs_incompatible"] == 1 and near["docs_out"] == 1
    assert near["lsh_bands"] * near["lsh_rows"] <= 128
    assert [d["id"] for d in read_docs(tmp_path / "B" / "near_dedup" / "documents")] == ["b-library"]


def test_unlabelled_korean_is_shingled_in_characters_like_labelled_korean():
    spaced = "제주도는 한반도 남쪽 바다에 있는 가장 큰 섬이다"
    assert shingles(spaced, 5, None, 4) == shingles(spaced, 5, "ko", 4)
    assert shingles("제주도는 가장 큰 섬", 5, None, 4) >= {"제주도는", "가장큰섬"}
    mixed = "Install the package with apt and read 설명서 for details on every option it offers"
    assert shingles(mixed, 5, None) == shingles(mixed, 5, "en")  # mostly Latin: words


def test_korean_copy_with_rewritten_spacing_is_found_and_a_rewrite_is_not(tmp_path):
    respaced = KOREAN.replace("가장 큰", "가장큰").replace("한라산이 있다", "한라 산이있다")
    rewritten = KOREAN.replace("가장 큰 섬이다", "두 번째로 큰 섬이다").replace("귤 농사가", "감자 농사가")
    docs = _docs({"k1": KOREAN, "k2": respaced, "k3": rewritten}, "ko")
    assert run_filter(tmp_path, docs, threshold=0.8) == ["k1", "k3"]
    assert docs[1].metadata == {"language": "ko", "duplicate_of": "k1", "duplicate_similarity": 1.0}
