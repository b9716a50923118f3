"""The mirror of a URL root (cpt_core/storage.py) against fsspec's in-memory filesystem."""

from __future__ import annotations

import json
import shutil
import uuid

import fsspec
import pytest

from cpt_core.config import ConfigError, validate_config
from cpt_core.evaluate.registry import Registry
from cpt_core.lock import RootBusyError
from cpt_core.storage import RemoteRootLock, RootMirror, is_remote, open_root, sync_stage


@pytest.fixture
def url():
    root = f"memory://cpt-{uuid.uuid4().hex[:8]}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _remote(url: str, rel: str) -> bytes:
    return fsspec.filesystem("memory").cat_file(f"{url}/{rel}")


def test_is_remote():
    assert is_remote("s3://bucket/cpt") and is_remote("memory://x")
    assert not is_remote("cptflow-data") and not is_remote("/tmp/root") and not is_remote("file:///tmp/root")


def test_push_uploads_changes_only_and_deletes_what_was_removed(url, tmp_path):
    mirror = RootMirror(url, tmp_path / "m")
    run = mirror.local / "runs" / "r1"
    (run / "ingest.partial").mkdir(parents=True)
    (run / "ingest.partial" / "a.jsonl").write_text("one\n")
    (run / "state.lock").write_text("")  # lock files stay local
    assert mirror.push("runs/r1") == 1
    assert _remote(url, "runs/r1/ingest.partial/a.jsonl") == b"one\n"
    assert mirror.push("runs/r1") == 0  # nothing changed since
    (run / "ingest.partial").rename(run / "ingest")  # a stage renames its output into place
    assert mirror.push("runs/r1") == 1
    fs = fsspec.filesystem("memory")
    assert fs.exists(f"{url}/runs/r1/ingest/a.jsonl")
    assert not fs.exists(f"{url}/runs/r1/ingest.partial/a.jsonl")
    assert not fs.exists(f"{url}/runs/r1/state.lock")


def test_pull_into_a_fresh_mirror_then_only_what_changed(url, tmp_path):
    writer = RootMirror(url, tmp_path / "a")
    (writer.local / "state" / "finished").mkdir(parents=True)
    (writer.local / "state" / "finished" / "r1.json").write_text('{"outcome": "promoted"}')
    (writer.local / "state" / "registry.json").write_text("{}")
    writer.push("state")
    reader = RootMirror(url, tmp_path / "b")
    assert reader.pull("state") == 2
    assert (reader.local / "state" / "registry.json").read_text() == "{}"
    assert reader.pull("state") == 0
    (writer.local / "state" / "registry.json").write_text('{"history": []}')
    (writer.local / "state" / "finished" / "r1.json").unlink()
    writer.push("state")
    assert reader.pull("state") == 1
    assert (reader.local / "state" / "registry.json").read_text() == '{"history": []}'
    assert not (reader.local / "state" / "finished" / "r1.json").exists()
    assert reader.pull("runs/absent") == 0


def test_remote_lock_is_exclusive_and_a_rerun_of_its_run_takes_it_over(url, tmp_path):
    mirror = RootMirror(url, tmp_path / "m")
    first = RemoteRootLock(mirror, "r1").acquire()
    with pytest.raises(RootBusyError, match="r1"):
        RemoteRootLock(mirror, "r2").acquire()
    RemoteRootLock(mirror, "r1").acquire()  # r1's earlier attempt died holding it
    first.release()
    assert not fsspec.filesystem("memory").exists(mirror.remote("state/.root.lock.json"))
    RemoteRootLock(mirror, "r2").acquire().release()


def test_open_root_pulls_the_champion_and_pushes_the_run(url, tmp_path):
    # a champion promoted on another worker, whose mirror lay elsewhere
    other = RootMirror(url, tmp_path / "w1")
    final = other.local / "runs" / "r1" / "model" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    (other.local / "runs" / "r1" / "tokens" / "heldout").mkdir(parents=True)
    (other.local / "runs" / "r1" / "tokens" / "heldout" / "domain.jsonl").write_text("{}\n")
    (other.local / "runs" / "r1" / "curate").mkdir()
    (other.local / "runs" / "r1" / "curate" / "big.jsonl").write_text("not needed by r2\n")
    (other.local / "state").mkdir()
    champion = {"run_id": "r1", "model_dir": str(final), "metrics": {}}
    (other.local / "state" / "registry.json").write_text(json.dumps({"champion": champion, "history": []}))
    other.push("runs/r1")
    other.push("state")
    shutil.rmtree(other.local)  # that worker is gone

    with open_root(url, "r2", cache_dir=str(tmp_path / "w2")) as layout:
        assert (layout.root / "runs" / "r1" / "model" / "final" / "config.json").exists()
        assert (layout.root / "runs" / "r1" / "tokens" / "heldout" / "domain.jsonl").exists()
        assert not (layout.root / "runs" / "r1" / "curate").exists()
        moved = Registry(layout.registry).champion_model()
        assert moved["model_dir"] == str(layout.root / "runs" / "r1" / "model" / "final")
        (layout.run / "eval").mkdir()
        (layout.run / "eval" / "_manifest.json").write_text("{}")
        sync_stage(layout)  # what a task does when its stage has finished
        assert _remote(url, "runs/r2/eval/_manifest.json") == b"{}"
        with pytest.raises(RootBusyError):
            with open_root(url, "r3", cache_dir=str(tmp_path / "w3")):
                pass
        (layout.run / "report").mkdir()
        (layout.run / "report" / "run_report.md").write_text("# r2")
    assert _remote(url, "runs/r2/report/run_report.md") == b"# r2"
    assert not fsspec.filesystem("memory").exists(f"{url}/state/.root.lock.json")


def test_open_root_pushes_a_failed_run_for_its_rerun(url, tmp_path):
    with pytest.raises(RuntimeError, match="killed"):
        with open_root(url, "r1", cache_dir=str(tmp_path / "w1")) as layout:
            (layout.run / "crawl").mkdir()
            (layout.run / "crawl" / "_manifest.json").write_text("{}")
            raise RuntimeError("killed")
    with open_root(url, "r1", cache_dir=str(tmp_path / "w2")) as layout:
        assert (layout.run / "crawl" / "_manifest.json").read_text() == "{}"


def test_credentials_are_refused_in_the_config():
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        validate_config({"root": "s3://b/cpt", "storage_options": {"key": "AKIA", "secret": "x"}})
    cfg = validate_config({"root": "s3://b/cpt", "storage_options": {"endpoint_url": "http://127.0.0.1:9"}})
    assert cfg.storage_options["endpoint_url"] == "http://127.0.0.1:9"

