"""Progress artifacts, log lines and per-stage markdown reports for Prefect tasks.

cpt_core stages report progress through a plain callback; ``PrefectProgress`` turns it into a Prefect
progress artifact (throttled: the API is not hammered by per-document updates) plus log lines. Each stage's
manifest becomes a markdown artifact and a file under the run's ``report/`` folder, so the same report is in
the Prefect UI and on disk.
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.exceptions import MissingContextError

from cpt_core.report.markdown import stage_markdown, write_report


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    key = "-".join(parts).lower()
    return re.sub(r"[^a-z0-9-]+", "-", key).strip("-")[:100]


def _logger():
    try:
        return get_run_logger()
    except MissingContextError:
        import logging

        return logging.getLogger("cptflow")


class PrefectProgress:
    """A ``ProgressFn`` that updates a Prefect progress artifact at most every ``interval_s`` seconds."""

    def __init__(self, stage: str, run_id: str, interval_s: float = 2.0):
        self.stage = stage
        self.key = artifact_key(run_id, stage, "progress")
        self.interval_s = interval_s
        self.last = 0.0
        self.artifact_id = None
        self.logger = _logger()

    def __call__(self, done: int, total: int | None, message: str) -> None:
        now = time.monotonic()
        final = bool(total) and done >= total
        if now - self.last < self.interval_s and not final:
            return
        self.last = now
        pct = min(100.0, 100.0 * done / total) if total else 0.0
        of = f"/{total}" if total else ""
        self.logger.info("[%s] %s%s %s", self.stage, done, of, message)
        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(
                    pct, key=self.key, description=f"{self.stage}: {message}"
                )
            else:
                update_progress_artifact(self.artifact_id, pct, description=f"{self.stage}: {message}")
        except Exception as err:  # a UI nicety must never fail a stage
            self.logger.debug("progress artifact not updated: %s", err)


def publish_stage(stage: str, run_id: str, manifest: dict, report_dir: Path) -> None:
    """Log the stage's summary line and publish its report as a markdown artifact and a file."""
    logger = _logger()
    summary = manifest.get("summary", {})
    if manifest.get("skipped"):
        logger.info("[%s] already complete for this input and config: skipped", stage)
    elif summary.get("log_line"):
        logger.info("[%s] %s", stage, summary["log_line"])
    markdown = stage_markdown(stage, manifest)
    write_report(report_dir, f"{stage.replace('/', '_')}.md", markdown)
    try:
        create_markdown_artifact(markdown, key=artifact_key(run_id, stage), description=f"{stage} report")
    except Exception as err:
        logger.debug("markdown artifact not created: %s", err)


def png_markdown(path: Path, title: str) -> str:
    """Embed a PNG in markdown as a data URL, so the Prefect UI shows it without a file server."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"![{title}](data:image/png;base64,{data})"


def write_run_report(layout, stages: dict, base_model: str, notes: list[str]) -> Path:
    """The final report: per-stage table, base vs trained, decision; loss curve and eval deltas as images."""
    import json

    from cpt_core.report.markdown import run_markdown
    from cpt_core.report.plots import eval_delta_png, loss_curve_png

    results_path = layout.eval / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    decision_path = layout.run / "promote" / "decision.json"
    decision = json.loads(decision_path.read_text()) if decision_path.exists() else {}
    images = []
    metrics = layout.model / "metrics.jsonl"
    if metrics.exists():
        images.append(("Training loss", loss_curve_png(metrics, layout.report / "loss_curve.png")))
    if results:
        images.append(("Base vs trained", eval_delta_png(results, layout.report / "eval_delta.png")))
    markdown = run_markdown(layout.run_id, stages, results, decision, base_model, notes)
    path = write_report(layout.report, "run_report.md", markdown)
    ui_markdown = markdown + "\n\n" + "\n\n".join(png_markdown(png, title) for title, png in images)
    try:
        create_markdown_artifact(ui_markdown, key=artifact_key(layout.run_id, "run-report"), description="run report")
    except Exception as err:
        _logger().debug("run report artifact not created: %s", err)
    return path
