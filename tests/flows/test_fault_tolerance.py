"""Fault tolerance through Prefect, in a small real flow under the session's test harness: a transient error is
retried and the run completes, a data error is not retried, and artifacts that fail to publish are warnings
counted in the run report. Task runs, states and logs are read back through the Prefect API."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from prefect import flow

import tasks.reporting as reporting
import tasks.stages as stages
from cpt_core.curate.pipeline import CurateConfig
from cpt_core.faults import RetryConfig
from cpt_core.layout import RunLayout
from tests.doc_files import read_docs, write_docs

pytestmark = pytest.mark.usefixtures("prefect_harness")

NO_WAIT = RetryConfig(retries=2, delay_s=0.0)


@flow(name="small-curate")
def small_curate(root: str, run_id: str, input_dir: str, retry: RetryConfig) -> str:
    """One real stage task (exact dedup) and the run report, as the deployable flows run them."""
    layout = RunLayout.create(root, run_id)
    manifest = stages.with_retries(stages.curate_step_task, retry)("exact_dedup", CurateConfig(), layout, Path(input_dir))
    return str(reporting.write_run_report(layout, {"curate/exact_dedup": manifest}, "base", []))


@pytest.fixture()
def extracted(tmp_path) -> Path:
    text = "The export format changed in January and the importer now reads both versions. "
    docs = [{"id": f"d{i}", "text": f"{text * 3} Document {i}."} for i in range(4)]
    return write_docs(tmp_path / "extract", [*docs, {**docs[0], "id": "copy"}])


def _run(tmp_path, extracted, retry=NO_WAIT):
    run_id = f"faults-{uuid.uuid4().hex[:8]}"
    state = small_curate(str(tmp_path / "root"), run_id, str(extracted), retry, return_state=True)
    return state, RunLayout(tmp_path / "root", run_id)


def _failing_once(monkeypatch, error: Exception) -> list[int]:
    """Make the curate stage raise ``error`` on its first call and run normally after; returns the call list."""
    calls: list[int] = []
    real = stages.run_curate_step

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(stages, "run_curate_step", flaky)
    return calls


async def _task_run(flow_run_id, name: str):
    """The task run called ``name`` of the flow run, and the names of the states it went through."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        run = next(r for r in runs if r.name == name)
        return run, [s.name for s in await client.read_task_run_states(run.id)]


async def _warnings(flow_run_id) -> list[str]:
    """The WARNING (and worse) log lines the flow run and its task runs sent to the API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]), level=LogFilterLevel(ge_=30))
    async with get_client() as client:
        return [log.message for log in await client.read_logs(log_filter=log_filter)]


def test_stage_tasks_retry_only_transient_errors_by_default():
    for task in (stages.crawl_task, stages.extract_task, stages.curate_step_task, stages.tokenize_task,
                 stages.evaluate_task, stages.promote_task, stages.train_task):  # fmt: skip
        assert task.retries >= 1 and task.retry_condition_fn is stages.transient_only, task.name
    assert stages.curate_step_task.retries == RetryConfig().retries == 2
    configured = stages.with_retries(stages.crawl_task, RetryConfig(retries=4, delay_s=1.0))
    assert configured.retries == 4 and configured.retry_delay_seconds == [1.0, 2.0, 4.0, 8.0]
    assert configured.retry_condition_fn is stages.transient_only


def test_a_transient_error_is_retried_and_the_run_completes(tmp_path, extracted, monkeypatch):
    calls = _failing_once(monkeypatch, ConnectionResetError(104, "Connection reset by peer"))
    state, layout = _run(tmp_path, extracted)
    assert state.is_completed(), state
    assert len(calls) == 2
    run, history = asyncio.run(_task_run(state.state_details.flow_run_id, "curate-exact_dedup"))
    assert run.run_count == 2 and run.state.is_completed(), (run.run_count, history)
    assert "Retrying" in history, history
    kept = read_docs(layout.curate_step("exact_dedup") / "documents")
    assert sorted(d["id"] for d in kept) == ["d0", "d1", "d2", "d3"], "the retry neither lost nor duplicated"


def test_a_data_error_is_not_retried(tmp_path, extracted, monkeypatch):
    calls = _failing_once(monkeypatch, ValueError("curate: field 'text' missing in document 7"))
    state, _ = _run(tmp_path, extracted)
    assert state.is_failed(), state
    assert len(calls) == 1
    flow_run_id = state.state_details.flow_run_id
    run, history = asyncio.run(_task_run(flow_run_id, "curate-exact_dedup"))
    assert run.run_count == 1 and run.state.is_failed() and "Retrying" not in history, history
    assert any("not a transient error, not retried" in m for m in asyncio.run(_warnings(flow_run_id)))


def test_artifacts_that_fail_to_publish_are_warnings_counted_in_the_report(tmp_path, extracted, monkeypatch):
    attempts: list[str] = []

    def unavailable(name):
        def fail(*args, **kwargs):
            attempts.append(name)
            raise RuntimeError(f"{name}: 503 Service Unavailable")

        return fail

    for name in ("create_markdown_artifact", "create_table_artifact", "create_image_artifact",
                 "create_progress_artifact", "update_progress_artifact"):  # fmt: skip
        monkeypatch.setattr(reporting, name, unavailable(name))
    state, layout = _run(tmp_path, extracted)
    assert state.is_completed(), state
    assert {"create_markdown_artifact", "create_table_artifact", "create_image_artifact",
            "create_progress_artifact"} <= set(attempts), attempts  # fmt: skip
    report = Path(state.result()).read_text()
    assert f"Prefect artifacts that failed to publish: {len(attempts)}\n" in report
    assert reporting.artifact_failures(layout.run_id) == len(attempts)
    warnings = asyncio.run(_warnings(state.state_details.flow_run_id))
    assert any("run report not published" in m and "503 Service Unavailable" in m for m in warnings), warnings
    assert any("curate/exact_dedup report not published" in m for m in warnings), warnings
    # The files on disk are complete all the same.
    assert (layout.report / "curate_exact_dedup.md").exists() and (layout.report / "docs_per_stage.png").exists()
