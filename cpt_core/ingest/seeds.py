"""Where a crawl starts: configured seed URLs, sitemaps (configured or named by robots.txt) and feeds.

Sitemaps are read breadth-first: the configured ones, then those the seed hosts' robots.txt lists in
``Sitemap:`` lines (when ``robots_sitemaps``); a sitemap index queues its children (``.gz`` ones included),
up to ``max_sitemaps`` files in all. Each sitemap and feed is fetched through the crawl's fetcher, so the
address guard, politeness and byte caps apply to them too. Page URLs come out in a fixed order (seeds, then
sitemap pages in sitemap order, then feed entries), whatever order the fetches finished in; what each
sitemap or feed gave is kept for the crawl summary, and each sitemap page's ``<lastmod>`` for the recrawl policy.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from cpt_core.ingest.fetch import XML_TYPES, Fetcher
from cpt_core.ingest.urls import feed_links, host_keys, normalise_url, sitemap_lastmods, sitemap_locs


class SeedSettings(Protocol):
    """The crawl settings seeds come from (``CrawlConfig`` has them)."""

    seed_urls: list[str]
    sitemaps: list[str]
    feeds: list[str]
    robots_sitemaps: bool
    respect_robots: bool
    max_sitemaps: int


logger = logging.getLogger(__name__)


class SeedFinder:
    def __init__(self, fetcher: Fetcher, cfg: SeedSettings) -> None:
        self.fetcher = fetcher
        self.cfg = cfg
        self.sitemaps: dict[str, str] = {}
        self.feeds: dict[str, str] = {}
        self.lastmods: dict[str, str] = {}  # page URL -> its sitemap <lastmod>
        self.invalid: list[tuple[str, str]] = []  # (raw URL, where it was found)

    async def seeds(self) -> list[str]:
        pages = self._valid(self.cfg.seed_urls, "seed_urls")
        sitemaps = list(self.cfg.sitemaps)
        if self.cfg.robots_sitemaps and self.cfg.respect_robots:
            hosts: dict[str, str] = {}
            for url in pages:
                hosts.setdefault(host_keys(url)[1], url)
            for rules in await asyncio.gather(*(self.fetcher.robots.rules(u) for u in hosts.values())):
                sitemaps.extend(rules.sitemaps)
        pages += await self._read_sitemaps(sitemaps)
        for feed, links in zip(
            self.cfg.feeds, await asyncio.gather(*(self._feed(f) for f in self.cfg.feeds)), strict=True
        ):
            pages += self._valid(links, f"feed {feed}")
        return pages

    def _valid(self, raws: list[str], where: str, base: str | None = None) -> list[str]:
        urls = []
        for raw in raws:
            url = normalise_url(raw, base)
            if url is None:
                self.invalid.append((raw, where))
            else:
                urls.append(url)
        return urls

    async def _read_sitemaps(self, first: list[str]) -> list[str]:
        pages: list[str] = []
        level = list(dict.fromkeys(first))
        while level:
            level = [s for s in level if s not in self.sitemaps]
            room = self.cfg.max_sitemaps - len(self.sitemaps)
            for skipped in level[max(room, 0) :]:
                self.sitemaps[skipped] = "skipped: max_sitemaps reached"
            level = level[: max(room, 0)]
            results = await asyncio.gather(*(self._sitemap(s) for s in level))
            children: list[str] = []
            for sitemap, (locs, kids) in zip(level, results, strict=True):
                pages += self._valid(locs, f"sitemap {sitemap}")
                children += kids
            level = list(dict.fromkeys(children))
        return pages

    async def _sitemap(self, sitemap: str) -> tuple[list[str], list[str]]:
        body = await self._xml(sitemap, self.sitemaps)
        if body is None:
            return [], []
        try:
            pages, children = sitemap_locs(body)
            lastmods = sitemap_lastmods(body)
        except (ValueError, OSError) as err:  # lxml's XMLSyntaxError is a ValueError
            self.sitemaps[sitemap] = f"unreadable: {err}"
            logger.warning("sitemap %s is not readable XML: %s", sitemap, err)
            return [], []
        self.sitemaps[sitemap] = f"{len(pages)} pages, {len(children)} sitemaps"
        for loc, lastmod in lastmods.items():
            url = normalise_url(loc)
            if url:
                self.lastmods[url] = lastmod
        kids = [u for u in (normalise_url(c, sitemap) for c in children) if u]
        return pages, kids

    async def _feed(self, feed: str) -> list[str]:
        body = await self._xml(feed, self.feeds)
        if body is None:
            return []
        try:
            links = feed_links(body)
        except (ValueError, OSError) as err:
            self.feeds[feed] = f"unreadable: {err}"
            return []
        self.feeds[feed] = f"{len(links)} entries"
        return [normalise_url(link, feed) or link for link in links]

    async def _xml(self, url: str, report: dict[str, str]) -> bytes | None:
        if normalise_url(url) is None:
            report[url] = "invalid_url"
            return None
        if self.cfg.respect_robots and not await self.fetcher.robots_allow(url):
            report[url] = "robots"
            return None
        res = await self.fetcher.get(url, {}, XML_TYPES)
        if res.reason:
            report[url] = res.reason
            logger.warning("%s not read: %s %s", url, res.reason, res.error or "")
            return None
        return res.body
