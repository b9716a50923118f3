"""Custom Prefect events of cptflow, and what the deployments do with them.

``cptflow notify snapshot PATH`` emits ``cptflow.snapshot.ready`` for a new snapshot of documents (a folder or
fsspec URL, e.g. the nightly export of a wiki). The ``data-refresh/daily`` deployment carries a trigger on
that event (``deployments/prefect.yaml``): the server's automation starts a data-refresh run with the path as
its ``snapshot`` parameter, so the snapshot is ingested as a documents source beside the configured ones.

A flow run whose worker or node dies mid-run has nobody left to report its end, and would read Running
forever. Each flow run sends ``prefect.flow-run.heartbeat`` events every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
seconds (set on the worker; Prefect's minimum is 30): ``crash_silent_runs_automation`` (written to
``deployments/automations.yaml``) is Prefect's proactive trigger for "zombie" runs, which marks a run Crashed
when no heartbeat, and no final state, follows its last heartbeat within ``within_s`` seconds.
"""

from __future__ import annotations

SNAPSHOT_READY = "cptflow.snapshot.ready"
SNAPSHOT_RESOURCE = "cptflow.snapshot"


def snapshot_resource_id(path: str) -> str:
    """The event's resource id: ``cptflow.snapshot.<path>``, so a trigger can match ``cptflow.snapshot.*``."""
    return f"{SNAPSHOT_RESOURCE}.{path}"


def emit_snapshot_ready(path: str, source: str = "snapshot"):
    """Emit ``cptflow.snapshot.ready`` for ``path``; returns the event (None when events are disabled)."""
    from prefect.events import emit_event

    return emit_event(
        event=SNAPSHOT_READY,
        resource={
            "prefect.resource.id": snapshot_resource_id(path),
            "prefect.resource.name": source,
            "cptflow.snapshot.path": path,
            "cptflow.snapshot.source": source,
        },
        payload={"path": path, "source": source},
    )


def snapshot_trigger(deployment: str) -> dict:
    """A prefect.yaml deployment trigger: run ``deployment`` on each snapshot event, with its path and source."""
    return {
        "type": "event",
        "name": f"{deployment} on {SNAPSHOT_READY}",
        "description": "A new documents snapshot is ready (`cptflow notify snapshot PATH`): ingest it.",
        "enabled": True,
        "match": {"prefect.resource.id": f"{SNAPSHOT_RESOURCE}.*"},
        "expect": [SNAPSHOT_READY],
        "posture": "Reactive",
        "threshold": 1,
        "within": 0,
        "parameters": {
            "snapshot": "{{ event.payload.path }}",
            "snapshot_source": "{{ event.payload.source }}",
        },
    }


HEARTBEAT = "prefect.flow-run.heartbeat"
HEARTBEAT_FREQUENCY_S = 60  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY on the workers (README, deployments/)
# Three missed heartbeats: a busy flow-run process that is late with one beat is not crashed.
SILENCE_S = 3 * HEARTBEAT_FREQUENCY_S
FINAL_STATE_EVENTS = [f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed")]


def crash_silent_runs_automation(within_s: int = SILENCE_S) -> dict:
    """A server automation (``prefect automation create --from-file``): a flow run that sent a heartbeat, then
    neither another heartbeat nor a final state within ``within_s`` seconds, is set to Crashed."""
    return {
        "name": "cptflow: crash flow runs whose heartbeats stopped",
        "description": "A flow run that stops sending heartbeats (its worker or node died) is marked Crashed, so "
        "it does not read Running forever; rerun it with the same run_id to resume.",
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "match": {"prefect.resource.id": ["prefect.flow-run.*"]},
            "for_each": ["prefect.resource.id"],
            "after": [HEARTBEAT],
            "expect": [HEARTBEAT, *FINAL_STATE_EVENTS],
            "threshold": 1,
            "within": within_s,
        },
        "actions": [
            {
                "type": "change-flow-run-state",
                "state": "CRASHED",
                "message": f"No heartbeat for {within_s} s: the flow run's worker or node was lost.",
            }
        ],
    }
