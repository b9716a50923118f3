"""Flow run names that carry the run id, so the Prefect UI lists "knowledge-refresh-weekly-20250106-030000"
instead of a random "imaginary-barracuda".

Prefect computes the name before the flow body runs, from the flow's parameters: a ``layout`` parameter
(the stage flows) has the run id; a ``config`` parameter (the refresh) has it once ``with_run_id`` fills it,
which is what the flow body does first, so the name is computed the same way (overrides applied). A name
must never fail a run: anything unexpected falls back to the flow's name and the current UTC time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from cpt_core.config import RunConfig, apply_overrides, validate_config


def run_id_of(parameters: dict) -> str | None:
    """The run id that a flow called with ``parameters`` will use, or None when it cannot be told."""
    layout = parameters.get("layout")
    run_id = getattr(layout, "run_id", None) or (layout.get("run_id") if isinstance(layout, dict) else None)
    run_id = run_id or parameters.get("data_run")  # train-eval continues that run
    if run_id:
        return str(run_id)
    config = parameters.get("config")
    if config is None:
        return None
    data = config.model_dump(mode="json") if isinstance(config, RunConfig) else dict(config)
    if parameters.get("overrides"):
        data = apply_overrides(data, parameters["overrides"])
    return validate_config(data, "flow parameters").with_run_id().run_id


def flow_run_name(flow_name: str) -> Callable[[], str]:
    """A ``flow_run_name=`` callable: ``<flow_name>-<run id>``."""

    def name() -> str:
        try:
            from prefect.runtime import flow_run

            run_id = run_id_of(dict(flow_run.parameters or {}))
        except Exception:  # a name is a label: never fail the run over it
            run_id = None
        if not run_id:
            run_id = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        return f"{flow_name}-{run_id}"

    return name
