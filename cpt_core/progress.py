"""Progress reporting without an orchestrator dependency.

Long loops in cpt_core call a ``ProgressFn(done, total, message)``; the Prefect task layer passes one that
updates a progress artifact, the CLI one that logs. ``RateMeter`` turns counts into the log line every long
stage prints: counts, rate and elapsed time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

ProgressFn = Callable[[int, "int | None", str], None]


def no_progress(done: int, total: int | None, message: str) -> None:  # noqa: ARG001
    """The default callback: report nothing."""


def log_progress(logger: logging.Logger) -> ProgressFn:
    """A callback that writes each report as an INFO line."""

    def _report(done: int, total: int | None, message: str) -> None:
        of = f"/{total}" if total else ""
        logger.info("%s%s %s", done, of, message)

    return _report


class RateMeter:
    """Counts items and says how fast they went: ``meter.line("docs")`` -> ``'120 docs in 2.0s (60.0/s)'``."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.count = 0

    def add(self, n: int = 1) -> None:
        self.count += n

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    def line(self, unit: str) -> str:
        return f"{self.count} {unit} in {self.elapsed:.1f}s ({self.rate:.1f}/s)"
