"""Quality heuristics (Gopher, C4 style) with per-language settings.

Algorithm: one datatrove filter step, ``QualityFilter``, reads each document's ``metadata["language"]``
(set by the language ID step) and runs, in order, datatrove's ``GopherQualityFilter`` (length, mean word
length, symbol/bullet/ellipsis ratios, alphabetic words, stop words), ``GopherRepetitionFilter`` (duplicate
lines/paragraphs and repeated n-grams: spam, keyword stuffing, navigation) and ``C4QualityFilter`` (C4's line
rules; note that it also *edits* the text, removing the lines it rejects, e.g. lines with fewer than
``c4_min_words_per_line`` words, "javascript" or cookie-policy lines). The first filter that rejects a
document names the drop reason, prefixed by the filter: ``gopher_short_doc``, ``gopher_dup_line_frac``,
``c4_too_few_sentences``.

Why per language: the Gopher thresholds were tuned on English. With datatrove's defaults every Korean
document fails (morphemes average < 3 characters; English stop words never occur), so ``QualityConfig.gopher``
maps a language code to its own thresholds and stop words (Korean: particles 은/는/이/가/...); a language
without an entry uses the ``en`` settings. Each datatrove filter also takes a ``language`` argument that picks
its word tokenizer (spaCy blank models for most languages, kiwipiepy morphemes for Korean), so filter
instances are built per language, lazily, on the first document of that language, and cached. A language
whose tokenizer cannot be loaded here (e.g. Japanese needs sudachipy) falls back to datatrove's generic
whitespace tokenizer, with a warning and a ``tokenizer_fallback_<lang>`` stat, rather than failing the run.

Kept documents then have their personal data redacted (``cpt_core.curate.pii``, config ``pii``): scoring
runs on the original text, and the counts per type are the stats ``pii_<type>`` and ``pii_documents``.
"""

from __future__ import annotations

import logging

from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.pipeline.writers.disk_base import DiskWriter
from pydantic import BaseModel, ConfigDict, Field

from cpt_core.curate.funnel import LanguageFunnelFilter
from cpt_core.curate.pii import PIIConfig, redact

logger = logging.getLogger(__name__)


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
            stop_words="은 는 이 가 을 를 에 의 도 와 과 로 으로 에서".split(),  # topic/case particles
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
    c4_min_num_sentences: int = Field(5, ge=0, description="C4: drop documents with fewer sentences (0: off)")
    default_language: str = Field(
        "en", description="language assumed for documents without metadata.language"
    )
    pii: PIIConfig = Field(default_factory=PIIConfig, description="redaction applied to kept documents")

    def gopher_settings(self, language: str) -> GopherSettings:
        return self.gopher.get(language) or self.gopher.get("en") or GopherSettings()


def _tokenizer_for(language: str):
    """The language code if datatrove has a working word tokenizer for it, else a generic whitespace one."""
    from datatrove.utils.word_tokenizers import WhitespaceTokenizer, load_word_tokenizer

    try:
        # Tokenizers import their backend lazily: tokenize once so a missing backend shows up here.
        load_word_tokenizer(language).word_tokenize("probe text")
        return language, None
    except Exception as err:  # noqa: BLE001 - any backend failure means "use the fallback"
        logger.warning(
            "no usable word tokenizer for language %r (%s); using whitespace tokenization", language, err
        )
        return WhitespaceTokenizer(), str(err)


class QualityFilter(LanguageFunnelFilter):
    """Gopher quality, Gopher repetition and C4 filters with settings chosen by ``metadata["language"]``."""

    name = "🥇 Quality (per language)"

    def __init__(self, config: QualityConfig, exclusion_writer: DiskWriter | None = None):
        super().__init__(exclusion_writer)
        self.config = config
        self._per_language: dict[str, list[tuple[str, BaseFilter]]] = {}

    def _build(self, language: str) -> list[tuple[str, BaseFilter]]:
        cfg = self.config
        tokenizer_language, fallback_error = _tokenizer_for(language)
        if fallback_error:
            self.stat_update(f"tokenizer_fallback_{language}")
        filters: list[tuple[str, BaseFilter]] = []
        if cfg.gopher_quality:
            settings = cfg.gopher_settings(language)
            # Gopher quality reasons already start with "gopher_".
            filters.append(("", GopherQualityFilter(**settings.model_dump(), language=tokenizer_language)))
        if cfg.gopher_repetition:
            filters.append(("gopher_", GopherRepetitionFilter(language=tokenizer_language)))
        if cfg.c4:
            filters.append(
                (
                    "c4_",
                    C4QualityFilter(
                        filter_no_terminal_punct=cfg.c4_filter_no_terminal_punct,
                        min_words_per_line=cfg.c4_min_words_per_line,
                        min_num_sentences=cfg.c4_min_num_sentences or -1,
                        language=tokenizer_language,
                    ),
                )
            )
        for _, inner in filters:
            inner.stats = self.stats  # the inner filters' own counters (C4's per-line stats) land in ours
        return filters

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if not doc.text.strip():
            # Gopher's ratios divide by the text length: an empty document cannot be scored, only dropped.
            return False, "quality_empty_text"
        language = doc.metadata.get("language") or self.config.default_language
        filters = self._per_language.get(language)
        if filters is None:
            filters = self._per_language[language] = self._build(language)
        for prefix, inner in filters:
            keep, reason = get_filter_result(inner.filter(doc))
            if not keep:
                return False, f"{prefix}{reason or type(inner).__name__}"
        if self.config.pii.enabled:
            doc.text, found = redact(doc.text, self.config.pii)
            for kind, count in found.items():
                self.stat_update(f"pii_{kind}", value=count)
            if found:
                self.stat_update("pii_documents")
        return True
