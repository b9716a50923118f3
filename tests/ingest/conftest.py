"""Shared by the crawler tests: a threaded local HTTP server for a test site, and quick retries."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer

import pytest

from cpt_core.ingest import fetch as fetch_mod


@contextlib.contextmanager
def serving(site, handler: Callable) -> Iterator:
    """Serve ``site`` through ``handler(site)`` on a free port; sets ``site.port`` and ``site.base`` first
    (the handler may embed the base URL, e.g. in a sitemap)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(site))
    site.port = server.server_address[1]
    site.base = f"http://127.0.0.1:{site.port}"
    server.RequestHandlerClass = handler(site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module", autouse=True)
def fast_backoff():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fetch_mod, "BACKOFF_S", 0.01)
        yield
