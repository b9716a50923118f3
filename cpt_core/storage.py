"""Roots beyond one disk: a root given as an fsspec URL (``s3://bucket/cpt``) is worked on through a local mirror.

Every stage reads and writes local files (datatrove, SQLite, Arrow, the trainer subprocess), so a URL root is
not opened file by file: the run works in a local folder that mirrors the root (``cache_dir``, by default
``~/.cache/cptflow/<hash of the URL>``) and syncs it with the remote one through fsspec (s3fs for S3):

- **pull, before the run**: ``state/`` (crawl state, dedup index, probes, finished runs, registry), the run's
  own folder ``runs/<run_id>/`` when it exists (a rerun on another worker resumes from its finished stages),
  and the champion's model folder and held-out text (the run continues from it and scores on it);
- **push, after every stage** (when its manifest is written) and when the run ends, finished or failed: the
  run's folder and ``state/``.

Syncing is incremental: a record beside the mirror (``.cptflow-sync.json``) keeps, for each file synced, its
local size and mtime and the remote object's ETag (or size and time), so a push uploads only files written
since, a pull downloads only objects changed since, and a file deleted on one side (a ``.partial`` folder
renamed into place) is deleted on the other. Lock files and SQLite's shared-memory index stay local.

**One run per root.** The local ``RootLock`` (``flock``) guards the mirror on one machine; across machines a
lock object ``state/.root.lock.json`` is created with a conditional write (``If-None-Match: *`` on S3, exclusive
create elsewhere), so of two workers starting on one root only one gets it, and the other fails naming the
holder. A holder that dies leaves the object behind: a rerun of *the same run id* takes it over (that is how a
crashed run is resumed); any other run fails until the object is deleted by hand
(``s3fs``/``aws s3 rm s3://bucket/cpt/state/.root.lock.json``). Release deletes the object only while it is
still this run's (read, then delete: not atomic, but a second holder can only appear after a takeover).

Credentials never enter the run config (Prefect stores flow parameters in plain text and shows them in the
UI): s3fs reads them from the standard environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, an instance role); ``storage_options`` carries the rest (``endpoint_url``, region).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path

from fsspec.core import url_to_fs
from fsspec.utils import get_protocol

from cpt_core.io import atomic_write_json
from cpt_core.layout import RunLayout, run_relative_path
from cpt_core.lock import RootBusyError, RootLock

LOCAL_PROTOCOLS = ("file", "local")
SYNC_RECORD = ".cptflow-sync.json"
REMOTE_LOCK = "state/.root.lock.json"
# Local-only files: flock files (meaningless elsewhere) and SQLite's shared-memory index (rebuilt on open).
LOCAL_ONLY_SUFFIXES = (".lock", "-shm")
SECRET_OPTIONS = ("key", "secret", "token", "password", "aws_access_key_id", "aws_secret_access_key",
                  "aws_session_token")  # fmt: skip

_ACTIVE: dict[Path, RootMirror] = {}


def is_remote(root: str | Path) -> bool:
    """Whether ``root`` is an fsspec URL other than a local path (``s3://…``, ``gcs://…``, ``memory://…``)."""
    return get_protocol(str(root)) not in LOCAL_PROTOCOLS


def default_cache_dir(root: str) -> Path:
    """``$XDG_CACHE_HOME/cptflow/<hash of root>`` (``~/.cache`` when unset): one mirror per root URL."""
    digest = hashlib.sha256(root.rstrip("/").encode()).hexdigest()[:16]
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "cptflow" / digest


def check_storage_options(options: dict) -> dict:
    """``options`` unchanged, or an error when it holds a credential (those belong in the environment)."""
    secrets = sorted(k for k in options if k.lower() in SECRET_OPTIONS)
    if secrets:
        raise ValueError(
            f"storage_options must not hold credentials ({', '.join(secrets)}): flow parameters are stored and "
            "shown in plain text. Set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the "
            "worker's environment instead"
        )
    return options


def _remote_signature(info: dict) -> str:
    """What identifies one version of a remote object: its ETag when the store has one, else size and time."""
    for key in ("ETag", "etag", "md5"):
        if info.get(key):
            return str(info[key])
    stamp = info.get("LastModified") or info.get("mtime") or info.get("created")
    return f"{info.get('size')}@{stamp}"


def _local_only(rel: str) -> bool:
    return rel.endswith(LOCAL_ONLY_SUFFIXES) or rel == SYNC_RECORD or rel == REMOTE_LOCK


class RootMirror:
    """A local folder mirroring an fsspec root; ``pull``/``push`` sync one sub-path (a file or folder)."""

    def __init__(self, url: str, local: str | Path, storage_options: dict | None = None):
        self.url = url.rstrip("/")
        self.fs, base = url_to_fs(self.url, **(storage_options or {}))
        self.base = base.rstrip("/")
        self.local = Path(local).expanduser().resolve()
        self.local.mkdir(parents=True, exist_ok=True)
        self._mutex = threading.Lock()
        record = self.local / SYNC_RECORD
        self._record: dict[str, list] = json.loads(record.read_text()) if record.exists() else {}

    def remote(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def _save(self) -> None:
        atomic_write_json(self.local / SYNC_RECORD, self._record)

    def _under(self, rel: str) -> list[str]:
        return [k for k in self._record if k == rel or k.startswith(rel.rstrip("/") + "/")]

    def _remote_files(self, rel: str) -> dict[str, dict]:
        if not self.fs.exists(self.remote(rel)):
            return {}
        found = self.fs.find(self.remote(rel), detail=True)
        prefix = self.fs._strip_protocol(self.base).rstrip("/") + "/"
        return {self.fs._strip_protocol(path)[len(prefix):]: info for path, info in found.items()}

    def pull(self, rel: str) -> int:
        """Make the mirror's ``rel`` match the remote one; returns how many files were downloaded."""
        with self._mutex:
            remote = {k: v for k, v in self._remote_files(rel).items() if not _local_only(k)}
            fetched = 0
            for key, info in remote.items():
                target, sig = self.local / key, _remote_signature(info)
                known = self._record.get(key)
                if known and known[2] == sig and target.exists() and self._stat(target) == known[:2]:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(self.remote(key), str(target))
                self._record[key] = [*self._stat(target), sig]
                fetched += 1
            for key in self._under(rel):
                if key not in remote:  # deleted remotely since it was synced
                    (self.local / key).unlink(missing_ok=True)
                    del self._record[key]
            self._save()
            return fetched

    def push(self, rel: str) -> int:
        """Upload what changed under the mirror's ``rel`` since the last sync, delete what was removed."""
        with self._mutex:
            local = self._local_files(rel)
            sent = 0
            for key in local:
                stat = self._stat(self.local / key)
                known = self._record.get(key)
                if known and known[:2] == stat:
                    continue
                self.fs.put_file(str(self.local / key), self.remote(key))
                self._record[key] = [*stat, _remote_signature(self.fs.info(self.remote(key)))]
                sent += 1
            for key in self._under(rel):
                if key not in local:  # deleted (or renamed) locally since it was synced
                    if self.fs.exists(self.remote(key)):
                        self.fs.rm_file(self.remote(key))
                    del self._record[key]
            self._save()
            return sent

    def _local_files(self, rel: str) -> set[str]:
        start = self.local / rel
        if start.is_file():
            return {rel}
        found = set()
        for folder, _, files in os.walk(start):
            for name in files:
                key = (Path(folder) / name).relative_to(self.local).as_posix()
                if not _local_only(key):
                    found.add(key)
        return found

    @staticmethod
    def _stat(path: Path) -> list:
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]


class RemoteRootLock:
    """The cross-machine lock of a URL root: the object ``state/.root.lock.json``, created exclusively."""

    def __init__(self, mirror: RootMirror, run_id: str):
        self.fs, self.path, self.run_id, self.url = mirror.fs, mirror.remote(REMOTE_LOCK), run_id, mirror.url

    def _holder(self) -> dict:
        try:
            return json.loads(self.fs.cat_file(self.path))
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RemoteRootLock:
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        body = {"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(), "since": since}
        data = json.dumps(body).encode()
        try:
            self.fs.pipe_file(self.path, data, mode="create")
        except FileExistsError:
            holder = self._holder()
            if holder.get("run_id") != self.run_id:
                raise RootBusyError(self.url, holder) from None
            self.fs.pipe_file(self.path, data)  # this run's earlier attempt died holding it: take it over
        return self

    def release(self) -> None:
        if self._holder().get("run_id") == self.run_id:
            self.fs.rm_file(self.path)


def _pull_for_run(mirror: RootMirror, run_id: str) -> None:
    """What a run reads: the state, its own folder, and the champion's model and held-out text."""
    from cpt_core.evaluate.registry import Registry

    mirror.pull("state")
    mirror.pull(f"runs/{run_id}")
    champion = Registry(RunLayout(mirror.local, run_id).registry).champion()
    if not champion:
        return
    model = run_relative_path(champion["model_dir"], champion["run_id"])
    if model is not None:
        mirror.pull(model)
    mirror.pull(f"runs/{champion['run_id']}/tokens/heldout")


def push_run(mirror: RootMirror, run_id: str) -> None:
    mirror.push(f"runs/{run_id}")
    mirror.push("state")


def sync_stage(layout: RunLayout) -> None:
    """After a stage: push the run's folder and the state when ``layout`` is the mirror of a URL root."""
    mirror = _ACTIVE.get(layout.root)
    if mirror is not None:
        push_run(mirror, layout.run_id)


@contextmanager
def open_root(
    root: str, run_id: str, storage_options: dict | None = None, cache_dir: str | None = None
) -> Iterator[RunLayout]:
    """Hold ``root`` for ``run_id`` and yield the run's layout; a URL root through a synced local mirror."""
    if not is_remote(root):
        with RootLock(root, run_id):
            yield RunLayout.create(root, run_id)
        return
    mirror = RootMirror(root, cache_dir or default_cache_dir(root), check_storage_options(storage_options or {}))
    with ExitStack() as stack:
        stack.enter_context(RootLock(mirror.local, run_id))
        remote_lock = RemoteRootLock(mirror, run_id).acquire()
        stack.callback(remote_lock.release)
        _pull_for_run(mirror, run_id)
        layout = RunLayout.create(mirror.local, run_id)
        _ACTIVE[layout.root] = mirror
        stack.callback(_ACTIVE.pop, layout.root, None)
        stack.callback(push_run, mirror, run_id)  # runs first: finished or failed, the remote gets the work
        yield layout
