"""Quality heuristics (Gopher, C4 style) with per-language settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GopherSettings(BaseModel):
    """datatrove GopherQualityFilter thresholds for one language."""

    model_config = ConfigDict(extra="forbid")
    min_doc_words: int = 50
    max_doc_words: int = 100_000
    min_avg_word_length: float = 3
    max_avg_word_length: float = 10
    max_symbol_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    max_non_alpha_words_ratio: float = 0.8
    min_stop_words: int = 2
    stop_words: list[str] | None = Field(None, description="None: datatrove's English stop words")


def _default_gopher() -> dict[str, GopherSettings]:
    return {
        "en": GopherSettings(),
        "ko": GopherSettings(
            min_doc_words=30,
            min_avg_word_length=1,
            max_avg_word_length=8,
            stop_words=["은", "는", "이", "가", "을", "를", "에", "의", "도", "와", "과", "로", "으로", "에서"],
        ),
    }


class QualityConfig(BaseModel):
    """Which quality filters run, and their thresholds per language (keys: ISO 639-1 codes)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    gopher_quality: bool = True
    gopher_repetition: bool = True
    c4: bool = True
    gopher: dict[str, GopherSettings] = Field(default_factory=_default_gopher)
    c4_min_words_per_line: int = Field(3, ge=0, description="C4 line filter (space-separated words)")
    c4_filter_no_terminal_punct: bool = False
