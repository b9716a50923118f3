import json

import pytest

from cpt_core.stage import MANIFEST, hash_files, read_manifest, run_stage


def _writer(calls, text="a"):
    def work(partial):
        calls.append(partial)
        (partial / "out.txt").write_text(text)
        return {"docs_in": 1, "docs_out": 1}

    return work


def test_runs_once_then_skips(tmp_path):
    calls = []
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "x.txt").write_text("hello")
    out = tmp_path / "out"
    first = run_stage("s", out, {"k": 1}, [inp], _writer(calls))
    assert not first["skipped"] and len(calls) == 1
    assert (out / "out.txt").read_text() == "a"
    assert read_manifest(out)["summary"]["docs_out"] == 1
    second = run_stage("s", out, {"k": 1}, [inp], _writer(calls))
    assert second["skipped"] and len(calls) == 1
    assert second["output_hash"] == first["output_hash"]


def test_config_or_input_change_redoes(tmp_path):
    calls = []
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "x.txt").write_text("hello")
    out = tmp_path / "out"
    run_stage("s", out, {"k": 1}, [inp], _writer(calls))
    run_stage("s", out, {"k": 2}, [inp], _writer(calls))
    assert len(calls) == 2
    (inp / "x.txt").write_text("changed")
    run_stage("s", out, {"k": 2}, [inp], _writer(calls))
    assert len(calls) == 3


def test_crash_leaves_no_output_and_rerun_matches(tmp_path):
    out = tmp_path / "out"

    def crashing(partial):
        (partial / "out.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage("s", out, None, [], crashing)
    assert not out.exists() and (tmp_path / "out.partial").exists()
    manifest = run_stage("s", out, None, [], _writer([]))
    assert not (tmp_path / "out.partial").exists()
    assert (out / "out.txt").read_text() == "a"
    reference = run_stage("s", tmp_path / "ref", None, [], _writer([]))
    assert manifest["output_hash"] == reference["output_hash"] == hash_files(out)


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_stage("s", tmp_path / "o", None, [tmp_path / "missing"], _writer([]))


def test_upstream_manifest_key_chains(tmp_path):
    up = tmp_path / "up"
    run_stage("up", up, {"v": 1}, [], _writer([]))
    down_calls = []
    run_stage("down", tmp_path / "down", None, [up], _writer(down_calls))
    run_stage("up", up, {"v": 2}, [], _writer([]))
    run_stage("down", tmp_path / "down", None, [up], _writer(down_calls))
    assert len(down_calls) == 2
    manifest = json.loads((tmp_path / "down" / MANIFEST).read_text())
    assert manifest["inputs"][str(up)] == read_manifest(up)["key"]


def test_corrupt_manifest_is_a_clear_error_naming_the_file(tmp_path):
    out = tmp_path / "out"
    run_stage("s", out, None, [], _writer([]))
    (out / MANIFEST).write_text('{"key": "abc", "summ')  # cut short
    with pytest.raises(ValueError, match=f"{out / MANIFEST} is not valid JSON.*delete {out} to redo"):
        run_stage("s", out, None, [], _writer([]))
    with pytest.raises(ValueError, match="_manifest.json is not valid JSON"):
        run_stage("down", tmp_path / "down", None, [out], _writer([]))  # as an input, too
    (out / MANIFEST).write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        read_manifest(out)


def test_kept_partial_is_resumed_only_by_the_same_key(tmp_path):
    out = tmp_path / "out"
    seen = []

    def crashing(partial):
        seen.append(sorted(p.name for p in partial.iterdir()))
        (partial / "half.txt").write_text("progress")
        raise RuntimeError("killed")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            run_stage("s", out, {"k": 1}, [], crashing, keep_partial=True)
    assert "half.txt" in seen[1]  # the second attempt found the first one's work
    with pytest.raises(RuntimeError):
        run_stage("s", out, {"k": 2}, [], crashing, keep_partial=True)
    assert "half.txt" not in seen[2]  # another key: wiped
    manifest = run_stage("s", out, {"k": 2}, [], _writer([]), keep_partial=True)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "half.txt", "out.txt"]
    assert manifest["output_hash"] == hash_files(out)
