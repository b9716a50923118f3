"""The knowledge-refresh flow with its root on S3: a local S3 server (moto's server mode) on 127.0.0.1.

The run works in a local mirror and pushes to the bucket; a rerun of the same run id on a worker whose mirror
is gone pulls the run back from the bucket and skips every finished stage.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.knowledge_refresh import knowledge_refresh
from tests.flows.conftest import free_port, small_config

s3fs = pytest.importorskip("s3fs")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

BUCKET = "cptflow-test"
SECRET = "cptflow-test-secret-7f3a"


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """``moto_server`` on a free port, stopped by its pid at the end."""
    port = free_port()
    server = Path(sys.executable).with_name("moto_server")
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start (exit {proc.poll()})") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def bucket(s3_endpoint):
    patch = pytest.MonkeyPatch()
    # moto accepts any credentials; s3fs reads them from the environment, as on a real worker
    patch.setenv("AWS_ACCESS_KEY_ID", "cptflow-test-key")
    patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.mkdir(BUCKET)
    yield fs
    patch.undo()


@pytest.fixture(scope="module")
def s3_runs(bucket, s3_endpoint, tiny_model, tmp_path_factory):
    cache = tmp_path_factory.mktemp("mirror") / "cache"
    config = small_config(f"s3://{BUCKET}/cpt", tiny_model)
    config = config.model_copy(update={"storage_options": {"endpoint_url": s3_endpoint}, "cache_dir": str(cache)})
    first = knowledge_refresh(config)
    shutil.rmtree(cache)  # another worker: nothing local, and its mirror at another path
    second = knowledge_refresh(config.model_copy(update={"cache_dir": str(cache.with_name("elsewhere"))}))
    bucket.invalidate_cache()
    return first, second, cache


def _json(fs, key: str):
    return json.loads(fs.cat_file(f"{BUCKET}/cpt/{key}"))


def test_the_run_is_in_the_bucket(s3_runs, bucket):
    first, _, cache = s3_runs
    assert first["outcome"] in ("promoted", "rejected")
    assert first["run_dir"] == str(cache.resolve() / "runs" / "r1")
    run = "runs/r1"
    for stage in ("ingest/crawl", "ingest/extract", "curate/near_dedup", "tokens", "model", "eval", "promote"):
        manifest = _json(bucket, f"{run}/{stage}/_manifest.json")
        assert manifest["summary"] is not None, stage
    assert bucket.exists(f"{BUCKET}/cpt/{run}/model/final/model.safetensors")
    assert bucket.cat_file(f"{BUCKET}/cpt/{run}/report/run_report.md").startswith(b"#")
    assert not any(".partial/" in key for key in bucket.find(f"{BUCKET}/cpt/runs"))
    registry = _json(bucket, "state/registry.json")
    assert [e["run_id"] for e in registry["history"]] == ["r1"]
    assert _json(bucket, "state/finished/r1.json")["outcome"] == first["outcome"]
    assert bucket.exists(f"{BUCKET}/cpt/state/crawl.sqlite")
    assert not bucket.exists(f"{BUCKET}/cpt/state/.root.lock.json")  # released
    assert not any(key.endswith(".lock") for key in bucket.find(f"{BUCKET}/cpt/state"))


def test_a_rerun_elsewhere_resumes_from_the_bucket(s3_runs):
    first, second, _ = s3_runs
    assert second["outcome"] == first["outcome"]
    assert "crawl" in second["skipped"] and "train" in second["skipped"]
    assert set(second["skipped"]) >= {"crawl", "extract", "curate/language", "tokenize", "train", "evaluate"}


def test_no_credential_reaches_the_bucket(s3_runs, bucket):
    for key in bucket.find(f"{BUCKET}/cpt"):
        if key.endswith((".json", ".md", ".jsonl")):
            assert SECRET.encode() not in bucket.cat_file(key), key


def test_registry_commands_read_the_bucket(s3_runs, s3_endpoint, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # the CLI takes the endpoint from the environment
    root = f"s3://{BUCKET}/cpt"
    listed = CliRunner().invoke(app, ["registry", "ls", "--root", root])
    assert listed.exit_code == 0, listed.output
    assert " r1 " in listed.output and "missing" not in listed.output
    shown = CliRunner().invoke(app, ["registry", "show", "r1", "--root", root])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["lineage"][0] == "r1"
    refused = CliRunner().invoke(app, ["registry", "reset-champion", "--root", root, "--base"])
    assert refused.exit_code == 1 and "local root" in refused.output
