"""Per-language funnel of each curation step and the profile of the accepted corpus, on crafted documents."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from cpt_core.curate.pipeline import STEPS, CurateConfig, run_curate_step
from cpt_core.curate.profile import Profile, length_bucket, score_bucket
from tests.curate.test_pipeline import EN, KO

KO_SPAM = "\n".join(
    ["오늘만 특가 할인 행사가 진행 중입니다 지금 바로 구매하세요 무료 배송 혜택도 드립니다"] * 10
)
DOCS = [
    {"id": "en-0", "text": EN[0], "metadata": {"url": "https://news.example.org/a", "published_at": "2024-03-05"}},
    {"id": "de", "text": "Die Hauptstadt von Deutschland ist Berlin. Sie ist die größte Stadt des Landes.",
     "metadata": {"url": "https://de.example.org/"}},
    {"id": "ko", "text": KO, "metadata": {"url": "https://ko.example.kr/kimchi"}},
    {"id": "ko-spam", "text": KO_SPAM, "metadata": {"url": "https://ko.example.kr/deal"}},
    {"id": "en-1", "text": EN[1],
     "metadata": {"url": "https://News.Example.org/b", "fetched_at": "2024-04-01T10:00:00Z"}},
    {"id": "en-0-copy", "text": EN[0], "metadata": {"url": "https://mirror.example.net/a"}},
]  # fmt: skip


def write_input(folder: Path) -> Path:
    (folder / "documents").mkdir(parents=True)
    with gzip.open(folder / "documents" / "00000.jsonl.gz", "wt", encoding="utf-8") as fh:
        for doc in DOCS:
            fh.write(json.dumps(doc) + "\n")
        fh.write("{not json\n")
    return folder


def run_all(tmp: Path, cfg: CurateConfig) -> dict:
    manifests, current = {}, write_input(tmp / "extract")
    for step in STEPS:
        manifests[step] = run_curate_step(step, cfg, current, tmp / step, tmp / "state", "run-1")
        current = tmp / step
    return manifests


def kept(n: int) -> dict:
    return {"in": n, "out": n, "dropped": {}}


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    cfg = CurateConfig.model_validate({"language": {"languages": ["en", "ko"]}})
    return run_all(tmp_path_factory.mktemp("funnel"), cfg)


def test_each_step_counts_in_out_and_drops_per_language(manifests):
    funnel = {step: m["summary"]["by_language"] for step, m in manifests.items()}
    assert funnel["language"] == {
        "de": {"in": 1, "out": 0, "dropped": {"language_other": 1}},
        "en": kept(3),
        "ko": kept(2),
        "unknown": {"in": 1, "out": 0, "dropped": {"malformed_json": 1}},  # the unreadable line
    }
    # the Korean advert, one line repeated
    assert funnel["quality"] == {
        "en": kept(3),
        "ko": {"in": 2, "out": 1, "dropped": {"gopher_dup_line_frac": 1}},
    }
    assert funnel["select"] == {"en": kept(3), "ko": kept(1)}
    assert funnel["exact_dedup"] == {
        "en": {"in": 3, "out": 2, "dropped": {"exact_duplicate": 1}},
        "ko": kept(1),
    }
    assert funnel["near_dedup"] == funnel["decontaminate"] == {"en": kept(2), "ko": kept(1)}
    for step, m in manifests.items():  # the per-language counts add up to the step's totals
        summary = m["summary"]
        assert sum(r["in"] for r in funnel[step].values()) == summary["docs_in"], step
        assert sum(r["out"] for r in funnel[step].values()) == summary["docs_out"], step
        assert {lang: r["out"] for lang, r in funnel[step].items() if r["out"]} == summary["languages"], step


def test_the_last_step_profiles_the_accepted_corpus(manifests):
    assert all("profile" not in m["summary"] for step, m in manifests.items() if step != STEPS[-1])
    profile = manifests[STEPS[-1]]["summary"]["profile"]
    chars = len(EN[0]) + len(EN[1]) + len(KO)
    assert (profile["documents"], profile["characters"], profile["hosts"]) == (3, chars, 2)
    assert profile["by_host"] == [
        {
            "bucket": "news.example.org",
            "docs": 2,
            "chars": len(EN[0]) + len(EN[1]),
        },  # host names are lowercased
        {"bucket": "ko.example.kr", "docs": 1, "chars": len(KO)},
    ]
    assert [(r["bucket"], r["docs"]) for r in profile["by_month"]] == [
        ("2024-03", 1),
        ("2024-04", 1),
        ("undated", 1),
    ]
    assert [(r["bucket"], r["docs"]) for r in profile["by_language"]] == [("en", 2), ("ko", 1)]
    assert [(r["bucket"], r["docs"]) for r in profile["by_length"]] == [("<500", 3)]
    assert profile["by_domain_score"] == []  # the domain classifier is off


def test_a_disabled_last_step_still_profiles_and_counts(tmp_path):
    cfg = CurateConfig.model_validate({"decontaminate": {"enabled": False}})
    source = tmp_path / "in"
    (source / "documents").mkdir(parents=True)
    with gzip.open(source / "documents" / "00000.jsonl.gz", "wt", encoding="utf-8") as fh:
        for i, lang in enumerate(["en", "en", "ko"]):
            fh.write(json.dumps({"id": str(i), "text": "x" * 600, "metadata": {"language": lang}}) + "\n")
    summary = run_curate_step("decontaminate", cfg, source, tmp_path / "out", tmp_path / "state", "r")[
        "summary"
    ]
    assert summary["by_language"] == {"en": kept(2), "ko": kept(1)}
    assert summary["profile"]["by_host"] == [{"bucket": "(no url)", "docs": 3, "chars": 1800}]
    assert summary["profile"]["by_length"] == [{"bucket": "500-2k", "docs": 3, "chars": 1800}]


def test_two_executor_tasks_give_the_same_funnel_and_profile(tmp_path, manifests):
    cfg = CurateConfig.model_validate({"language": {"languages": ["en", "ko"]}, "executor": {"tasks": 2}})
    source = write_input(tmp_path / "extract")
    for step in ("language", "quality"):
        manifest = run_curate_step(step, cfg, source, tmp_path / step, tmp_path / "state", "run-2")
        assert manifest["summary"]["by_language"] == manifests[step]["summary"]["by_language"]
        source = tmp_path / step


def test_profile_buckets():
    profile = Profile()
    rows = [
        ("a" * 10, {"url": "https://a.org/1", "published_at": "2023-12-31", "fetched_at": "2024-02-01"}),
        (
            "b" * 499,
            {"url": "https://a.org/2", "published_at": "not a date", "fetched_at": "2024-02-01T00:00:00Z"},
        ),
        ("c" * 500, {"url": "https://b.org/", "language": "ko", "domain_score": 0.95}),
        ("d" * 2_000, {"url": "https://c.org/", "domain_score": 1.0}),
        ("e" * 60_000, {"domain_score": 0.05}),
    ]
    for text, metadata in rows:
        profile.add(text, metadata)
    summary = profile.summary(top_hosts=1)
    assert summary["hosts"] == 4 and summary["documents"] == 5
    assert summary["by_host"] == [
        {"bucket": "a.org", "docs": 2, "chars": 509},
        {"bucket": "other", "docs": 3, "chars": 62_500},
    ]
    months = [(r["bucket"], r["docs"]) for r in summary["by_month"]]
    assert months == [("2023-12", 1), ("2024-02", 1), ("undated", 3)]  # an unreadable date falls back
    lengths = [(r["bucket"], r["docs"]) for r in summary["by_length"]]
    assert lengths == [("<500", 2), ("500-2k", 1), ("2k-10k", 1), (">=50k", 1)]
    scores = [(r["bucket"], r["docs"]) for r in summary["by_domain_score"]]
    assert scores == [("0.0-0.1", 1), ("0.9-1.0", 2)]
    assert [(r["bucket"], r["docs"]) for r in summary["by_language"]] == [("unknown", 4), ("ko", 1)]
    assert length_bucket(0) == "<500" and score_bucket(None) is None and score_bucket(float("nan")) is None
