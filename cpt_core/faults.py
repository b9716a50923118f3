"""Named kill points, to prove that every stage survives being killed anywhere.

``CPTFLOW_KILL_AT=<point>[@<n>]`` makes the process SIGKILL its whole process group the ``n``-th time (default
the first) it passes ``<point>``, exactly as an out-of-memory kill, a lost node or ``kill -9`` of a worker
would. Unset (always, outside such checks), a point costs one environment lookup.

Points: ``crawl:page`` (after a page's record and log line are written), ``extract:document``,
``curate:document`` (each document a curation step passes on), ``tokenize:shards`` (shards written, no
manifest yet), ``train:step`` (a training step reported, the trainer still running), ``evaluate:model`` (one of
the two models scored), ``promote:recorded`` (registry updated, decision not yet written), and
``<stage>:commit`` (a stage's output complete in ``.partial``, not yet renamed into place).
"""

from __future__ import annotations

import os
import signal

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
