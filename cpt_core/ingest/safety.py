"""Refusing requests to private, loopback and link-local addresses (server-side request forgery).

A crawler follows URLs that other people wrote: links, redirects, sitemap entries, robots.txt ``Sitemap:``
lines. Any of them may name ``http://169.254.169.254/`` (a cloud metadata service), ``http://localhost:6379/``
or a host whose DNS answer is ``10.0.0.7``. Before every request, each hop included, the host is resolved and
the request is refused when *any* address it resolves to is not globally routable (private, loopback,
link-local, multicast, reserved, unspecified, or an IPv4-mapped form of those).

The allowlist names hosts as they are written in URLs (``127.0.0.1``, ``localhost``, or ``host:port`` for one
port only), never resolved addresses: a public name whose DNS answer turns into ``127.0.0.1`` stays refused.
Trade-off: the connection resolves the name again, so a DNS answer that changes between the check and the
connection (rebinding within the resolver's cache time) is not caught; pinning the checked address would
need a transport of our own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


def is_public_address(address: str) -> bool:
    """Whether ``address`` (an IP literal) is globally routable."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local)


class AddressGuard:
    """Resolves hosts (cached per crawl) and says whether a URL may be requested."""

    def __init__(self, allow_hosts: list[str]) -> None:
        self.allow = {h.strip().lower() for h in allow_hosts if h.strip()}
        self._cache: dict[tuple[str, int], str | None] = {}

    async def refusal(self, url: str) -> str | None:
        """None when ``url`` may be requested, else why not (names the address)."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return "invalid port"
        if host in self.allow or f"{host}:{port}" in self.allow or parts.netloc.lower() in self.allow:
            return None
        key = (host, port)
        if key not in self._cache:
            self._cache[key] = await _resolve_refusal(host, port)
        return self._cache[key]


async def _resolve_refusal(host: str, port: int) -> str | None:
    literal = host.strip("[]")
    try:
        ipaddress.ip_address(literal)
        addresses = [literal]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError):
            return None  # unresolvable: the request itself fails and records why ("unreachable")
        addresses = sorted({info[4][0] for info in infos})
    for address in addresses:
        if not is_public_address(address):
            return f"{host} resolves to {address}, not a public address (allow it with allow_private_hosts)"
    return None
