import json

import pytest
from pydantic import BaseModel, Field

import cpt_core.stage as stage_module
from cpt_core.stage import (
    MANIFEST,
    code_version,
    config_hash,
    hash_files,
    in_key,
    key_view,
    not_in_key,
    read_manifest,
    run_stage,
)


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


# ---------------------------------------------------------------------------------------------------------
# What enters a key


class _Inner(BaseModel):
    threshold: float = 0.5
    workers: int = not_in_key(1)


class _Outer(BaseModel):
    lr: float = 1e-3
    timeout_s: int = not_in_key(60, ge=1, description="kill after this")
    inner: _Inner = Field(default_factory=_Inner)
    inners: list[_Inner] = Field(default_factory=lambda: [_Inner()])


def test_fields_declared_not_in_key_stay_out_at_any_depth():
    base = _Outer()
    assert _Outer.model_fields["timeout_s"].description == "kill after this"  # Field options pass through
    same = _Outer(timeout_s=5, inner=_Inner(workers=8), inners=[_Inner(workers=3)])
    assert config_hash(same) == config_hash(base)
    assert key_view(base) == {"lr": 1e-3, "inner": {"threshold": 0.5}, "inners": [{"threshold": 0.5}]}
    for changed in (_Outer(lr=2e-3), _Outer(inner=_Inner(threshold=0.6)), _Outer(inners=[])):
        assert config_hash(changed) != config_hash(base)
    assert config_hash({"k": 1}) != config_hash({"k": 2})


def test_product_configs_keep_timeouts_and_workers_out_of_keys():
    from cpt_core.curate.pipeline import CurateConfig
    from cpt_core.ingest.crawl import CrawlConfig
    from cpt_core.ingest.extract import ExtractConfig
    from cpt_core.train.config import TrainConfig

    for model, fields in (
        (TrainConfig, ("timeout_s", "log_every", "checkpoint_every")),
        (CrawlConfig, ("timeout_s", "delay_s")),
        (ExtractConfig, ("timeout_s",)),
    ):
        assert not any(in_key(model, f) for f in fields), model
    assert in_key(TrainConfig, "lr") and in_key(CrawlConfig, "max_pages")
    executor = {"executor": {"tasks": 2, "workers": 4}}
    assert config_hash(ExtractConfig(**executor)) == config_hash(ExtractConfig(executor={"tasks": 2}))
    assert config_hash(ExtractConfig(**executor)) != config_hash(ExtractConfig())  # tasks name the files
    assert config_hash(CurateConfig(executor={"workers": 3})) == config_hash(CurateConfig())


def _make_package(root, name, body):
    pkg = root / name
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "steps.py").write_text(body)
    return pkg


def test_editing_a_stages_code_redoes_that_stage_only(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    first = _make_package(tmp_path, "stage_pkg_first", "VERSION = 1\n")
    second = _make_package(tmp_path, "stage_pkg_second", "VERSION = 1\n")
    code_version.cache_clear()  # an edit shows in a new process; here the cache is cleared by hand

    def both(calls):
        run_stage("first", tmp_path / "a", None, [], _writer(calls["first"]), code="stage_pkg_first")
        run_stage("second", tmp_path / "b", None, [tmp_path / "a"], _writer(calls["second"]), code="stage_pkg_second")

    calls = {"first": [], "second": []}
    both(calls)
    both(calls)
    assert (len(calls["first"]), len(calls["second"])) == (1, 1)
    version = read_manifest(tmp_path / "b")["code_version"]

    (second / "steps.py").write_text("VERSION = 2\n")
    code_version.cache_clear()
    both(calls)
    assert (len(calls["first"]), len(calls["second"])) == (1, 2)  # the first stage's output is kept
    assert read_manifest(tmp_path / "b")["code_version"] != version

    (first / "helpers.py").write_text("X = 1\n")  # a new module in the package counts too
    code_version.cache_clear()
    both(calls)
    assert len(calls["first"]) == 2
    code_version.cache_clear()


def test_code_version_is_computed_once_per_process_and_names_missing_modules(monkeypatch):
    code_version.cache_clear()
    reads = []
    real = stage_module._source_files
    monkeypatch.setattr(stage_module, "_source_files", lambda m: reads.append(m) or real(m))
    assert code_version("cpt_core.curate") == code_version("cpt_core.curate") != code_version("cpt_core.train")
    assert reads.count("cpt_core.curate") == 1
    code_version.cache_clear()
    with pytest.raises(ModuleNotFoundError, match="no_such_stage_package"):
        code_version("no_such_stage_package")


def test_work_defined_in_a_package_keys_on_that_package():
    from cpt_core.curate.pipeline import run_curate_step

    assert stage_module._package_of(run_curate_step) == "cpt_core.curate"
    assert stage_module._package_of(_writer([])) == "tests"
