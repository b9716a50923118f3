"""The demo's website: articles about a fictional, dated knowledge graph, plus noise for every filter.

``build_site`` assembles it, deterministic in the seed: the invented world and its facts (``world``), three
English and up to two Korean write-ups of each fact (``articles``), the noise a real crawl meets
(``noise``: duplicates, near-duplicates, boilerplate-only pages, spam, other languages, empty and non-HTML
responses, lying or missing charsets, a slow page, a dead link, an external link, a robots.txt-disallowed
page), then the section indexes, robots.txt and a sitemap. ``DemoSite.noise`` lists which path is which,
so a report can check that each was dropped for the right reason.

Trade-off: everything lives in memory (the whole site is ~0.2 MB) and is served by the standard library's
threading server (``server``), which is plenty for one crawler on localhost.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.data.knowledge_graph import Fact, save_facts
from cpt_core.demo.articles import add_english_articles, add_korean_articles
from cpt_core.demo.noise import add_noise
from cpt_core.demo.pages import BASE_PLACEHOLDER, EXTERNAL_URL, SITE_NAME, Page, index_html
from cpt_core.demo.world import Names, make_facts


class DemoSiteConfig(BaseModel):
    """The generated website a ``demo`` source serves on 127.0.0.1 for the run to crawl."""

    model_config = ConfigDict(extra="forbid")
    seed: int = 7
    n_facts: int = Field(60, ge=5)
    korean_share: float = Field(0.3, ge=0, le=1, description="share of facts also written up in Korean")
    port: int = Field(0, ge=0, le=65535, description="0: any free port")
    slow_delay_s: float = Field(3.0, ge=0, description="how long the slow page takes to answer")
    context_sentences: int = Field(
        3, ge=1, le=4, description="filler sentences around each fact in English articles (fewer: shorter pages)"
    )


@dataclass
class DemoSite:
    facts: list[Fact]
    pages: dict[str, Page]
    noise: dict[str, list[str]]
    article_paths: dict[str, list[str]]
    article_facts: dict[str, list[str]] = field(default_factory=dict)  # article path -> fact ids

    def write_knowledge_graph(self, path: Path) -> None:
        save_facts(self.facts, Path(path))


def build_site(cfg: DemoSiteConfig) -> DemoSite:
    """The whole site, deterministic in ``cfg.seed`` (no set iteration, no ``hash()``)."""
    rng = random.Random(cfg.seed)
    facts = make_facts(cfg.n_facts, rng, Names(rng))
    pages: dict[str, Page] = {}
    noise: dict[str, list[str]] = {}
    article_facts: dict[str, list[str]] = {}
    english = add_english_articles(pages, article_facts, facts, rng, cfg.context_sentences)
    n_ko = round(len(facts) * cfg.korean_share)
    korean = add_korean_articles(pages, article_facts, noise, facts[:n_ko], rng)
    en_paths, ko_paths = [p for p, _ in english], [p for p, _ in korean]
    add_noise(pages, noise, en_paths, len(english) + len(korean), rng, cfg.slow_delay_s)
    _add_indexes(pages, noise, english, korean)
    return DemoSite(facts=facts, pages=pages, noise=noise, article_paths={"en": en_paths, "ko": ko_paths},
                    article_facts=article_facts)


def _add_indexes(
    pages: dict[str, Page], noise: dict[str, list[str]], english: list[tuple[str, str]],
    korean: list[tuple[str, str]],
) -> None:
    """Section indexes (every page within three links of ``/``), robots.txt and the sitemap."""

    def title_of(path: str) -> str:
        return path.rsplit("/", 1)[-1] or path

    news = english + [(noise["slow"][0], "Live: storm updates"), (noise["broken_link"][0], "Archive 2025")]
    pages["/news/"] = Page(index_html("News", news).encode())
    pages["/ko/"] = Page(index_html("한국어 뉴스", korean).encode())
    pages["/world/"] = Page(index_html("World", [(p, title_of(p)) for p in noise["other_language"]]).encode())
    misc_kinds = ["exact_duplicate", "near_duplicate", "boilerplate", "spam", "empty", "non_html",
                  "robots_disallowed"]
    misc = [(p, f"{k}: {title_of(p)}") for k in misc_kinds for p in noise[k]]
    pages["/misc/"] = Page(index_html("More", misc + [(EXTERNAL_URL, "Partner site")]).encode())
    sections = [("/news/", "News"), ("/ko/", "Korean news"), ("/world/", "World"), ("/misc/", "More"),
                ("/sitemap.xml", "Sitemap")]
    pages["/"] = Page(index_html(SITE_NAME, sections).encode())
    robots = f"User-agent: *\nDisallow: /private/\n\nSitemap: {BASE_PLACEHOLDER}/sitemap.xml\n"
    pages["/robots.txt"] = Page(robots.encode(), "text/plain; charset=utf-8")
    locs = [p for p in pages if p.endswith((".html", "/")) and not p.startswith("/private/")]
    urls = "".join(f"<url><loc>{BASE_PLACEHOLDER}{p}</loc><lastmod>{pages[p].last_modified.date()}</lastmod></url>\n"
                   for p in locs)
    sitemap = ('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
               f"{urls}</urlset>\n")
    pages["/sitemap.xml"] = Page(sitemap.encode(), "application/xml")
