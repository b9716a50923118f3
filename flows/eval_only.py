"""The eval-only flow: score a given model folder against the champion (or, with none yet, the recipe's base
model) on the recipe's evaluation sets, and report; it promotes only when asked (``promote=True``).

The domain held-out text is ``heldout`` when given, else the champion run's ``tokens/heldout/domain.jsonl``.
The gate (``promote``) judges the model against the champion and the original base as for a trained run;
without ``promote`` the run records no outcome and leaves the registry as it is.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from cpt_core.config import RunConfig
from cpt_core.data.tokenize import HELDOUT_FILE
from cpt_core.evaluate.registry import Registry
from cpt_core.layout import RunLayout
from flows.run_names import flow_run_name
from flows.run_steps import flow_result, open_run, run_config, run_report_task
from tasks.stages import base_model_task, evaluate_task, promote_task, with_retries


def _heldout(layout: RunLayout, heldout: str | None) -> str:
    if heldout is not None:
        if not Path(heldout).expanduser().exists():
            raise ValueError(f"heldout: {heldout} does not exist")
        return str(Path(heldout).expanduser().resolve())
    champion = Registry(layout.registry).champion()
    if champion:
        path = layout.root / "runs" / champion["run_id"] / "tokens" / HELDOUT_FILE
        if path.is_file():
            return str(path)
    raise ValueError(
        "heldout: no domain held-out text given and the root has no champion run with one "
        f"(runs/<champion>/tokens/{HELDOUT_FILE}); pass heldout=<file or folder of JSONL>"
    )


@flow(name="eval-only", flow_run_name=flow_run_name("eval-only"), log_prints=True)
def eval_only(
    config: RunConfig,
    model_dir: str,
    overrides: list[str] | None = None,
    heldout: str | None = None,
    promote: bool = False,
) -> dict:
    """Evaluate ``model_dir`` against the champion (or the base model) and report; gate and promote if asked."""
    config = run_config(config, overrides)
    model = Path(model_dir).expanduser().resolve()
    if not (model / "config.json").is_file():
        raise ValueError(f"model_dir: {model} is not a saved model folder (no config.json)")
    with open_run(config) as layout:
        domain = _heldout(layout, heldout)
        start = with_retries(base_model_task, config.retry)(config.base_model, layout)
        evaluate = with_retries(evaluate_task, config.retry)
        stages = {"evaluate": evaluate(config.evaluate, layout, start["model_dir"], config.knowledge_graph,
                                       trained_dir=str(model), domain_heldout=domain)}  # fmt: skip
        outcome = "evaluated"
        if promote:
            lineage = {"parent": start["parent"], "base_source": start["source"], "evaluated_only": str(model),
                       "config": config.model_dump(mode="json")}  # fmt: skip
            promote_run = with_retries(promote_task, config.retry)
            stages["promote"] = promote_run(config.promote, layout, lineage, model_dir=str(model))
            outcome = "promoted" if stages["promote"]["summary"].get("promote") else "rejected"
        notes = [f"Model {model} scored against {start['parent']} (the run's reference) on {domain}."]
        report = run_report_task(layout, stages, start, notes)
        get_run_logger().info("eval-only %s finished: %s; report %s", config.run_id, outcome, report)
        return flow_result(config, layout, stages, report, outcome, str(model))
