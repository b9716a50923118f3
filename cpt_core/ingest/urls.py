"""URLs for the crawler: normalisation, what an HTML page points to, sitemaps and RSS/Atom feeds.

A URL is normalised once, when it is found, so that the same page reached by two spellings is handled once:
fragment dropped, scheme and host lower-cased, default port removed, path and query made URIs (non-ASCII
percent-encoded as UTF-8, escapes upper-cased, existing escapes never decoded), tracking parameters such as
``utm_source`` or ``fbclid`` stripped (courlan's list) and the query's pairs sorted by name.

``parse_page`` reads an HTML page once (selectolax's lexbor parser) for everything the crawler acts on: its
``<a href>`` links, its ``<link rel="canonical">``, the feeds it announces (``<link rel="alternate"
type="application/rss+xml">``) and its meta robots directives. XML (sitemaps, feeds) is parsed without
entities or network access."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import quote, unquote_plus, urljoin, urlsplit, urlunsplit

import lxml.etree
from courlan.clean import TRACKERS_RE
from selectolax.lexbor import LexborHTMLParser

from cpt_core.ingest.charset import decode_html

XML_MAX_BYTES = 50_000_000  # the sitemap protocol's limit for an uncompressed sitemap
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/feed+json")
RESOLVED_MAX = 200_000  # remembered (folder, href) resolutions; the table is cleared when full
_RESOLVED: dict[tuple[str, str], str | None] = {}
_MISSING = object()
_XPATH_SPACE = re.compile("[ \t\r\n]+")  # what XPath's normalize-space() folds
_ROBOTS_CASE = str.maketrans("ROBTS", "robts")
# RFC 3986 path characters (unreserved, sub-delims, ":", "@", "/") and "%": kept as they are
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"  # and in a query, "?"
_ESCAPE = re.compile("%[0-9a-fA-F]{2}")


def normalise_url(url: str, base: str | None = None) -> str | None:
    """Absolute, fragment-free http(s) URL with lower-case scheme/host and no default port; None if unusable.

    The path is a URI path: characters outside RFC 3986's set (non-ASCII letters, spaces) are percent-encoded
    as UTF-8 and existing escapes upper-cased, so ``/뉴스/기사.html``, ``/%eb%89%b4...`` and
    ``/%EB%89%B4...`` are one page; reserved characters (``;``, ``+``, ``(``…) are left as they are, since
    encoding them can change what a server reads.
    """
    try:
        url = urljoin(base, url.strip()) if base else url.strip()
    except ValueError:  # e.g. a bad IPv6 literal
        return None
    return _normalise_absolute(url)


@lru_cache(maxsize=200_000)
def _normalise_absolute(url: str) -> str | None:
    try:
        parts = urlsplit(url)  # the fragment is split off and dropped
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
    query = _clean_query(parts.query) if parts.query else ""
    return urlunsplit((scheme, netloc, _uri_path(parts.path), query, ""))


def _escaped(part: str, safe: str) -> str:
    part = quote(part, safe=safe)
    return _ESCAPE.sub(lambda m: m.group().upper(), part) if "%" in part else part


def _uri_path(path: str) -> str:
    return _escaped(path, _PATH_SAFE) if path else "/"


def _clean_query(query: str) -> str:
    """``query`` without tracking parameters (courlan's list: ``utm_*``, ``fbclid``…), sorted by name.

    Each ``name=value`` pair is kept as written, only made a URI (as paths are): courlan's own
    ``clean_query`` decodes and re-encodes the values as UTF-8, which turns an EUC-KR query
    (``?name=%C7%D1``, common on Korean sites) into replacement characters, and drops pairs without a value.
    """
    kept = []
    for pair in query.split("&"):
        if not pair:
            continue
        name = unquote_plus(pair.split("=", 1)[0], errors="replace")
        if not TRACKERS_RE.search(name.lower()):
            kept.append((name, _escaped(pair, _QUERY_SAFE)))
    kept.sort(key=lambda item: item[0])  # stable: repeated names keep their order
    return "&".join(pair for _, pair in kept)


@dataclass
class PageLinks:
    """What an HTML page points to and what its meta robots directives allow."""

    links: list[str] = field(default_factory=list)
    canonical: str | None = None
    feeds: list[str] = field(default_factory=list)
    noindex: bool = False
    nofollow: bool = False


def parse_page(body: bytes, url: str, content_type: str | None = None) -> PageLinks:
    """Normalised ``<a href>`` links (document order, no repeats), canonical URL, feeds and meta robots.

    The bytes are decoded as the extract stage decodes them (``charset.decode_html``: a BOM, valid UTF-8,
    then the ``content_type`` header's or the ``<meta>`` charset where the bytes bear it out, then
    detection), so a Korean page served as EUC-KR with no ``<meta>``, or under a wrong label, keeps its
    Korean links; on a page in such a legacy encoding, a link's query is encoded in it, as browsers do.
    The tree is built as a browser builds it (lexbor) and read by tag: each kind of element comes back in
    document order, so the first ``<base href>`` and the first canonical link win wherever they are.
    """
    text, codec = (body, "ascii") if body.isascii() else decode_html(body, content_type)
    try:
        doc = LexborHTMLParser(text)
    except (ValueError, TypeError, RuntimeError, MemoryError):
        return PageLinks()
    page = PageLinks()
    base = url
    for el in doc.tags("base"):
        href = el.attrs.get("href")
        if href is not None:
            base = urljoin(url, href.strip())
            break
    canonical, feeds = None, []
    for el in doc.tags("link"):
        attrs = el.attributes
        href = attrs.get("href")
        if href is None:
            continue
        rel = attrs.get("rel") or ""
        if canonical is None and "canonical" in _XPATH_SPACE.split(rel):
            canonical = href
        if rel == "alternate" and (attrs.get("type") or "").strip().lower() in FEED_TYPES:
            feeds.append(href)
    for el in doc.tags("meta"):
        attrs = el.attributes
        if (attrs.get("name") or "").translate(_ROBOTS_CASE) == "robots" and attrs.get("content") is not None:
            directives = robots_directives(attrs["content"])
            page.noindex |= "noindex" in directives
            page.nofollow |= "nofollow" in directives
    hrefs = [h for h in (el.attrs.get("href") for el in doc.tags("a")) if h is not None]
    if not codec.startswith(("utf", "ascii")):  # a legacy encoding: queries are encoded in it
        hrefs, feeds = [_query_in(h, codec) for h in hrefs], [_query_in(h, codec) for h in feeds]
        canonical = _query_in(canonical, codec) if canonical is not None else None
    page.links = _unique(hrefs, base)
    page.canonical = normalise_url(canonical, base) if canonical is not None else None
    page.feeds = _unique(feeds, base)
    return page


def _query_in(href: str, codec: str) -> str:
    """``href`` with the non-ASCII characters of its query percent-encoded in ``codec``.

    As a browser does for a page in a legacy encoding (the URL Standard): on an EUC-KR page,
    ``?name=한글`` asks for ``?name=%C7%D1%B1%DB``. A query ``codec`` cannot encode is left to be encoded as
    UTF-8, like the path.
    """
    head, mark, query = href.partition("?")
    if not mark or query.isascii():
        return href
    query, hash_mark, fragment = query.partition("#")
    try:
        return f"{head}?{quote(query, safe=_QUERY_SAFE, encoding=codec)}{hash_mark}{fragment}"
    except (UnicodeError, LookupError):
        return href


def robots_directives(value: str, agent: str = "cptflow") -> set[str]:
    """Directives of a meta robots or ``X-Robots-Tag`` value meant for every crawler or for ``agent``.

    ``none`` means ``noindex, nofollow``; a ``otherbot: noindex`` prefix limits a directive to that crawler.
    """
    found: set[str] = set()
    for part in value.lower().split(","):
        part = part.strip()
        if ":" in part:
            who, part = (x.strip() for x in part.split(":", 1))
            if who != agent.lower():
                continue
        found |= {"noindex", "nofollow"} if part == "none" else {part}
    return found


def extract_links(body: bytes, url: str) -> list[str]:
    """Normalised ``<a href>`` targets of an HTML page, in document order, without repeats."""
    return parse_page(body, url).links


def _unique(hrefs, base: str) -> list[str]:
    links: dict[str, None] = {}
    folder = _folder(base)
    for href in dict.fromkeys(str(h).strip() for h in hrefs):  # a page repeats its hrefs (menus, anchors)
        link = _resolve(href, base, folder)
        if link:
            links.setdefault(link)
    return list(links)


def _folder(base: str) -> str:
    """``base`` up to the last ``/`` of its path: all a relative reference without ``?`` or ``#`` uses of it."""
    stem = base.split("#", 1)[0].split("?", 1)[0]
    cut = stem.rfind("/")
    return stem[: cut + 1] if cut > stem.find("//") + 1 else stem


def _resolve(href: str, base: str, folder: str) -> str | None:
    """``normalise_url(href, base)``, remembered per (base folder, href) where only the folder matters.

    Pages of a site share most links (menus, indexes) and normalising is most of the cost of reading a page,
    so results are kept in a bounded table. The table is only used where RFC 3986 resolution depends on
    the base's scheme, host and folder alone: a non-empty reference that starts with neither ``?`` nor
    ``#`` and is either scheme-less (no ``:`` before its first ``/``) or an absolute http(s) URL. A fragment
    never changes the result (it is dropped), so the table is keyed on what precedes it: ``a.html#x`` and
    ``a.html#y`` are one entry, and a fragment-only reference is the base itself, one entry per page.
    """
    head = href.split("/", 1)[0]
    if not href or href[0] == "?" or (":" in head and not href.lower().startswith(("http://", "https://"))):
        return normalise_url(href, base)
    key = (base, "#") if href[0] == "#" else (folder, href.split("#", 1)[0] if "#" in href else href)
    found = _RESOLVED.get(key, _MISSING)
    if found is _MISSING:
        if len(_RESOLVED) >= RESOLVED_MAX:
            _RESOLVED.clear()
        found = _RESOLVED[key] = normalise_url(href, base)
    return found


def _xml_root(body: bytes):
    if body[:2] == b"\x1f\x8b":  # a .gz sitemap; capped, so a gzip bomb costs at most XML_MAX_BYTES
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        body = inflater.decompress(body, XML_MAX_BYTES)
        if inflater.unconsumed_tail:
            raise ValueError(f"gzip member inflates past {XML_MAX_BYTES} bytes")
    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, recover=True, huge_tree=False)
    return lxml.etree.fromstring(body, parser=parser)


def feed_links(body: bytes) -> list[str]:
    """Entry links of an RSS 2.0, RSS 1.0 (RDF) or Atom feed, in feed order (raw, not yet normalised)."""
    root = _xml_root(body)
    if root is None:
        return []
    links: list[str] = []
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        name = _local(el.tag)
        if name in ("item", "entry"):
            links.extend(_entry_link(el))
    return links


def _entry_link(entry) -> list[str]:
    for child in entry:
        if not isinstance(child.tag, str) or _local(child.tag) != "link":
            continue
        href = child.get("href")
        if href and child.get("rel", "alternate") == "alternate":
            return [href.strip()]  # Atom
        if not href and child.text and child.text.strip():
            return [child.text.strip()]  # RSS
    return []


def sitemap_locs(body: bytes) -> tuple[list[str], list[str]]:
    """``(page URLs, child sitemap URLs)`` listed in a sitemap or sitemap index (gzip allowed)."""
    root = _xml_root(body)
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


def sitemap_lastmods(body: bytes) -> dict[str, str]:
    """``<loc>`` -> ``<lastmod>`` of the ``<url>`` entries of a sitemap that give one."""
    root = _xml_root(body)
    found: dict[str, str] = {}
    for el in root.iter() if root is not None else ():
        if not (isinstance(el.tag, str) and _local(el.tag) == "url"):
            continue
        parts = {_local(c.tag): (c.text or "").strip() for c in el if isinstance(c.tag, str)}
        if parts.get("loc") and parts.get("lastmod"):
            found[parts["loc"]] = parts["lastmod"]
    return found


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def host_keys(url: str) -> tuple[str, str]:
    """``(host, host:port)``, lower-cased: what ``allowed_hosts`` entries and politeness are keyed on."""
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.netloc.lower()
