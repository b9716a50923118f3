"""State that outlives a run, and when other runs may see it.

What a run adds to ``<root>/state/`` (its crawl state rows, its dedup index entries) is written under its own
run id as soon as the stage that produces it has finished, so the run's own retry resumes from it. Other runs
see it only once the run has *finished* with an outcome that makes its data "learned":

| outcome       | recorded by            | visible to later runs? | why |
|---------------|------------------------|------------------------|-----|
| ``promoted``  | the promote stage      | yes | its documents are in the champion |
| ``nothing_new`` | the flow, after curate | yes | it only confirmed pages already learned |
| ``data_only`` | the data-refresh flow   | yes | its documents wait for a train-eval run; later refreshes do not refetch them |
| ``rejected``  | the promote stage      | no  | no model kept its documents: the next run fetches and trains on them again |
| failed        | nobody (no record)     | no  | its own retry resumes; other runs ignore it |

Which runs are visible is decided once, when the run starts, and pinned in ``<run>/state_view.json``: a retry
sees exactly what its first attempt saw, so its stage keys match and finished stages are reused, even if
another run finished in between.

A ``train-eval`` run over a ``data_only`` run's data continues that run (same run id) and replaces its
outcome with ``promoted`` or ``rejected``: rejected, its pages count as unseen again, like any rejected run's.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from cpt_core.io import atomic_write_json

OUTCOMES = ("promoted", "rejected", "nothing_new", "data_only")
VISIBLE_OUTCOMES = ("promoted", "nothing_new", "data_only")
FINISHED_DIR = "finished"
VIEW_FILE = "state_view.json"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_outcome(state_dir: Path, run_id: str, outcome: str, detail: dict | None = None) -> Path:
    """Mark ``run_id`` finished with ``outcome`` (atomic; a rerun of a finished run rewrites the same fact)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown run outcome {outcome!r}; outcomes are {', '.join(OUTCOMES)}")
    path = Path(state_dir) / FINISHED_DIR / f"{run_id}.json"
    previous = read_outcome(state_dir, run_id)
    finished_at = previous["finished_at"] if previous and previous["outcome"] == outcome else _now()
    record = {"run_id": run_id, "outcome": outcome, "finished_at": finished_at, "detail": detail or {}}
    atomic_write_json(path, record)
    return path


def read_outcome(state_dir: Path, run_id: str) -> dict | None:
    path = Path(state_dir) / FINISHED_DIR / f"{run_id}.json"
    if not path.exists():
        return None
    return _load_record(path)


def _load_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"run outcome file {path} is not valid JSON ({err}); delete it to treat that run as unfinished"
        ) from None
    if not isinstance(record, dict) or record.get("outcome") not in OUTCOMES:
        raise ValueError(f"run outcome file {path} has no valid 'outcome' (one of {', '.join(OUTCOMES)})")
    return record


def finished_runs(state_dir: Path) -> list[dict]:
    """Every finished run's record, oldest first (by finish time, then run id)."""
    folder = Path(state_dir) / FINISHED_DIR
    if not folder.is_dir():
        return []
    records = [_load_record(p) for p in folder.glob("*.json")]
    return sorted(records, key=lambda r: (r["finished_at"], r["run_id"]))


def visible_runs(state_dir: Path, run_id: str) -> list[str]:
    """Run ids whose state ``run_id`` may use, as pinned when ``run_id`` started (pinning it now if not yet).

    The pin lives in ``<state_dir>/../runs/<run_id>/state_view.json``.
    """
    state_dir = Path(state_dir)
    view = state_dir.parent / "runs" / run_id / VIEW_FILE
    if view.exists():
        try:
            return list(json.loads(view.read_text(encoding="utf-8"))["visible_runs"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{view} is unreadable ({err}); delete it to pin the state view again") from None
    runs = [r["run_id"] for r in finished_runs(state_dir) if r["outcome"] in VISIBLE_OUTCOMES and r["run_id"] != run_id]
    atomic_write_json(view, {"run_id": run_id, "pinned_at": _now(), "visible_runs": runs})
    return runs
