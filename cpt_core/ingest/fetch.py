"""One polite HTTP fetch at a time: robots.txt, per-host pauses, retries, and a byte cap on bodies.

robots.txt is fetched once per host with the request timeout and honoured (``urllib.robotparser``, including
``Crawl-delay``); 401/403 or a failing server means "stay away", other 4xx means "allowed", an unreachable
host is allowed so that the page request records the real failure. Requests to one host are spaced by
``delay_s`` (raised by Crawl-delay). Bodies are streamed with a byte cap, so a huge or endless response
costs at most ``max_bytes``, and a body still trickling in after a few timeouts is cut off.

Connection errors, 5xx and 429 answers are retried with a short exponential backoff; read timeouts are not
(a slow server would only cost the timeout again). Nothing raises for a bad URL or a bad server: every
outcome is a ``Response`` with a drop ``reason`` (None when the body was read).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.robotparser import RobotFileParser

import requests
import urllib3.exceptions

from cpt_core.ingest.urls import host_keys
from cpt_core.io import HTML_TYPES

BACKOFF_S = 0.5  # first retry pause; doubles per attempt, capped at BACKOFF_MAX_S
BACKOFF_MAX_S = 5.0
BODY_DEADLINE_FACTOR = 3  # a body still trickling in after 3x the timeout is cut off as a timeout
CHUNK = 64 * 1024


@dataclass
class Response:
    """What one request gave: a drop ``reason`` (None when the body was read) and what is known."""

    reason: str | None = None
    status: int | None = None
    error: str | None = None
    status_line: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = ""
    mime: str = ""
    body: bytes = b""
    size: int | None = None
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None


class _BodyTimeout(Exception):
    pass


def _is_read_timeout(err: requests.exceptions.ConnectionError) -> bool:
    # requests re-raises a read timeout that happens while streaming the body as a ConnectionError
    return any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in err.args
    ) or "timed out" in str(err)


@dataclass
class FetchSettings:
    """The crawl settings a fetch needs (a subset of ``CrawlConfig``)."""

    user_agent: str
    timeout_s: float
    max_bytes: int
    retries: int
    delay_s: float = 0.0
    respect_robots: bool = True


class Fetcher:
    """A requests session plus the per-host state politeness needs (robots rules, last request time)."""

    def __init__(self, settings: FetchSettings) -> None:
        self.s = settings
        self.session = requests.Session()
        self.session.headers["User-Agent"] = settings.user_agent
        self.robots: dict[str, RobotFileParser] = {}
        self.last_request: dict[str, float] = {}

    def close(self) -> None:
        self.session.close()

    def get(self, url: str, headers: dict[str, str], html_only: bool) -> Response:
        """GET with retries of connection errors, 5xx and 429; never raises for a bad URL or server."""
        last = Response("unreachable")
        for attempt in range(self.s.retries + 1):
            if attempt:
                time.sleep(min(BACKOFF_S * 2 ** (attempt - 1), BACKOFF_MAX_S))
            self._wait_politely(url)
            res, final = self._attempt(url, headers, html_only)
            if final:
                return res
            last = res
        return last

    def _attempt(self, url: str, headers: dict[str, str], html_only: bool) -> tuple[Response, bool]:
        """One request: ``(response, final)``; not final means worth retrying."""
        try:
            with self.session.get(
                url, headers=headers, timeout=self.s.timeout_s, stream=True, allow_redirects=False
            ) as resp:
                res = self._read(resp, html_only)
        except (requests.exceptions.ReadTimeout, _BodyTimeout) as err:
            return Response("timeout", error=str(err)), True
        except requests.exceptions.ConnectTimeout as err:
            return Response("timeout", error=str(err)), False
        except requests.exceptions.ConnectionError as err:
            if _is_read_timeout(err):
                return Response("timeout", error=str(err)), True
            return Response("unreachable", error=str(err)), False
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as err:
            return Response("invalid_url", error=str(err)), True
        except (requests.exceptions.RequestException, OSError, ValueError) as err:
            return Response("unreachable", error=f"{type(err).__name__}: {err}"), True
        transient = res.status is not None and (res.status >= 500 or res.status == 429)
        return res, not transient

    def _read(self, resp: requests.Response, html_only: bool) -> Response:
        res = _head(resp)
        status = resp.status_code
        if status == 304:
            res.reason = "unchanged"
        elif resp.is_redirect:
            res.reason, res.location = "redirect", resp.headers.get("Location")
        elif not 200 <= status < 300:
            res.reason = f"http_{status}"
        elif html_only and res.mime not in HTML_TYPES:
            res.reason = "non_html"  # not downloaded: the headers say all we keep
        elif res.size is not None and res.size > self.s.max_bytes:
            res.reason = "too_large"
        else:
            self._read_body(resp, res)
        return res

    def _read_body(self, resp: requests.Response, res: Response) -> None:
        body = bytearray()
        deadline = time.monotonic() + BODY_DEADLINE_FACTOR * self.s.timeout_s
        for chunk in resp.iter_content(CHUNK):
            body += chunk
            if len(body) > self.s.max_bytes:
                res.reason, res.size = "too_large", len(body)
                return
            if time.monotonic() > deadline:
                raise _BodyTimeout(f"body still arriving after {BODY_DEADLINE_FACTOR}x timeout_s")
        res.body, res.size = bytes(body), len(body)
        if not res.body.strip():
            res.reason = "empty"

    def _wait_politely(self, url: str) -> None:
        netloc = host_keys(url)[1]
        delay = self.s.delay_s
        robots = self.robots.get(netloc)
        if robots is not None and self.s.respect_robots:
            delay = max(delay, float(robots.crawl_delay(self.s.user_agent) or 0))
        wait = self.last_request.get(netloc, -1e9) + delay - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.last_request[netloc] = time.monotonic()

    def robots_allow(self, url: str) -> bool:
        """Whether robots.txt of ``url``'s host lets our user agent fetch it (fetched once per host)."""
        netloc = host_keys(url)[1]
        parser = self.robots.get(netloc)
        if parser is None:
            parser = self._load_robots(f"{url.split('://', 1)[0]}://{netloc}/robots.txt")
            self.robots[netloc] = parser
        return parser.can_fetch(self.s.user_agent, url)

    def _load_robots(self, robots_url: str) -> RobotFileParser:
        parser = RobotFileParser(robots_url)
        try:
            resp = self.session.get(robots_url, timeout=self.s.timeout_s)
        except requests.exceptions.RequestException:
            parser.allow_all = True  # unreachable host: allow, so that the page request records the failure
            return parser
        if resp.status_code in (401, 403) or resp.status_code >= 500:
            parser.disallow_all = True  # as robotparser does for 401/403; a failing server: stay away
        elif resp.status_code >= 400:
            parser.allow_all = True
        else:
            parser.parse(resp.text.splitlines())
        return parser


def _head(resp: requests.Response) -> Response:
    """What the status line and headers say, before any body is read."""
    res = Response(status=resp.status_code)
    res.status_line = f"{resp.status_code} {resp.reason or ''}".strip()
    res.headers = list(resp.headers.items())
    res.content_type = resp.headers.get("Content-Type", "")
    res.mime = res.content_type.split(";", 1)[0].strip().lower()
    res.etag = resp.headers.get("ETag")
    res.last_modified = resp.headers.get("Last-Modified")
    length = resp.headers.get("Content-Length", "")
    res.size = int(length) if length.isdigit() else None
    return res
