"""Per-language Gopher/C4 quality filtering: Korean passes with its settings, spam and symbol pages do not."""

from __future__ import annotations

import gzip
import json

import pytest
from datatrove.data import Document
from datatrove.pipeline.filters import GopherQualityFilter
from pydantic import ValidationError

from cpt_core.curate.pipeline import CurateConfig, run_curate_step
from cpt_core.curate.quality import GopherSettings, QualityConfig, QualityFilter

KO_ARTICLES = [
    "서울은 대한민국의 수도이며 가장 큰 도시이다. 한강이 도시의 가운데를 흐르고, 북쪽과 남쪽을 여러 개의 다리가 "
    "연결한다. 조선 시대부터 나라의 중심이었으며 지금은 정치와 경제, 문화의 중심지이다. 서울에는 약 천만 명의 "
    "사람들이 살고 있다. 경복궁과 창덕궁 같은 오래된 궁궐이 남아 있어 많은 관광객이 찾는다.",
    "김치는 배추나 무를 소금에 절인 뒤 고춧가루와 마늘로 양념하여 발효시킨 음식이다. 겨울을 나기 위해 늦가을에 "
    "김치를 한꺼번에 담그는 풍습을 김장이라고 한다. 김장은 이웃과 가족이 함께 모여 음식을 나누는 전통이다. "
    "이 문화는 유네스코 인류무형문화유산에 등재되었다. 김치는 지역과 계절에 따라 종류가 매우 다양하다.",
    "제주도는 한반도 남쪽 바다에 있는 가장 큰 섬이다. 섬의 한가운데에는 남한에서 가장 높은 한라산이 있다. "
    "화산 활동으로 만들어진 섬이라서 용암 동굴과 오름이 곳곳에 있다. 따뜻한 기후 덕분에 귤 농사가 발달하였다. "
    "해녀들이 바다에 들어가 전복과 소라를 채취하는 전통도 이어지고 있다.",
]

EN_ARTICLE = (
    "The old harbour town sits at the mouth of a wide river, and its market square is busy every morning. "
    "Farmers bring fresh vegetables from the hills, and the bakers open their shops well before sunrise. "
    "Visitors like to walk along the stone bridge to watch the fishing boats come back with their catch. "
    "In the evening the cafes fill with families who come to enjoy the cool air from the sea. "
    "The town council has kept the historic buildings in good condition for many years, and the small "
    "museum near the church tells the story of the region and of the people who built it."
)

# Each line would pass on its own; together they are a page that says one thing ten times.
SPAM_LINES = "\n".join(
    ["Buy cheap designer watches online today and get the best price with free shipping to your door."] * 10
)
# Keyword stuffing: few repeated lines, but one phrase makes up most of the text.
STUFFING = " ".join(["best cheap watches"] * 40) + (
    " We sell the best cheap watches in the world and the prices are always low. "
    "Order now and have them delivered to your home. Many customers are happy with the service. "
    "The shop is open every day of the week. Call us to ask about the best cheap watches."
)
# A hashtag page: real words, but a '#' for every few of them.
SYMBOLS = "\n".join(
    f"Day {i} of the trip with the family and the dog #travel #mountains #summer{i} #photography #nature"
    for i in range(12)
)


def ko(text: str, lang: str = "ko") -> Document:
    return Document(id="doc", text=text, metadata={"language": lang})


def test_korean_articles_pass_korean_settings_but_not_datatrove_defaults():
    korean = QualityFilter(QualityConfig())
    english_defaults = GopherQualityFilter()
    for text in KO_ARTICLES:
        assert 35 <= len(text.split()) <= 60
        assert korean.filter(ko(text)) is True
        keep, reason = english_defaults.filter(Document(id="doc", text=text))
        assert keep is False and reason.startswith("gopher_")


def test_language_without_settings_uses_english_settings():
    only_en = QualityFilter(QualityConfig(gopher={"en": GopherSettings()}))
    keep, reason = only_en.filter(ko(KO_ARTICLES[0]))
    assert keep is False and reason.startswith("gopher_")


def test_english_article_kept():
    assert QualityFilter(QualityConfig()).filter(ko(EN_ARTICLE, "en")) is True


@pytest.mark.parametrize(
    ("text", "reasons"),
    [
        (SPAM_LINES, {"gopher_dup_line_frac", "gopher_dup_para_frac", "gopher_dup_line_char_frac"}),
        (STUFFING, {"gopher_top_2_gram", "gopher_top_3_gram", "gopher_top_4_gram"}),
        (SYMBOLS, {"gopher_too_many_hashes", "gopher_too_many_ellipsis", "gopher_below_alpha_threshold"}),
    ],
    ids=["repeated-lines", "keyword-stuffing", "symbols"],
)
def test_spam_and_symbol_pages_dropped_with_gopher_reasons(text, reasons):
    keep, reason = QualityFilter(QualityConfig()).filter(ko(text, "en"))
    assert keep is False
    assert reason in reasons


def test_each_filter_can_be_switched_off():
    assert QualityFilter(QualityConfig(gopher_repetition=False)).filter(ko(SPAM_LINES, "en")) is True
    # Two sentences: enough words for these Gopher settings, too few sentences for C4 (5).
    short_ko = (
        "부산은 한국에서 두 번째로 큰 도시이며 바다와 가까워 여름마다 해수욕장을 찾는 사람이 많다. "
        "자갈치 시장에서는 싱싱한 생선을 살 수 있고 국제 영화제도 해마다 열린다."
    )
    settings = QualityConfig(
        gopher={
            "ko": GopherSettings(min_doc_words=5, min_avg_word_length=1, min_stop_words=1, stop_words=["은"])
        }
    )
    assert QualityFilter(settings).filter(ko(short_ko)) == (False, "c4_too_few_sentences")
    assert QualityFilter(settings.model_copy(update={"c4": False})).filter(ko(short_ko)) is True
    symbols_without_gopher = QualityConfig(gopher_quality=False, gopher_repetition=False, c4=False)
    assert QualityFilter(symbols_without_gopher).filter(ko(SYMBOLS, "en")) is True


def test_c4_reason_is_prefixed():
    keep, reason = QualityFilter(QualityConfig()).filter(
        ko(EN_ARTICLE + " Lorem ipsum dolor sit amet.", "en")
    )
    assert (keep, reason) == (False, "c4_lorem_ipsum")


def test_empty_text_is_a_counted_drop():
    assert QualityFilter(QualityConfig()).filter(ko("  \n ", "en")) == (False, "quality_empty_text")


def test_quality_step_dispatches_per_language(tmp_path):
    docs = [
        {"id": f"ko{i}", "text": t, "metadata": {"language": "ko"}} for i, t in enumerate(KO_ARTICLES)
    ] + [
        {"id": "en", "text": EN_ARTICLE, "metadata": {"language": "en"}},
        {"id": "spam", "text": SPAM_LINES, "metadata": {"language": "en"}},
        {"id": "symbols", "text": SYMBOLS, "metadata": {"language": "en"}},
    ]
    (tmp_path / "in" / "documents").mkdir(parents=True)
    with gzip.open(tmp_path / "in" / "documents" / "00000.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    out = tmp_path / "quality"
    summary = run_curate_step("quality", CurateConfig(), tmp_path / "in", out, tmp_path / "state", "r")[
        "summary"
    ]
    assert summary["docs_in"] == 6 and summary["docs_out"] == 4
    assert summary["languages"] == {"en": 1, "ko": 3}
    assert sum(summary["dropped"].values()) == 2
    assert all(reason.startswith("gopher_") for reason in summary["dropped"])
    with gzip.open(out / "dropped" / "00000.jsonl.gz", "rt", encoding="utf-8") as fh:
        dropped = [json.loads(line) for line in fh]
    assert {d["id"] for d in dropped} == {"spam", "symbols"}
    assert all(d["metadata"]["filter_reason"].startswith("gopher_") for d in dropped)


def test_config_rejects_unknown_keys():
    with pytest.raises(ValidationError, match="min_doc_word"):
        QualityConfig.model_validate({"gopher": {"ko": {"min_doc_word": 3}}})
    with pytest.raises(ValidationError, match="c4_filter"):
        QualityConfig.model_validate({"c4_filter": True})
