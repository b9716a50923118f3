"""One run per root: the second acquirer fails at once, naming the holder; a dead holder frees the root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cpt_core.lock import RootBusyError, RootLock

REPO = Path(__file__).resolve().parents[1]


def hold_root_in_subprocess(root: Path, run_id: str) -> subprocess.Popen:
    """A process that takes the root's lock, says so on stdout and waits to be killed."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from cpt_core.lock import RootLock
        lock = RootLock({str(root)!r}, {run_id!r}).acquire()
        print("locked", flush=True)
        time.sleep(120)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_acquirer_fails_at_once_naming_the_holder(tmp_path):
    root = tmp_path / "root"
    with RootLock(root, "run-a"):
        with pytest.raises(RootBusyError) as err:
            RootLock(root, "run-b").acquire()
        message = str(err.value)
        assert str(root.resolve()) in message and "run run-a" in message and f"pid {os.getpid()}" in message
        assert "wait" in message.lower() and "another root" in message
    # Released: the next run takes the root.
    with RootLock(root, "run-b") as lock:
        assert lock.path == root.resolve() / "state" / ".root.lock"
        assert '"run_id": "run-b"' in lock.path.read_text()
    assert lock.path.read_text() == ""


def test_a_killed_holder_releases_the_root(tmp_path):
    root = tmp_path / "root"
    proc = hold_root_in_subprocess(root, "run-dead")
    try:
        with pytest.raises(RootBusyError, match=f"run run-dead \\(pid {proc.pid}"):
            RootLock(root, "run-b").acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # The lock file still names the dead holder, but flock died with its process.
    assert "run-dead" in (root / "state" / ".root.lock").read_text()
    with RootLock(root, "run-b"):
        pass
