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

from cpt_core.demo.pages import Page, html_page
from cpt_core.demo.server import serve
from cpt_core.demo.site import DemoSiteConfig, build_site
from flows.knowledge_refresh import knowledge_refresh
from tests.flows.conftest import SMALL_CRAWL, SMALL_SITE, free_port, small_config
from tests.flows.test_weeks import LENIENT, NEW_ARTICLE

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
    """Week 1 on one worker, its rerun on a worker with an empty mirror elsewhere, then week 2 (one new page)
    on a third; returns their results and the mirrors' parent folder."""
    site = build_site(DemoSiteConfig(**{**SMALL_SITE, "n_facts": 8}))
    mirrors = tmp_path_factory.mktemp("mirrors")
    kg = mirrors / "facts.jsonl"
    site.write_knowledge_graph(kg)
    port = free_port()

    def run(run_id: str, mirror: str) -> dict:
        with serve(site, "127.0.0.1", port, slow_delay_s=6.0) as base_url:
            web = {"kind": "web", "crawl": {**SMALL_CRAWL, "seed_urls": [base_url],
                                            "allow_private_hosts": ["127.0.0.1"], "delay_s": 0.0}}
            cfg = small_config(f"s3://{BUCKET}/cpt", tiny_model, run_id=run_id, ingest={"sources": [web]},
                               promote=LENIENT)  # fmt: skip
            update = {"knowledge_graph": str(kg), "storage_options": {"endpoint_url": s3_endpoint},
                      "cache_dir": str(mirrors / mirror)}  # fmt: skip
            return knowledge_refresh(cfg.model_copy(update=update))

    results = {"first": run("r1", "w1")}
    shutil.rmtree(mirrors / "w1")  # that worker is gone
    results["rerun"] = run("r1", "w2")
    site.pages["/news/harbour-hall.html"] = Page(html_page("Harbour hall reopens", NEW_ARTICLE).encode())
    home = site.pages["/"]
    link = b'<p><a href="/news/harbour-hall.html">Harbour hall</a></p></footer>'
    site.pages["/"] = Page(home.body.replace(b"</footer>", link, 1), home.content_type)
    shutil.rmtree(mirrors / "w2")  # the champion's folder exists only in the bucket now
    results["week2"] = run("r2", "w3")
    bucket.invalidate_cache()
    return results, mirrors


def _json(fs, key: str):
    return json.loads(fs.cat_file(f"{BUCKET}/cpt/{key}"))


def test_the_run_is_in_the_bucket(s3_runs, bucket):
    results, mirrors = s3_runs
    first = results["first"]
    assert first["outcome"] == "promoted"
    assert first["run_dir"] == str(mirrors.resolve() / "w1" / "runs" / "r1")
    run = "runs/r1"
    for stage in ("ingest/crawl", "ingest/extract", "curate/near_dedup", "tokens", "model", "eval", "promote"):
        manifest = _json(bucket, f"{run}/{stage}/_manifest.json")
        assert manifest["summary"] is not None, stage
    assert bucket.exists(f"{BUCKET}/cpt/{run}/model/final/model.safetensors")
    assert bucket.cat_file(f"{BUCKET}/cpt/{run}/report/run_report.md").startswith(b"#")
    assert not any(".partial/" in key for key in bucket.find(f"{BUCKET}/cpt/runs"))
    assert _json(bucket, "state/finished/r1.json")["outcome"] == "promoted"
    assert bucket.exists(f"{BUCKET}/cpt/state/crawl.sqlite")
    assert not bucket.exists(f"{BUCKET}/cpt/state/.root.lock.json")  # released
    assert not any(key.endswith(".lock") for key in bucket.find(f"{BUCKET}/cpt/state"))


def test_a_rerun_elsewhere_resumes_from_the_bucket(s3_runs):
    results, _ = s3_runs
    first, second = results["first"], results["rerun"]
    assert second["outcome"] == first["outcome"]
    assert "crawl" in second["skipped"] and "train" in second["skipped"]
    assert set(second["skipped"]) >= {"crawl", "extract", "curate/language", "tokenize", "train", "evaluate"}


def test_the_next_week_continues_from_the_champion_in_the_bucket(s3_runs, bucket):
    results, mirrors = s3_runs
    assert results["week2"]["outcome"] in ("promoted", "rejected")
    start = _json(bucket, "runs/r2/start.json")
    assert start["parent"] == "r1", "continues from the champion"
    assert start["model_dir"] == str(mirrors.resolve() / "w3" / "runs" / "r1" / "model" / "final")  # pulled
    mix = _json(bucket, "runs/r2/tokens/mix.json")
    assert mix["heldout_rule"] == "parent_heldout" and mix["docs_out"] == 1  # only the new page: r1's were seen
    log = bucket.cat_file(f"{BUCKET}/cpt/runs/r2/ingest/crawl/fetch_log.jsonl").splitlines()
    assert "unchanged" in {json.loads(line)["reason"] for line in log}  # conditional GETs on r1's crawl state
    registry = _json(bucket, "state/registry.json")
    assert [e["run_id"] for e in registry["history"]] == ["r1", "r2"]
    assert _json(bucket, "state/finished/r2.json")["outcome"] == results["week2"]["outcome"]


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
    second = CliRunner().invoke(app, ["registry", "show", "r2", "--root", root])
    assert json.loads(second.output)["lineage"][:2] == ["r2", "r1"]
    refused = CliRunner().invoke(app, ["registry", "reset-champion", "--root", root, "--base"])
    assert refused.exit_code == 1 and "local root" in refused.output
