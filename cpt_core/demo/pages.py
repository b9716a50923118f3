"""The demo site's pages: one ``Page`` per path, and the HTML every page shares (header, navigation, footer).

Every HTML page carries the same navigation and footer, as a real news site does: boilerplate that text
extraction has to remove, and links that make every section reachable from any page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timezone

SITE_NAME = "The Meridian Courier"
EXTERNAL_URL = "http://example.invalid/x"
# robots.txt and sitemap.xml need absolute URLs, known only once a port is bound: serve() substitutes it.
BASE_PLACEHOLDER = "__SITE_ROOT__"
HTML_UTF8 = "text/html; charset=utf-8"
_EPOCH = datetime(2026, 1, 2, 8, 0, tzinfo=timezone.utc)


@dataclass
class Page:
    body: bytes
    content_type: str = HTML_UTF8
    status: int = 200
    delay_s: float = 0.0  # > 0 marks the slow page; serve() sleeps slow_delay_s for it
    last_modified: datetime = _EPOCH
    charset: str | None = "utf-8"  # what the bytes really are (Content-Type may lie); None: binary

    def text(self) -> str:
        return self.body.decode(self.charset or "latin-1")




_NAV = ('<header class="site-header"><a class="logo" href="/">{site}</a><nav><ul>'
        '<li><a href="/">Home</a></li><li><a href="/news/">News</a></li><li><a href="/ko/">한국어</a></li>'
        '<li><a href="/world/">World</a></li><li><a href="/misc/">More</a></li>'
        '<li><a href="/login.html">Sign in</a></li></ul></nav></header>')
_FOOT = ('<footer class="site-footer"><p>&copy; 2026 {site}. All rights reserved.</p><p>'
         '<a href="/cookies.html">Cookie settings</a> | <a href="/tags/">Tags</a> | '
         '<a href="/sitemap.xml">Sitemap</a> | <a href="' + EXTERNAL_URL + '">Partner site</a></p></footer>')


def html_page(title: str, main: str, lang: str = "en", charset: str = "utf-8") -> str:
    meta = (f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">'
            if charset != "utf-8" else '<meta charset="utf-8">')
    return (f'<!DOCTYPE html>\n<html lang="{lang}"><head>{meta}<title>{html.escape(title)} | {SITE_NAME}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"></head>\n<body>'
            f'{_NAV.format(site=SITE_NAME)}\n<main>{main}</main>\n{_FOOT.format(site=SITE_NAME)}\n</body></html>\n')


def article_html(title: str, byline: str, paras: list[str], related: list[tuple[str, str]]) -> str:
    body = "".join(f"<p>{html.escape(p)}</p>\n" for p in paras)
    links = "".join(f'<li><a href="{h}">{html.escape(t)}</a></li>' for h, t in related)
    return (f'<article><h1>{html.escape(title)}</h1><p class="byline">{html.escape(byline)}</p>\n{body}</article>'
            f'<aside class="related"><h2>Related stories</h2><ul>{links}</ul></aside>')


def index_html(title: str, links: list[tuple[str, str]]) -> str:
    items = "".join(f'<li><a href="{h}">{html.escape(t)}</a></li>' for h, t in links)
    return html_page(title, f'<section><h1>{html.escape(title)}</h1><ul class="story-list">{items}</ul></section>')


def slug(text: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "-" for c in text)
    return "-".join(filter(None, out.split("-")))

