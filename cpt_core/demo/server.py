"""Serving the demo website on 127.0.0.1: a quiet threading HTTP server with ETag / Last-Modified.

Conditional requests (If-None-Match, If-Modified-Since) get 304, so a second crawl of an unchanged site
exercises the crawl state; pages with a delay answer late, so the crawler's timeout is exercised too.
``python -m cpt_core.demo.server --port 8000`` serves the site until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cpt_core.demo.pages import BASE_PLACEHOLDER, HTML_UTF8, Page, html_page
from cpt_core.demo.site import DemoSite, DemoSiteConfig, build_site

logger = logging.getLogger(__name__)

class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A crawler that gives up on the slow page closes its socket: expected, not worth a traceback.
        logger.debug("request from %s failed", client_address, exc_info=True)


def _make_handler(served: dict[str, tuple[Page, bytes, str]], slow_delay_s: float, stop: threading.Event):
    class Handler(BaseHTTPRequestHandler):
        server_version = "MeridianCourier/1.0"

        def log_message(self, format: str, *args) -> None:
            pass  # quiet: a crawl of the demo site would otherwise print a line per page

        def do_HEAD(self) -> None:
            self._respond(send_body=False)

        def do_GET(self) -> None:
            self._respond(send_body=True)

        def _respond(self, send_body: bool) -> None:
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            entry = served.get(path)
            if entry is None:
                body = html_page("Not found", "<h1>Page not found</h1>").encode()
                self._send(404, {"Content-Type": HTML_UTF8}, body, send_body)
                return
            page, body, etag = entry
            if page.delay_s > 0:
                stop.wait(slow_delay_s)  # returns early when the server is shutting down
            headers = {"Content-Type": page.content_type, "ETag": etag,
                       "Last-Modified": format_datetime(page.last_modified, usegmt=True)}
            if page.status == 200 and self._not_modified(page, etag):
                self._send(304, {k: v for k, v in headers.items() if k != "Content-Type"}, b"", False)
                return
            self._send(page.status, headers, body, send_body)

        def _not_modified(self, page: Page, etag: str) -> bool:
            inm = self.headers.get("If-None-Match")
            if inm is not None:  # RFC 9110: If-None-Match wins over If-Modified-Since
                tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
                return "*" in tags or etag in tags
            ims = self.headers.get("If-Modified-Since")
            if ims:
                try:
                    return page.last_modified <= parsedate_to_datetime(ims)
                except (TypeError, ValueError):
                    return False  # an unparsable date is ignored, as the RFC says
            return False

        def _send(self, status: int, headers: dict[str, str], body: bytes, send_body: bool) -> None:
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body and body:
                    self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and left

    return Handler


@contextlib.contextmanager
def serve(site: DemoSite, host: str = "127.0.0.1", port: int = 0, slow_delay_s: float = 3.0) -> Iterator[str]:
    """Serve ``site`` in a daemon thread; yields the base URL (``http://HOST:PORT/``); stops and joins on exit."""
    try:
        server = _QuietServer((host, port), BaseHTTPRequestHandler)
    except OSError as err:
        raise OSError(f"demo site: cannot listen on {host}:{port}: {err}") from err
    root = f"http://{host}:{server.server_address[1]}"
    served = {}
    for path, page in site.pages.items():
        body = page.body.replace(BASE_PLACEHOLDER.encode(), root.encode())
        served[path] = (page, body, '"' + hashlib.sha1(body).hexdigest()[:20] + '"')
    stop = threading.Event()
    server.RequestHandlerClass = _make_handler(served, slow_delay_s, stop)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"demo-site-{server.server_address[1]}", daemon=True)
    thread.start()
    logger.info("demo site: %d pages at %s/", len(served), root)
    try:
        yield root + "/"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cpt_core.demo.server", description="Serve the demo site.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=DemoSiteConfig().seed)
    ap.add_argument("--n-facts", type=int, default=DemoSiteConfig().n_facts)
    ap.add_argument("--slow-delay", type=float, default=3.0, help="seconds the slow page takes")
    ap.add_argument("--write-facts", type=Path, help="also write the knowledge graph (JSONL) here")
    args = ap.parse_args(argv)
    site = build_site(DemoSiteConfig(seed=args.seed, n_facts=args.n_facts, slow_delay_s=args.slow_delay))
    if args.write_facts:
        site.write_knowledge_graph(args.write_facts)
    # A shell starts background jobs with SIGINT ignored, and Python then leaves it ignored: take it back, and
    # stop on SIGTERM the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with serve(site, args.host, args.port, args.slow_delay) as url:
        print(f"serving {len(site.pages)} pages ({len(site.facts)} facts) at {url}  (Ctrl-C to stop)", flush=True)
        try:
            while True:  # sleep() is interrupted by Ctrl-C at once, whatever the platform's lock waits do
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
