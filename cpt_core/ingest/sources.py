"""Where a run's documents come from: one typed list, ``ingest.sources``.

Each entry is one of four kinds, told apart by ``kind`` (a pydantic discriminated union):

- ``web``: seeds, sitemaps and feeds, crawled by ``cpt_core.ingest.crawl`` (its ``crawl`` section *is* a
  ``CrawlConfig``);
- ``demo``: the generated demo website, served on 127.0.0.1 during the run and then crawled like a web
  source (``site`` is a ``DemoSiteConfig``, ``crawl`` the crawl limits; the served URL is the seed);
- ``documents``: a folder or fsspec URL of internal files (PDF, DOCX, HTML, Markdown, text, transcripts);
- ``warc``: WARC/WARC.gz files or folders of them, local or any fsspec URL (Common Crawl paths included).

Several sources combine in one run. Web and demo sources share one crawl (one crawl state, one WARC folder):
their list fields (seeds, sitemaps, hosts, ...) are merged and every other crawl setting must agree, since
one crawler applies them. Documents and WARC sources are read by the extract stage beside the crawl's WARC
files, into the same ``documents/`` output.

Credentials for private sources never live in the YAML: a source names an environment variable
(``secret_env``) or a Prefect Secret block (``secret_block``) holding either a JSON object of fsspec storage
options (``{"key": ..., "secret": ...}`` for s3) or a bare token, sent as ``Authorization: Bearer`` to an
http(s) source. The value is resolved only where files are opened and is kept out of stage keys, manifests,
logs and datatrove's ``executor.json`` (:class:`HiddenOptions`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cpt_core.demo.site import DemoSiteConfig
from cpt_core.ingest.crawl import CrawlConfig

SecretLookup = Callable[[str], str]
_NAME = r"^[A-Za-z0-9_.-]+$"


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field("", pattern=r"^$|" + _NAME[1:], description="what documents record as their source")

    @model_validator(mode="after")
    def _default_name(self):
        if not self.name:
            self.name = self.kind  # type: ignore[attr-defined]
        return self


class WebSource(_Source):
    kind: Literal["web"] = "web"
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)


class DemoSource(_Source):
    kind: Literal["demo"] = "demo"
    site: DemoSiteConfig = Field(default_factory=DemoSiteConfig)
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    knowledge_graph: bool = Field(
        True, description="give the site's knowledge graph to the run; false: the run sees only the crawled pages "
        "(as with a real site), so synthesize makes its documents and auto probe from them",
    )

    @field_validator("crawl")
    @classmethod
    def _no_seeds(cls, crawl: CrawlConfig) -> CrawlConfig:
        if crawl.seed_urls or crawl.sitemaps:
            raise ValueError("a demo source's seed is the served site: leave crawl.seed_urls and sitemaps empty")
        return crawl

    def served_crawl(self, base_url: str) -> CrawlConfig:
        """The crawl of the site served at ``base_url``: ours, on loopback, so allowed past the private-address
        guard and crawled with no politeness delay."""
        return self.crawl.model_copy(
            update={"seed_urls": [base_url], "allow_private_hosts": ["127.0.0.1"], "delay_s": 0.0}
        )


class _StorageSource(_Source):
    """A source read through fsspec, possibly private."""

    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options that are not secret (endpoint_url, region, ...)"
    )
    secret_env: str | None = Field(None, description="environment variable holding the credentials")
    secret_block: str | None = Field(None, description="Prefect Secret block holding the credentials")

    @model_validator(mode="after")
    def _one_secret(self):
        if self.secret_env and self.secret_block:
            raise ValueError("give secret_env or secret_block, not both")
        return self

    def locations(self) -> list[str]:
        raise NotImplementedError


def _no_userinfo(url: str) -> str:
    if "://" in url and urlsplit(url).password:
        raise ValueError(
            f"{urlsplit(url).scheme}:// URL carries a password: put credentials in secret_env or secret_block"
        )
    return url


class DocumentsSource(_StorageSource):
    kind: Literal["documents"] = "documents"
    path: str = Field(..., min_length=1, description="folder or fsspec URL of internal documents")
    recursive: bool = True

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: str) -> str:
        # fsspec's http listing yields paths without the trailing slash that a folder URL often has
        return _no_userinfo(path.rstrip("/") if "://" in path else path)

    def locations(self) -> list[str]:
        return [self.path]


class WarcSource(_StorageSource):
    kind: Literal["warc"] = "warc"
    paths: list[str] = Field(..., min_length=1, description="WARC files or folders of them (any fsspec URL)")

    @field_validator("paths")
    @classmethod
    def _check_paths(cls, paths: list[str]) -> list[str]:
        return [_no_userinfo(p) for p in paths]

    def locations(self) -> list[str]:
        return list(self.paths)


Source = Annotated[WebSource | DemoSource | DocumentsSource | WarcSource, Field(discriminator="kind")]
StorageSource = DocumentsSource | WarcSource


# --------------------------------------------------------------------------------------------- crawl


def _seed_hosts(crawl: CrawlConfig) -> list[str]:
    hosts = [h.lower() for h in crawl.allowed_hosts]
    if not hosts:  # empty means "the seeds' hosts": made explicit, or merging would widen another source's
        hosts = [urlsplit(u).netloc.lower() for u in [*crawl.seed_urls, *crawl.sitemaps] if urlsplit(u).netloc]
    return list(dict.fromkeys(hosts))


def merge_crawls(crawls: list[CrawlConfig]) -> CrawlConfig | None:
    """One crawl for several web sources: list fields merged in order, every other setting must agree."""
    if not crawls:
        return None
    if len(crawls) == 1:
        return crawls[0]
    merged: dict[str, Any] = {}
    for field in CrawlConfig.model_fields:
        values = [getattr(c, field) for c in crawls]
        if field == "allowed_hosts":
            merged[field] = list(dict.fromkeys(h for c in crawls for h in _seed_hosts(c)))
        elif isinstance(values[0], list):
            merged[field] = list(dict.fromkeys(v for value in values for v in value))
        elif any(v != values[0] for v in values[1:]):
            raise ValueError(
                f"web sources share one crawler: crawl.{field} differs between them ({values}); make it equal"
            )
        else:
            merged[field] = values[0]
    return CrawlConfig.model_validate(merged)


def host_sources(sources: list) -> dict[str, str]:
    """``host[:port] -> source name`` for the crawled sources (first source wins a shared host)."""
    out: dict[str, str] = {}
    for source in sources:
        if isinstance(source, WebSource | DemoSource):
            for host in _seed_hosts(source.crawl):
                out.setdefault(host, source.name)
    return out


# --------------------------------------------------------------------------------------------- secrets


class HiddenOptions:
    """Storage options that may hold credentials: usable, picklable, never printed."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    def __repr__(self) -> str:
        return "<storage options hidden>"

    __str__ = __repr__


def _env_secret(name: str) -> str:
    if name not in os.environ:
        raise KeyError(f"environment variable {name} (secret_env) is not set")
    return os.environ[name]


def storage_options(source: StorageSource, secret_block: SecretLookup | None = None) -> HiddenOptions:
    """The source's fsspec options with its credentials resolved (environment or Prefect Secret block)."""
    options = dict(source.storage_options)
    if source.secret_env:
        secret, origin = _env_secret(source.secret_env), f"secret_env {source.secret_env}"
    elif source.secret_block:
        if secret_block is None:
            raise ValueError(
                f"source {source.name}: secret_block {source.secret_block} needs Prefect; "
                "run it through the flow or use secret_env"
            )
        secret, origin = secret_block(source.secret_block), f"secret_block {source.secret_block}"
    else:
        return HiddenOptions(options)
    secret = secret.strip()
    if secret.startswith("{"):
        try:
            parsed = json.loads(secret)
        except json.JSONDecodeError:
            raise ValueError(f"source {source.name}: {origin} is not a valid JSON object") from None
        return HiddenOptions({**options, **parsed})
    schemes = {urlsplit(loc).scheme for loc in source.locations()}
    if schemes <= {"http", "https"}:
        headers = {**options.get("headers", {}), "Authorization": f"Bearer {secret}"}
        return HiddenOptions({**options, "headers": headers})
    raise ValueError(
        f"source {source.name}: {origin} holds a bare token, which only http(s) sources can use; "
        'give a JSON object of storage options instead (for s3: {"key": ..., "secret": ...})'
    )
