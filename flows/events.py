"""Custom Prefect events of cptflow, and what the deployments do with them.

``cptflow notify snapshot PATH`` emits ``cptflow.snapshot.ready`` for a new snapshot of documents (a folder or
fsspec URL, e.g. the nightly export of a wiki). The ``data-refresh/daily`` deployment carries a trigger on
that event (``deployments/prefect.yaml``): the server's automation starts a data-refresh run with the path as
its ``snapshot`` parameter, so the snapshot is ingested as a documents source beside the configured ones.
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
