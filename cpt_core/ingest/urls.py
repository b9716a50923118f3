"""URLs for the crawler: normalisation, links of an HTML page, and the ``<loc>``s of a sitemap.

A URL is normalised once, when it is found (fragment dropped, scheme and host lower-cased, default port
removed), so that the same page reached by two spellings is handled once.
"""

from __future__ import annotations

import gzip
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import lxml.etree
import lxml.html


def normalise_url(url: str, base: str | None = None) -> str | None:
    """Absolute, fragment-free http(s) URL with lower-case scheme/host and no default port; None if unusable."""
    try:
        url = urljoin(base, url.strip()) if base else url.strip()
        url, _ = urldefrag(url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:  # e.g. a port that is not a number, a bad IPv6 literal
        return None
    if scheme not in ("http", "https") or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def extract_links(body: bytes, url: str) -> list[str]:
    """Normalised ``<a href>`` targets of an HTML page, in document order, without repeats."""
    try:
        doc = lxml.html.fromstring(body)
    except (lxml.etree.ParserError, lxml.etree.XMLSyntaxError, ValueError):
        return []
    base = url
    for href in doc.xpath("//base/@href")[:1]:
        base = urljoin(url, href.strip())
    links: dict[str, None] = {}
    for href in doc.xpath("//a/@href"):
        link = normalise_url(str(href), base)
        if link:
            links.setdefault(link)
    return list(links)


def sitemap_locs(body: bytes) -> tuple[list[str], list[str]]:
    """``(page URLs, child sitemap URLs)`` listed in a sitemap or sitemap index (gzip allowed)."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, recover=True)
    root = lxml.etree.fromstring(body, parser=parser)
    if root is None:
        return [], []
    locs = [
        el.text.strip()
        for el in root.iter()
        if isinstance(el.tag, str) and _local(el.tag) == "loc" and el.text
    ]
    if _local(root.tag) == "sitemapindex":
        return [], locs
    return locs, []


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def host_keys(url: str) -> tuple[str, str]:
    """``(host, host:port)``, lower-cased: what ``allowed_hosts`` entries and politeness are keyed on."""
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.netloc.lower()
