"""A run killed in the middle of training, then started again, completes without redoing finished stages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml

from cpt_core.curate.pipeline import STEPS
from cpt_core.layout import RunLayout
from tests.doc_files import read_docs
from tests.flows.conftest import small_config


def _cli_env() -> dict:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = PREFECT_API_URL.value()  # the session harness's server: no second start-up
    return env


def _start(config_path, env):
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", str(config_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # one process group: the training subprocess dies with it
    )


def test_killed_during_training_then_rerun(tmp_path, tiny_model, prefect_harness):
    config = small_config(
        tmp_path, tiny_model, run_id="crash", train={"max_steps": 400, "checkpoint_every": 20, "log_every": 20}
    )
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    layout = RunLayout(tmp_path.resolve(), "crash")
    checkpoints = layout.model.with_name("model.checkpoints")
    env = _cli_env()

    proc = _start(config_path, env)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if any(checkpoints.glob("step-*/step.json")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"flow ended before the first checkpoint:\n{proc.stdout.read()[-3000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (layout.model / "_manifest.json").exists(), "killed before training finished"

    curated_before = read_docs(layout.curated / "documents")
    tokens_manifest = json.loads((layout.tokens / "_manifest.json").read_text())

    proc = _start(config_path, env)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-4000:]
    assert "report:" in out

    # Finished stages were not redone: same manifests, same documents, no duplicates.
    assert json.loads((layout.tokens / "_manifest.json").read_text())["started_at"] == tokens_manifest["started_at"]
    curated_after = read_docs(layout.curated / "documents")
    assert curated_after == curated_before
    assert len({d["id"] for d in curated_after}) == len(curated_after)
    for step in STEPS:
        assert (layout.curate_step(step) / "_manifest.json").exists()
    # Training continued from its checkpoint instead of starting over.
    summary = json.loads((layout.model / "_manifest.json").read_text())["summary"]
    assert summary.get("resumed_from_step", 0) >= 20
    assert summary["steps"] == 400
    steps = [json.loads(x)["step"] for x in (layout.model / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 400
    assert (layout.report / "run_report.md").exists()

