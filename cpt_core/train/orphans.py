"""A training process never outlives the stage that launched it.

The trainer runs in its own process group (so a timeout can kill accelerate's launcher and every worker at
once). The price is that a kill of the orchestrator's group (``kill -9``, an out-of-memory kill, a lost
worker) does not reach it. So the launcher puts its pid in ``CPTFLOW_ORCHESTRATOR_PID`` and each training
process watches it: when the orchestrator is gone, the trainer kills its own process group at once instead of
training on as an orphan that would race the rerun for the checkpoint folder.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

ENV = "CPTFLOW_ORCHESTRATOR_PID"
POLL_S = 0.5


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True  # no /proc (not Linux): trust kill(0)
    return fields[0] != "Z"


def exit_with_orchestrator() -> threading.Thread | None:
    """Start a daemon thread that kills this process group once the orchestrator named in the env is gone."""
    pid = int(os.environ.get(ENV) or 0)
    if pid <= 0:
        return None

    def watch() -> None:
        while alive(pid):
            time.sleep(POLL_S)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="orchestrator-watch", daemon=True)
    thread.start()
    return thread
