"""The curation steps chained as stages: summaries, manifests, skipping, disabled steps, config errors."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from cpt_core.curate.pipeline import STEPS, CurateConfig, run_curate_step
from cpt_core.stage import MANIFEST

EN = [
    "The old harbour town sits at the mouth of a wide river, and its market square is busy every morning. "
    "Farmers bring fresh vegetables from the hills, and the bakers open their shops well before sunrise. "
    "Visitors like to walk along the stone bridge to watch the fishing boats come back with their catch. "
    "In the evening the cafes fill with families who come to enjoy the cool air from the sea. "
    "The small museum near the church tells the story of the region and of the people who built it.",
    "The city library was built a hundred years ago with money raised by the people of the town. "
    "Its reading room has tall windows, long oak tables and green lamps that stay on until late at night. "
    "Students prepare for their exams there, and retired teachers come to read the morning newspapers. "
    "Every spring the library holds a book sale to pay for new books for the children of the town. "
    "Volunteers sort the donated books and the money goes to the reading programme for the schools.",
]
KO = (
    "김치는 배추나 무를 소금에 절인 뒤 고춧가루와 마늘로 양념하여 발효시킨 음식이다. 겨울을 나기 위해 늦가을에 "
    "김치를 한꺼번에 담그는 풍습을 김장이라고 한다. 김장은 이웃과 가족이 함께 모여 음식을 나누는 전통이다. "
    "이 문화는 유네스코 인류무형문화유산에 등재되었다. 김치는 지역과 계절에 따라 종류가 매우 다양하다."
)
DOCS = [
    {"id": "en-0", "text": EN[0]},
    {"id": "de", "text": "Die Hauptstadt von Deutschland ist Berlin. Sie ist die größte Stadt des Landes."},
    {"id": "ko", "text": KO},
    {"id": "en-1", "text": EN[1]},
    {
        "id": "spam",
        "text": "\n".join(
            [
                "Buy cheap designer watches online today and get the best price with free shipping to your door."
            ]
            * 10
        ),
    },
    {"id": "en-0-copy", "text": EN[0].lower()},
    {"id": "en-1-near", "text": EN[1].replace("tall", "high") + " Read more stories like this one."},
]


def write_docs(folder: Path, docs: list[dict]) -> Path:
    (folder / "documents").mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "documents" / "00000.jsonl.gz", "wt", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps({"metadata": {"url": f"https://example.org/{doc['id']}"}, **doc}) + "\n")
    return folder


def read_ids(folder: Path) -> list[str]:
    ids = []
    for path in sorted(folder.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            ids.extend(json.loads(line)["id"] for line in fh)
    return ids


def run_all(tmp: Path, cfg: CurateConfig, source: Path, progress=None) -> dict:
    manifests, current = {}, source
    for step in STEPS:
        kwargs = {"progress": progress} if progress else {}
        manifests[step] = run_curate_step(
            step, cfg, current, tmp / "curate" / step, tmp / "state", "run-1", **kwargs
        )
        current = tmp / "curate" / step
    return manifests


def test_all_steps_chain_with_named_reasons(tmp_path):
    source = write_docs(tmp_path / "extract", DOCS)
    cfg = CurateConfig.model_validate({"language": {"languages": ["en", "ko"]}})
    calls = []
    manifests = run_all(
        tmp_path, cfg, source, progress=lambda done, total, msg: calls.append((done, total, msg))
    )

    summaries = {step: m["summary"] for step, m in manifests.items()}
    assert summaries["language"]["dropped"] == {"language_other": 1}
    assert summaries["quality"]["dropped"] == {"gopher_dup_line_frac": 1}
    assert summaries["exact_dedup"]["dropped"] == {"exact_duplicate": 1}
    assert summaries["near_dedup"]["dropped"] == {"near_duplicate": 1}
    for summary in summaries.values():
        assert summary["docs_in"] == summary["docs_out"] + sum(summary["dropped"].values())
        assert summary["docs_per_s"] > 0
        assert f"{summary['docs_in']} docs in" in summary["log_line"]
    assert summaries["language"]["docs_in"] == len(DOCS)
    assert summaries["near_dedup"]["languages"] == {"en": 2, "ko": 1}
    assert read_ids(tmp_path / "curate" / "near_dedup" / "documents") == ["en-0", "ko", "en-1"]
    assert all((tmp_path / "curate" / step / MANIFEST).is_file() for step in STEPS)
    assert any("curate/near_dedup" in msg for _, _, msg in calls)

    again = run_all(tmp_path, cfg, source)
    assert all(m["skipped"] for m in again.values())


def test_disabled_step_passes_documents_through(tmp_path):
    source = write_docs(tmp_path / "extract", DOCS)
    cfg = CurateConfig.model_validate({"quality": {"enabled": False}})
    out = tmp_path / "quality"
    manifest = run_curate_step("quality", cfg, source, out, tmp_path / "state", "run-1")
    summary = manifest["summary"]
    assert summary["enabled"] is False and "disabled" in summary["log_line"]
    assert summary["docs_in"] == summary["docs_out"] == len(DOCS) and summary["dropped"] == {}
    assert (out / "documents" / "00000.jsonl.gz").read_bytes() == (
        source / "documents" / "00000.jsonl.gz"
    ).read_bytes()
    assert (out / MANIFEST).is_file()


def test_changing_a_step_config_redoes_the_step(tmp_path):
    source = write_docs(tmp_path / "extract", DOCS[:3])
    first = run_curate_step("language", CurateConfig(), source, tmp_path / "lang", tmp_path / "state", "r")
    assert first["summary"]["docs_out"] == 1
    cfg = CurateConfig.model_validate({"language": {"languages": ["en", "de", "ko"]}})
    second = run_curate_step("language", cfg, source, tmp_path / "lang", tmp_path / "state", "r")
    assert not second["skipped"] and second["summary"]["docs_out"] == 3


def test_steps_after_everything_was_dropped_give_empty_outputs(tmp_path):
    source = write_docs(tmp_path / "extract", DOCS)
    cfg = CurateConfig.model_validate({"language": {"languages": ["fr"]}})
    manifests = run_all(tmp_path, cfg, source)
    assert manifests["language"]["summary"]["docs_out"] == 0
    for step in STEPS[1:]:
        assert manifests[step]["summary"]["docs_in"] == manifests[step]["summary"]["docs_out"] == 0
        assert (tmp_path / "curate" / step / "documents").is_dir()
    assert (tmp_path / "curate" / "near_dedup" / "index" / "minhash.npz").is_file()


def test_bad_step_and_missing_input_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown curation step 'dedup'"):
        run_curate_step("dedup", CurateConfig(), tmp_path, tmp_path / "out", tmp_path / "state", "r")
    with pytest.raises(FileNotFoundError, match="extract"):
        run_curate_step(
            "language", CurateConfig(), tmp_path / "extract", tmp_path / "out", tmp_path / "state", "r"
        )


def test_config_rejects_unknown_keys():
    with pytest.raises(ValidationError, match="gopher_qualty"):
        CurateConfig.model_validate({"quality": {"gopher_qualty": False}})
    with pytest.raises(ValidationError, match="dedupe"):
        CurateConfig.model_validate({"dedupe": {}})


def test_malformed_lines_and_a_corrupt_gzip_are_named_drops(tmp_path):
    source = tmp_path / "extract"
    docs = source / "documents"
    docs.mkdir(parents=True)
    good = [json.dumps({"id": f"en-{i}", "text": EN[i]}) for i in range(2)]
    (docs / "00000.jsonl").write_text(
        "\n".join([good[0], '{"id": "cut", "text": "half a li', good[1], '{"id": "no-text"}']) + "\n"
    )
    rows = [
        json.dumps({"id": f"gz-{i}", "text": f"{EN[i % 2]} {hashlib.sha256(str(i).encode()).hexdigest()}"})
        for i in range(200)
    ]
    whole = gzip.compress("".join(row + "\n" for row in rows).encode())
    (docs / "00001.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])  # cut off mid-stream
    (docs / "00002.jsonl.gz").write_bytes(b"this is not gzip at all\n")

    cfg = CurateConfig.model_validate({"language": {"languages": ["en"]}})
    summary = run_curate_step("language", cfg, source, tmp_path / "lang", tmp_path / "state", "r")["summary"]

    assert summary["dropped"]["malformed_json"] == 1
    assert summary["dropped"]["no_text"] == 1
    assert summary["dropped"]["corrupt_file"] == 2
    assert summary["docs_in"] == summary["docs_out"] + sum(summary["dropped"].values())
    kept = read_ids(tmp_path / "lang" / "documents")
    assert {"en-0", "en-1", "gz-0", "gz-1"} <= set(kept)  # the lines before the damage are kept
    assert not any(i.startswith("gz-199") for i in kept)
    places = "\n".join(summary["unreadable"])
    assert f"{docs / '00000.jsonl'}:2 malformed_json" in places
    assert f"{docs / '00000.jsonl'}:4 no_text" in places
    assert "00001.jsonl.gz" in places and "00002.jsonl.gz:1 corrupt_file" in places
