"""Progress artifacts, log lines and per-stage markdown reports for Prefect tasks.

cpt_core stages report progress through a plain callback; ``PrefectProgress`` turns it into a Prefect
progress artifact (throttled: the API is not hammered by per-document updates) plus log lines. Each stage's
manifest becomes a markdown artifact and a file under the run's ``report/`` folder, so the same report is in
the Prefect UI and on disk; the curate flow adds one report over all its steps (``write_curate_report``).
When a stage finishes, its progress artifact is set to 100 % (a stage whose total was unknown, such as a
crawl, would otherwise stay at 0 %).

Publishing an artifact is a UI nicety and never fails a stage; a failure is logged as a warning and counted
per run, and the run report shows the count.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections import Counter
from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.exceptions import MissingContextError

from cpt_core.report.markdown import stage_markdown, write_report


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    key = "-".join(parts).lower()
    return re.sub(r"[^a-z0-9-]+", "-", key).strip("-")[:100]


# Artifact publishing failures per run id, and the open progress artifacts per key (so the stage's end can
# set them to 100 %). Tasks of one flow run share this process.
_LOCK = threading.Lock()
_FAILURES: Counter = Counter()
_OPEN: dict[str, PrefectProgress] = {}


def artifact_failed(run_id: str, what: str, err: Exception) -> None:
    """Log a failed artifact publication as a warning and count it for the run report."""
    with _LOCK:
        _FAILURES[run_id] += 1
    _logger().warning("%s not published to Prefect (the file on disk is complete): %s", what, err)


def artifact_failures(run_id: str) -> int:
    """How many artifacts of ``run_id`` failed to publish in this process."""
    with _LOCK:
        return _FAILURES[run_id]


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
        self.run_id = run_id
        self.key = artifact_key(run_id, stage, "progress")
        self.interval_s = interval_s
        self.last = 0.0
        self.artifact_id = None
        self.logger = _logger()
        with _LOCK:
            _OPEN[self.key] = self

    def __call__(self, done: int, total: int | None, message: str) -> None:
        now = time.monotonic()
        final = bool(total) and done >= total
        if now - self.last < self.interval_s and not final:
            return
        self.last = now
        pct = min(100.0, 100.0 * done / total) if total else 0.0
        of = f"/{total}" if total else ""
        self.logger.info("[%s] %s%s %s", self.stage, done, of, message)
        self._publish(pct, f"{self.stage}: {message}")

    def _publish(self, pct: float, description: str) -> None:
        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(pct, key=self.key, description=description)
            else:
                update_progress_artifact(self.artifact_id, pct, description=description)
        except Exception as err:  # a UI nicety must never fail a stage
            artifact_failed(self.run_id, f"{self.stage} progress", err)

    def complete(self) -> None:
        """The stage has finished: its progress reads 100 %."""
        self._publish(100.0, f"{self.stage}: done")


def complete_progress(stage: str, run_id: str) -> None:
    """Set the stage's progress artifact, if it has one, to 100 %."""
    with _LOCK:
        progress = _OPEN.pop(artifact_key(run_id, stage, "progress"), None)
    if progress is not None:
        progress.complete()


def publish_stage(stage: str, run_id: str, manifest: dict, report_dir: Path) -> None:
    """Log the stage's summary line and publish its report as a markdown artifact and a file."""
    logger = _logger()
    summary = manifest.get("summary", {})
    if manifest.get("skipped"):
        logger.info("[%s] already complete for this input and config: skipped", stage)
    elif summary.get("log_line"):
        logger.info("[%s] %s", stage, summary["log_line"])
    complete_progress(stage, run_id)
    markdown = stage_markdown(stage, manifest)
    write_report(report_dir, f"{stage.replace('/', '_')}.md", markdown)
    try:
        create_markdown_artifact(markdown, key=artifact_key(run_id, stage), description=f"{stage} report")
    except Exception as err:
        artifact_failed(run_id, f"{stage} report", err)


def png_markdown(path: Path, title: str) -> str:
    """Embed a PNG in markdown as a data URL, so the Prefect UI shows it without a file server."""
    return f"![{title}]({png_data_url(path)})"


def write_run_report(layout, stages: dict, base_model: str, notes: list[str], decision: dict | None = None) -> Path:
    """The final report: per-stage table, base vs trained, decision; loss curve and eval deltas as images.

    ``decision`` is the run's outcome when no promote stage wrote one (a data refresh); ``base_model`` is empty
    for a run that involves no model."""
    import json

    from cpt_core.report.markdown import run_markdown
    from cpt_core.report.plots import docs_per_stage_png, eval_delta_png, loss_curve_png

    results_path = layout.eval / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    decision_path = layout.run / "promote" / "decision.json"
    if decision_path.exists():
        decision = json.loads(decision_path.read_text())
    decision = decision or {}
    images = []
    funnel = docs_per_stage_png(stages, layout.report / "docs_per_stage.png")
    if funnel is not None:
        images.append(("Documents per stage", funnel))
    metrics = layout.model / "metrics.jsonl"
    if metrics.exists():
        images.append(("Training loss", loss_curve_png(metrics, layout.report / "loss_curve.png")))
    if results:
        images.append(("Base vs trained", eval_delta_png(results, layout.report / "eval_delta.png")))
    publish_tables_and_images(layout.run_id, stages, images)
    try:
        create_markdown_artifact(
            ui_report(layout.run_id, stages, results, decision, base_model, notes, images,
                      artifact_failures(layout.run_id)),
            key=artifact_key(layout.run_id, "run-report"),
            description="run report",
        )  # fmt: skip
    except Exception as err:
        artifact_failed(layout.run_id, "run report", err)
    # The file is written last, so its count includes the run report's own artifact.
    failures = artifact_failures(layout.run_id)
    markdown = run_markdown(layout.run_id, stages, results, decision, base_model, notes, artifact_failures=failures)
    return write_report(layout.report, "run_report.md", markdown)


def publish_tables_and_images(run_id: str, stages: dict, images: list[tuple[str, Path]]) -> None:
    """The stage table as a table artifact and each plot as an image artifact (a data URL: the UI has no
    file server), next to the markdown report."""
    from cpt_core.report.markdown import stage_records

    publish_table(run_id, "stages", stage_records(stages))
    for title, png in images:
        publish_image(run_id, title, png)


def png_data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def publish_image(run_id: str, title: str, png: Path) -> None:
    """One plot as an image artifact (a data URL: the UI has no file server)."""
    try:
        create_image_artifact(png_data_url(png), key=artifact_key(run_id, title), description=title)
    except Exception as err:
        artifact_failed(run_id, f"{title} image", err)


def publish_table(run_id: str, name: str, records: list[dict]) -> None:
    try:
        create_table_artifact(records, key=artifact_key(run_id, name), description=name)
    except Exception as err:
        artifact_failed(run_id, f"{name} table", err)


CURATE_PLOT = "Documents per language and curation step"


def write_curate_report(layout, manifests: dict[str, dict]) -> Path:
    """The curation report (``cpt_core.report.curate``): ``report/curate.md`` with its plot beside it, and
    in Prefect a markdown artifact (the plot embedded as a data URL), the plot as an image artifact and the
    funnel and profile as table artifacts."""
    from cpt_core.report.curate import corpus_profile, curate_markdown, funnel_records, profile_records
    from cpt_core.report.plots import language_funnel_png

    run_id = layout.run_id
    png = language_funnel_png(manifests, layout.report / "curate_funnel.png")
    images = {CURATE_PLOT: png.name} if png else {}
    path = write_report(layout.report, "curate.md", curate_markdown(run_id, manifests, images))
    try:
        ui = curate_markdown(run_id, manifests, {CURATE_PLOT: png_data_url(png)} if png else {})
        create_markdown_artifact(ui, key=artifact_key(run_id, "curate-report"), description="curation report")
    except Exception as err:
        artifact_failed(run_id, "curation report", err)
    if png:
        publish_image(run_id, CURATE_PLOT, png)
    publish_table(run_id, "curate-funnel", funnel_records(manifests))
    profile = corpus_profile(manifests)
    if profile:
        publish_table(run_id, "curate-profile", profile_records(profile))
    return path


def ui_report(run_id, stages, results, decision, base_model, notes, images, failures) -> str:
    """The run report for the Prefect UI: the plots embedded as data URLs instead of the file's relative
    links (the UI has no file server, so a relative link shows as a broken image)."""
    from cpt_core.report.markdown import run_markdown

    markdown = run_markdown(run_id, stages, results, decision, base_model, notes, images={}, artifact_failures=failures)
    if not images:
        return markdown
    return markdown + "\n## Plots\n\n" + "\n\n".join(png_markdown(png, title) for title, png in images) + "\n"
