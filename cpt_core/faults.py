"""Named kill points, to prove that every stage survives being killed anywhere.

``CPTFLOW_KILL_AT=<point>[@<n>]`` makes the process SIGKILL its whole process group the ``n``-th time (default
the first) it passes ``<point>``, exactly as an out-of-memory kill, a lost node or ``kill -9`` of a worker
would. Unset (always, outside such checks), a point costs one environment lookup.

Points: ``crawl:page`` (after a page's record and log line are written), ``extract:document``,
``curate:document`` (each document a curation step passes on), ``tokenize:shards`` (shards written, no
manifest yet), ``train:step`` (a training step reported, the trainer still running), ``evaluate:model`` (one of
the two models scored), ``promote:recorded`` (registry updated, decision not yet written), and
``<stage>:commit`` (a stage's output complete in ``.partial``, not yet renamed into place).

Which failures are worth a retry (``is_transient``): a lost connection, a timeout, a busy or interrupted
system call, or an explicit ``TransientError``, also when another exception was raised *from* one. A bad
config, bad data or a missing input fails the same way every time, so retrying it only delays the error.
How often and how long to wait is ``RetryConfig``, the run config's ``retry`` section.
"""

from __future__ import annotations

import errno
import os
import signal

from pydantic import BaseModel, ConfigDict, Field


class TransientError(RuntimeError):
    """A failure that may well not happen again (a flaky service, a storage hiccup): retry the stage."""


class RetryConfig(BaseModel):
    """Retries of a stage task after a transient failure (never after a config or data error).

    Retries resume the stage from its own partial output (the stage manifests), so they are cheap; they only
    change when a run ends, never what it produces (no stage key holds them).
    """

    model_config = ConfigDict(extra="forbid")
    retries: int = Field(2, ge=0, le=10, description="retries of a stage after a transient error")
    delay_s: float = Field(5.0, ge=0, description="wait before the first retry; doubled before each later one")
    train_retries: int = Field(1, ge=0, le=10, description="retries of training (each resumes from a checkpoint)")

    def delays(self, retries: int | None = None) -> list[float]:
        """The wait before each retry: ``delay_s``, then doubled each time."""
        return [self.delay_s * 2**i for i in range(self.retries if retries is None else retries)]


# OSErrors whose errno says "try again": the same call may well succeed a moment later.
_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED,
                     errno.ECONNABORTED, errno.ENETDOWN, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EPIPE}  # fmt: skip
_TRANSIENT_NAMES = {"TransportError", "ConnectError", "ReadTimeout", "WriteTimeout", "PoolTimeout", "ConnectTimeout",
                    "RemoteProtocolError", "ServerDisconnectedError", "ClientConnectionError", "ConnectionError",
                    "Timeout"}  # fmt: skip


def is_transient(err: BaseException | None) -> bool:
    """Whether ``err`` (or the exception it was raised from) is a failure worth retrying.

    HTTP clients' transport errors (httpx, aiohttp) are recognised by their class names, so this module
    needs none of them installed.
    """
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, (TransientError, ConnectionError, TimeoutError, InterruptedError)):
            return True
        if isinstance(err, OSError) and err.errno in _TRANSIENT_ERRNOS:
            return True
        if {cls.__name__ for cls in type(err).__mro__} & _TRANSIENT_NAMES:
            return True
        err, seen = err.__cause__, seen + 1
    return False

ENV = "CPTFLOW_KILL_AT"
_passes: dict[str, int] = {}


def fault_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, nth = spec.partition("@")
    if point != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] >= int(nth or 1):
        os.killpg(os.getpgrp(), signal.SIGKILL)
