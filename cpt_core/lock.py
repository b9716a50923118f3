"""One run at a time per root: an exclusive lock on ``<root>/state/.root.lock``.

Two runs on one root would interleave their state (crawl state, dedup index, registry), so a run holds
this lock from start to end. It is a non-blocking ``flock``: a second run fails at once, naming the run that
holds the root and its pid, instead of queueing behind it for hours. The holder writes its pid and run id
into the lock file so that message can name it. ``flock`` locks belong to the open file, so a holder that
dies (even by SIGKILL) releases the lock with it; a stale lock file left behind locks nothing. The file is
never deleted: removing it while another process waits on it would let two holders lock two different files.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path


class RootBusyError(RuntimeError):
    """Another run holds the root."""

    def __init__(self, root: Path, holder: dict):
        self.root, self.holder = root, holder
        super().__init__(
            f"the root {root} is in use by run {holder.get('run_id', '<unknown>')} "
            f"(pid {holder.get('pid', '<unknown>')}, since {holder.get('since', '<unknown>')}): two runs on one "
            "root would interleave its state. Wait for that run to finish, or use another root."
        )


def _read_holder(path: Path) -> dict:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


class RootLock:
    """``with RootLock(root, run_id): ...`` holds ``root`` for ``run_id``, or raises ``RootBusyError`` at once."""

    def __init__(self, root: str | Path, run_id: str):
        self.root = Path(root).expanduser().resolve()
        self.run_id = run_id
        self.path = self.root / "state" / ".root.lock"
        self._file = None

    def acquire(self) -> RootLock:
        if self._file is not None:
            raise RuntimeError(f"the lock on {self.root} is already held by this RootLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # "a", not "w": opening must not truncate the holder's pid and run id before we hold the lock.
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise RootBusyError(self.root, _read_holder(self.path)) from None
        handle.seek(0)
        handle.truncate()
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        handle.write(json.dumps({"pid": os.getpid(), "run_id": self.run_id, "since": since}))
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> RootLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
