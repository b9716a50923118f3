"""robots.txt per host, through protego (RFC 9309: ``*`` and ``$`` wildcards, longest match wins).

Fetched once per ``scheme://host:port`` with the crawl's client, so it passes the address guard; its
redirects are followed (at most ``MAX_REDIRECTS`` hops, each one guarded). What the answer means:

| answer                                   | rules                                                      |
|------------------------------------------|------------------------------------------------------------|
| 2xx                                      | the file's rules, ``Crawl-delay`` and ``Sitemap:`` lines   |
| 401, 403, 5xx, 429                       | disallow everything (the server is failing or refusing us) |
| other 4xx, a refused or too long redirect| allow everything                                           |
| unreachable                              | allow: the page request then records the real failure      |
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from protego import Protego

# the crawl's guarded GET: (url, headers, content types) -> a fetch Response
GetFn = Callable[[str, dict, tuple], Awaitable[Any]]

MAX_REDIRECTS = 5
ROBOTS_TYPES = ()  # any content type: many servers send robots.txt as text/html or octet-stream


@dataclass
class RobotsRules:
    """One host's rules for our agent; ``parser`` None means allow or disallow everything."""

    agent: str
    parser: Protego | None = None
    allow_all: bool = True
    crawl_delay: float = 0.0
    sitemaps: list[str] = field(default_factory=list)

    def allowed(self, url: str) -> bool:
        if self.parser is None:
            return self.allow_all
        return bool(self.parser.can_fetch(url, self.agent))


class RobotsCache:
    """Loads each host's robots.txt once, even when many requests to that host start at once."""

    def __init__(self, get: GetFn, agent: str) -> None:
        self.get = get
        self.agent = agent
        self._rules: dict[str, RobotsRules] = {}
        self._loading: dict[str, asyncio.Task] = {}

    @staticmethod
    def _key(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc.lower()}"

    def known(self, url: str) -> RobotsRules | None:
        return self._rules.get(self._key(url))

    async def rules(self, url: str) -> RobotsRules:
        key = self._key(url)
        if key in self._rules:
            return self._rules[key]
        if key not in self._loading:
            self._loading[key] = asyncio.ensure_future(self._load(key + "/robots.txt"))
        rules = await self._loading[key]
        self._rules[key] = rules
        return rules

    async def _load(self, robots_url: str) -> RobotsRules:
        url = robots_url
        for _ in range(MAX_REDIRECTS + 1):
            res = await self.get(url, {}, ROBOTS_TYPES)
            if res.reason != "redirect":
                break
            url = urljoin(url, res.location or "")
        else:
            return RobotsRules(self.agent)  # too many redirects: as if there were no file
        status = res.status or 0
        if res.reason in (None, "empty") and 200 <= status < 300:
            return self._parse(res.body.decode("utf-8", "replace"))
        if status in (401, 403, 429) or status >= 500:
            return RobotsRules(self.agent, allow_all=False)
        return RobotsRules(self.agent)  # 404 and friends, unreachable, refused address, too large

    def _parse(self, text: str) -> RobotsRules:
        parser = Protego.parse(text)
        delay = parser.crawl_delay(self.agent)
        return RobotsRules(
            self.agent, parser=parser, crawl_delay=float(delay or 0.0), sitemaps=list(parser.sitemaps)
        )
