"""One run config, composed from the configs each module owns.

``RunConfig`` is loaded from a YAML recipe (``configs/*.yaml``), optionally overridden per field with
dotted keys (``train.lr=3e-4``), and is the very model the Prefect flows take as their parameter, so a
``prefect deployment run --param`` is validated the same way. Every model forbids unknown keys: a misspelt
key or a bad value fails before any work, with the file and the dotted field path in the message.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cpt_core.curate.pipeline import CurateConfig
from cpt_core.data.tokenize import TokenizeConfig
from cpt_core.evaluate.gate import PromoteConfig
from cpt_core.evaluate.stage import EvalConfig
from cpt_core.faults import RetryConfig
from cpt_core.ingest.crawl import CrawlConfig
from cpt_core.ingest.extract import ExtractConfig
from cpt_core.ingest.sources import DemoSource, Source, WebSource, merge_crawls
from cpt_core.storage import check_storage_options
from cpt_core.synthesize.stage import SynthesizeConfig
from cpt_core.train.base_model import BaseModelConfig
from cpt_core.train.config import ModelConfig, TrainConfig


class IngestConfig(BaseModel):
    """The run's sources (web, demo, documents, warc: several may combine) and how text is extracted."""

    model_config = ConfigDict(extra="forbid")
    sources: list[Source] = Field(default_factory=list, description="where documents come from")
    extract: ExtractConfig = Field(default_factory=ExtractConfig)

    @model_validator(mode="after")
    def _check_sources(self) -> IngestConfig:
        names = [s.name for s in self.sources]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"source names must differ (set `name`): {', '.join(duplicates)} repeated")
        if sum(isinstance(s, DemoSource) for s in self.sources) > 1:
            raise ValueError("at most one demo source")
        self.crawl  # noqa: B018 (web sources that cannot share one crawler fail here, at load time)
        return self

    @property
    def crawl(self) -> CrawlConfig | None:
        """The one crawl of the web and demo sources (None when the run crawls nothing)."""
        return merge_crawls([s.crawl for s in self.sources if isinstance(s, WebSource | DemoSource)])

    @property
    def demo(self) -> DemoSource | None:
        return next((s for s in self.sources if isinstance(s, DemoSource)), None)


class RunConfig(BaseModel):
    """Everything one knowledge-refresh run needs."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("cpt", pattern=r"^[A-Za-z0-9_.-]+$")
    root: str = Field("cptflow-data", description="folder or fsspec URL (s3://bucket/prefix) holding runs/ and state/")
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec options for a URL root (endpoint_url, client_kwargs, ...); credentials come from "
        "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE), never from here",
    )
    cache_dir: str | None = Field(
        None, description="local mirror of a URL root; default ~/.cache/cptflow/<hash of root>"
    )
    run_id: str | None = Field(None, description="resume this run; default: a new UTC timestamp")
    knowledge_graph: str | None = Field(
        None, description="JSONL of dated facts, for synthetic QA lines and the fact probe"
    )
    base_model: BaseModelConfig = Field(default_factory=BaseModelConfig)
    model: ModelConfig = Field(default_factory=ModelConfig, description="surgery and tokenizer extension")
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
    synthesize: SynthesizeConfig = Field(default_factory=SynthesizeConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvalConfig = Field(default_factory=EvalConfig)
    promote: PromoteConfig = Field(default_factory=PromoteConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig, description="stage retries after transient errors")

    @model_validator(mode="after")
    def _check_storage(self) -> RunConfig:
        check_storage_options(self.storage_options)
        return self

    def with_run_id(self) -> RunConfig:
        """A copy whose ``run_id`` is set (a new timestamp when it was not)."""
        if self.run_id:
            return self
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        return self.model_copy(update={"run_id": f"{self.name}-{stamp}"})


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the field."""


def _format_validation(err: ValidationError, source: str) -> str:
    lines = [f"invalid config in {source}:"]
    for item in err.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(top level)"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown field (misspelt?)"
        value = item.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {field}: {msg}{shown}")
    return "\n".join(lines)


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like field.path=value")
    key, raw = text.split("=", 1)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|[0-9]+))*", key):
        raise ConfigError(f"override {text!r}: {key!r} is not a dotted field path")
    return key.split("."), yaml.safe_load(raw) if raw != "" else None


def _step(node: Any, part: str, text: str, last: bool) -> Any:
    """The child ``part`` of ``node`` (a list index for lists, made as a section for mappings)."""
    if isinstance(node, list):
        if not part.isdigit() or int(part) >= len(node):
            raise ConfigError(f"override {text!r}: {part!r} is not an index of a {len(node)}-item list")
        return node[int(part)]
    if not isinstance(node, dict):
        raise ConfigError(f"override {text!r}: {part!r} is not inside a section")
    return node.get(part) if last else node.setdefault(part, {})


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``field.path=value`` overrides; numeric parts index lists (``ingest.sources.0.site.port=0``)."""
    for text in overrides:
        path, value = _parse_override(text)
        node: Any = data
        for part in path[:-1]:
            node = _step(node, part, text, last=False)
        if isinstance(node, list):
            _step(node, path[-1], text, last=True)  # checks the index
            node[int(path[-1])] = value
        elif isinstance(node, dict):
            node[path[-1]] = value
        else:
            raise ConfigError(f"override {text!r}: {path[-2]!r} is not a section")
    return data


def validate_config(data: dict, source: str = "<parameters>") -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML recipe, apply ``field.path=value`` overrides, validate."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    data = apply_overrides(data, overrides or [])
    return validate_config(data, str(path))
