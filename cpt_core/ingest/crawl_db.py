"""Crawl state in an embedded database: ``<root>/state/crawl.sqlite``.

One table holds, for every URL a run fetched with a known content state, the run id, HTTP status, fetch time,
ETag, Last-Modified, the sha256 of the body, the sitemap ``<lastmod>`` seen then and the page's links (kept
for 304 answers, which have no body). The rows a page gets come from its fetch-log row (``row_from_log``):
``fetched``, ``unchanged`` (a 304 or a 200 with the same body hash), ``noindex`` and ``non_canonical``.
A failure after its retries (``timeout``, ``unreachable``, ``http_<code>``) gets a row too, with its status,
reason and error but no content state: ``failures`` reports them, and ``visible`` (the reference for
conditional requests) skips them, so a page that failed once is still compared against its last good fetch.

Visibility follows the refresh contract (``cpt_core.state``): a crawl writes rows only under its own run id,
and readers ask for the rows of a list of runs (the run's pinned visible runs, oldest first), the latest of
them winning per URL. A failed or rejected run's rows are therefore never used by other runs; when the same
run id crawls again from scratch its old rows are replaced (``RunRows.reset``).

Concurrency: the database is in WAL mode (readers never block the writer) with a busy timeout, and every
write transaction is also taken under an exclusive ``flock`` on ``crawl.sqlite.lock``, so two crawls on one
root (two processes, or two threads) serialise their writes instead of failing on a busy database.
Rows are written in batches of ``BATCH_ROWS``, one transaction each, as pages are committed.

Recrawl policy (``is_fresh``): with ``recrawl_after_hours`` > 0, a page a visible run fetched less than that
long ago is not requested at all unless its sitemap ``<lastmod>`` is newer than that fetch.

Earlier versions kept the same facts in ``state/frontier/<run_id>.json`` files: they are imported once, under
their run ids, the first time the database is opened (``import_frontier_files``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

DB_FILE = "crawl.sqlite"
LOCK_FILE = "crawl.sqlite.lock"
FRONTIER_DIR = "frontier"  # the JSON files of earlier versions
SCHEMA_VERSION = 2  # 2: failure rows (reason, error)
BATCH_ROWS = 50
BUSY_TIMEOUT_MS = 60_000
ROW_REASONS = ("fetched", "unchanged", "noindex", "non_canonical")
FAILURE_REASONS = ("timeout", "unreachable")  # and every http_<code>

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS pages (
    run_id TEXT NOT NULL,
    url TEXT NOT NULL,
    status INTEGER,
    fetched_at TEXT,
    etag TEXT,
    last_modified TEXT,
    content_hash TEXT,
    sitemap_lastmod TEXT,
    links TEXT NOT NULL DEFAULT '[]',
    reason TEXT,
    error TEXT,
    PRIMARY KEY (run_id, url)
)""",
)
_MIGRATIONS = {1: ("ALTER TABLE pages ADD COLUMN reason TEXT", "ALTER TABLE pages ADD COLUMN error TEXT")}
_COLUMNS = ("url", "status", "fetched_at", "etag", "last_modified", "content_hash", "sitemap_lastmod", "links")
_ALL_COLUMNS = (*_COLUMNS, "reason", "error")


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 / W3C datetime (``2024-03-05``, ``…T10:00:00Z``, ``…+09:00``) in UTC; None if unreadable."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def is_fresh(prev: dict | None, sitemap_lastmod: str | None, recrawl_after_hours: float, now: datetime) -> bool:
    """Whether a page last fetched as ``prev`` need not be requested at all now.

    Fresh when ``recrawl_after_hours`` > 0, the last fetch is younger than that, and the sitemap does not say
    the page changed after it (a ``<lastmod>`` newer than the fetch forces a conditional request).
    """
    if recrawl_after_hours <= 0 or not prev or not prev.get("sha256"):
        return False
    fetched = parse_time(prev.get("fetched_at"))
    if fetched is None or now - fetched >= timedelta(hours=recrawl_after_hours):
        return False
    lastmod = parse_time(sitemap_lastmod)
    return lastmod is None or lastmod <= fetched


def is_failure(reason: str | None) -> bool:
    return reason in FAILURE_REASONS or (reason or "").startswith("http_")


def row_from_log(row: dict) -> dict | None:
    """The state row a fetch-log row gives: a content state, a failure, or None (robots, offsite, ...)."""
    if is_failure(row.get("reason")):
        return {
            "url": row["url"],
            "status": row.get("status"),
            "fetched_at": row.get("fetched_at"),
            "links": "[]",
            "reason": row["reason"],
            "error": row.get("error"),
        }
    if row.get("reason") not in ROW_REASONS or not row.get("sha256"):
        return None
    return {
        "url": row["url"],
        "status": row.get("status"),
        "fetched_at": row.get("fetched_at"),
        "etag": row.get("etag"),
        "last_modified": row.get("last_modified"),
        "content_hash": row["sha256"],
        "sitemap_lastmod": row.get("sitemap_lastmod"),
        "links": json.dumps(row.get("links") or [], ensure_ascii=False),
    }


class CrawlDB:
    """``<state_dir>/crawl.sqlite``: ``with CrawlDB(state_dir) as db: db.visible(runs)``."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.state_dir / DB_FILE
        self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            with self._locked():  # switching to WAL needs the database to itself; once switched it stays so
                self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self._create_schema()
            import_frontier_files(self, self.state_dir / FRONTIER_DIR)
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> CrawlDB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.state_dir / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, under the file lock: committed on success, rolled back on error."""
        with self._locked():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def _create_schema(self) -> None:
        with self.write() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if found is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(found[0]) in _MIGRATIONS:
                for statement in _MIGRATIONS[int(found[0])]:
                    conn.execute(statement)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            elif int(found[0]) != SCHEMA_VERSION:
                raise ValueError(
                    f"{self.path} has crawl-state schema version {found[0]}, this code reads version "
                    f"{SCHEMA_VERSION}: use the cptflow version that wrote it, or move the file away to start over"
                )

    def meta(self, key: str) -> str | None:
        found = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return found[0] if found else None

    def put_rows(self, conn: sqlite3.Connection, run_id: str, rows: list[dict]) -> None:
        conn.executemany(
            f"INSERT OR REPLACE INTO pages (run_id, {', '.join(_ALL_COLUMNS)}) VALUES (?{', ?' * len(_ALL_COLUMNS)})",
            [(run_id, *(row.get(c) for c in _ALL_COLUMNS)) for row in rows],
        )

    def rows(self, run_id: str, failures: bool = False) -> dict[str, dict]:
        """One run's rows by URL, as stored: its content states, or with ``failures`` its failure rows."""
        columns = _ALL_COLUMNS if failures else _COLUMNS
        which = "IS NOT NULL" if failures else "IS NULL"
        cur = self.conn.execute(
            f"SELECT {', '.join(columns)} FROM pages WHERE run_id = ? AND reason {which} ORDER BY url", (run_id,)
        )
        return {r[0]: dict(zip(columns, r, strict=True)) for r in cur}

    def failures(self, runs: list[str]) -> dict[str, dict]:
        """url -> its failure row (status, reason, error, run_id) where the latest of ``runs`` to ask it failed."""
        latest: dict[str, dict | None] = {}
        for run_id in runs:
            latest.update(dict.fromkeys(self.rows(run_id)))  # a good fetch clears an earlier failure
            latest.update({u: {**r, "run_id": run_id} for u, r in self.rows(run_id, failures=True).items()})
        return {url: row for url, row in latest.items() if row is not None}

    def visible(self, runs: list[str]) -> dict[str, dict]:
        """url -> {status, fetched_at, etag, last_modified, sha256, sitemap_lastmod, links} over ``runs``.

        ``runs`` are the runs the reader may see, oldest first; a later run's row wins. Failure rows are not
        part of this view: the last good fetch stays the reference for conditional requests.
        """
        view: dict[str, dict] = {}
        for run_id in runs:
            for url, row in self.rows(run_id).items():
                view[url] = {
                    "status": row["status"],
                    "fetched_at": row["fetched_at"],
                    "etag": row["etag"],
                    "last_modified": row["last_modified"],
                    "sha256": row["content_hash"],
                    "sitemap_lastmod": row["sitemap_lastmod"],
                    "links": json.loads(row["links"]),
                }
        return view

    def runs(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT run_id FROM pages ORDER BY run_id")]


class RunRows:
    """The rows one run writes as its crawl goes: buffered, one transaction per ``BATCH_ROWS`` rows."""

    def __init__(self, db: CrawlDB, run_id: str) -> None:
        self.db, self.run_id = db, run_id
        self.pending: list[dict] = []

    def reset(self, rows: list[dict]) -> None:
        """Replace every row of this run by ``rows`` (what a resumed attempt already committed; none if fresh)."""
        with self.db.write() as conn:
            conn.execute("DELETE FROM pages WHERE run_id = ?", (self.run_id,))
            self.db.put_rows(conn, self.run_id, rows)

    def add(self, row: dict) -> None:
        self.pending.append(row)
        if len(self.pending) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        with self.db.write() as conn:
            self.db.put_rows(conn, self.run_id, self.pending)
        self.pending = []


def import_frontier_files(db: CrawlDB, folder: Path) -> int:
    """Import ``<folder>/<run_id>.json`` frontier files of earlier versions once; returns the rows imported."""
    if db.meta("frontier_files_imported") is not None:
        return 0
    count = 0
    with db.write() as conn:
        for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"crawl frontier file {path} is not valid JSON: {err}") from None
            if not isinstance(data, dict):
                raise ValueError(f"crawl frontier file {path} must hold an object of url -> entry")
            rows = [
                row
                for url, entry in data.items()
                if isinstance(entry, dict)
                and (row := row_from_log({**entry, "url": url, "reason": "fetched", "status": 200}))
            ]
            db.put_rows(conn, path.stem, rows)
            count += len(rows)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('frontier_files_imported', ?)", (str(count),))
    return count
