"""Resumable, idempotent stages.

A stage turns input folders into one output folder. ``run_stage`` gives every stage the same contract:

1. A *key* is computed from the stage name, the config fields that can change the stage's output, a hash of
   the stage's own source code and the keys recorded in the input folders' manifests (or, for inputs without
   one, a hash of their files).
2. If the output folder already holds a ``_manifest.json`` with that key, the stage is skipped: a rerun of a
   finished run does no work.
3. Otherwise the work writes into ``<output>.partial`` (wiped first, so a crash mid-stage leaves nothing that
   a rerun could mistake for output), the manifest is written last, and the folder is renamed into place.
   A crash at any point therefore gives, on rerun, the same output with no duplicates.
   A stage that can resume its own half-done work (the crawl) asks for ``keep_partial``: the ``.partial``
   folder of an attempt with the same key is then handed to the work again instead of wiped; one left by
   an attempt with another key is still wiped.

The manifest records the key, the input keys, the config hash, code version, counts, drop reasons, timings
and a content hash of the output files, which is what lineage and the tests compare.

**What enters a key.** Config fields that cannot change a stage's output (timeouts, logging and checkpoint
intervals, worker counts where the output does not depend on them) are declared with :func:`not_in_key`
where the config is defined and left out of :func:`config_hash`, at any depth of nested configs: raising a
training timeout must not throw away a half-finished run's checkpoints. The code part of the key is
:func:`code_version` of the stage's own package plus the common core every stage's output passes through
(``stage.py``: keys and manifests; ``io.py``: JSONL and atomic writes). Editing the curation code therefore
redoes curation on rerun but not the crawl before it. Modules that only place or report (``layout.py``,
``progress.py``, ``report/``) or compose configs (``config.py``) are left out: changing them changes no
stage's output.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_core import to_jsonable_python

from cpt_core.faults import fault_point
from cpt_core.io import atomic_write_json, stable_json

MANIFEST = "_manifest.json"
PARTIAL_KEY = "_partial_key"  # in a kept .partial folder: the key of the attempt that wrote it
# Written beside a model's files to cache its content hash (see ``cpt_core.train.base_model``).
FINGERPRINT_FILE = ".cptflow-fingerprint.json"
# The modules every stage's output passes through; each stage adds its own package to its code version.
CORE_MODULES = ("cpt_core.stage", "cpt_core.io")
CodeRef = str | Iterable[str]


def not_in_key(default: Any = ..., **kwargs: Any) -> Any:
    """A pydantic ``Field`` that stays out of stage keys: it cannot change the stage's output."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    return Field(default, json_schema_extra={**extra, "in_key": False}, **kwargs)


def in_key(model: type[BaseModel], field: str) -> bool:
    """Whether ``model.field`` enters stage keys (every field does unless declared with ``not_in_key``)."""
    extra = model.model_fields[field].json_schema_extra
    return not (isinstance(extra, dict) and extra.get("in_key") is False)


def key_view(value: Any) -> Any:
    """JSON-able form of ``value`` with the fields that stay out of keys removed, through nested configs."""
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return {name: key_view(getattr(value, name)) for name in fields if in_key(type(value), name)}
    if isinstance(value, dict):
        return {str(k): key_view(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [key_view(v) for v in value]
    return to_jsonable_python(value)


def config_hash(config: BaseModel | dict | None) -> str:
    """Hash of the config fields that can change a stage's output."""
    if config is None:
        return "none"
    return hashlib.sha256(stable_json(key_view(config)).encode()).hexdigest()[:16]


def _source_files(module: str) -> list[tuple[str, Path]]:
    """``(name, path)`` of the Python sources of a module, or of every module of a package."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ModuleNotFoundError(f"code_version: no module named {module!r}")
    if spec.submodule_search_locations:
        files = []
        for root in map(Path, spec.submodule_search_locations):
            for path in root.rglob("*.py"):
                if "__pycache__" not in path.parts:
                    files.append((f"{module}/{path.relative_to(root).as_posix()}", path))
        return sorted(files)
    if not spec.origin or not spec.origin.endswith(".py"):
        raise ValueError(f"code_version: {module!r} is not a Python source module ({spec.origin})")
    return [(module, Path(spec.origin))]


@functools.cache
def code_version(*packages_or_modules: str) -> str:
    """Hash of the source of a stage's package(s) or module(s) plus the common core (``CORE_MODULES``).

    Computed once per process for the same arguments: code does not change under a running process (tests
    that simulate an edit call ``code_version.cache_clear()``).
    """
    digest = hashlib.sha256()
    for module in sorted(set(CORE_MODULES) | set(packages_or_modules)):
        for name, path in _source_files(module):
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _code_names(code: CodeRef) -> tuple[str, ...]:
    return (code,) if isinstance(code, str) else tuple(code)


def _package_of(work: Callable) -> str:
    """The package a stage's ``work`` function is defined in (its module, for a top-level module)."""
    module = getattr(work, "__module__", None) or "__main__"
    spec = importlib.util.find_spec(module) if module != "__main__" else None
    if spec is None or not (spec.origin or "").endswith(".py"):
        return CORE_MODULES[0]
    return module.rpartition(".")[0] or module


# datatrove's per-task logs and stats change on every run and say nothing about the output itself; the
# fingerprint cache beside a model is written by whoever reads the model first.
HASH_EXCLUDE = (MANIFEST, "logs", FINGERPRINT_FILE)


def hash_files(root: Path, exclude: Iterable[str] = HASH_EXCLUDE) -> str:
    """Content hash of every file under ``root`` (paths and bytes, in sorted order).

    Files or folders named in ``exclude`` (at any depth) are left out.
    """
    root = Path(root)
    skip = set(exclude)
    digest = hashlib.sha256()
    if root.is_file():
        files = [root]
        root = root.parent
    else:
        files = sorted(
            p for p in root.rglob("*") if p.is_file() and not skip.intersection(p.relative_to(root).parts)
        )
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def read_manifest(folder: Path) -> dict | None:
    """The folder's ``_manifest.json``, None if it has none; a damaged one is an error naming the file.

    Manifests are written atomically, so a damaged one was changed from outside: rather than guess whether
    the output beside it is whole, the stage stops and says how to redo it.
    """
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}): the stage output in {Path(folder)} is damaged; "
            f"delete {Path(folder)} to redo that stage"
        ) from None
    if not isinstance(manifest, dict):
        raise ValueError(
            f"{path} must hold a JSON object: the stage output in {Path(folder)} is damaged; "
            f"delete {Path(folder)} to redo that stage"
        )
    return manifest


def input_key(folder: Path) -> str:
    manifest = read_manifest(folder)
    if manifest and "key" in manifest:
        return manifest["key"]
    if not Path(folder).exists():
        raise FileNotFoundError(f"stage input {folder} does not exist: run the stage that produces it first")
    return hash_files(Path(folder))


def stage_key(
    name: str,
    config: BaseModel | dict | None,
    inputs: Iterable[Path],
    extra: dict | None = None,
    code: CodeRef = CORE_MODULES,
) -> str:
    """The stage's identity: name, key fields of ``config``, ``code_version(code)``, input keys, ``extra``."""
    parts = {
        "stage": name,
        "config": config_hash(config),
        "code": code_version(*_code_names(code)),
        "inputs": [input_key(Path(p)) for p in inputs],
        "extra": extra or {},
    }
    return hashlib.sha256(stable_json(parts).encode()).hexdigest()[:16]


def _prepare_partial(partial: Path, key: str, keep: bool) -> None:
    """Wipe ``partial`` unless it is kept and an attempt with the same ``key`` made it."""
    marker = partial / PARTIAL_KEY
    if keep and marker.is_file() and marker.read_text(encoding="utf-8") == key:
        return
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    if keep:
        marker.write_text(key, encoding="utf-8")


def run_stage(
    name: str,
    output: Path,
    config: BaseModel | dict | None,
    inputs: Iterable[Path],
    work: Callable[[Path], dict],
    extra_key: dict | None = None,
    keep_partial: bool = False,
    code: CodeRef | None = None,
) -> dict:
    """Run ``work(partial_dir) -> summary`` unless ``output`` already holds a matching manifest.

    ``code`` names the package(s) or module(s) whose source makes the stage's output (default: the package
    ``work`` is defined in); an edit to them changes the key, so a rerun redoes the stage.

    ``summary`` is a JSON-able dict; by convention it has ``docs_in``, ``docs_out``, ``dropped`` (reason ->
    count) and whatever else the stage wants in its report. Returns the manifest, with ``skipped`` set to
    True when nothing was done. With ``keep_partial`` the work must cope with finding an earlier attempt's
    files in ``partial_dir`` (see the module docstring).
    """
    output = Path(output)
    inputs = [Path(p) for p in inputs]
    code = _package_of(work) if code is None else code
    key = stage_key(name, config, inputs, extra_key, code)
    existing = read_manifest(output)
    if existing and existing.get("key") == key:
        return {**existing, "skipped": True}

    partial = output.with_name(output.name + ".partial")
    _prepare_partial(partial, key, keep_partial)
    started = time.time()
    summary = work(partial)
    elapsed = time.time() - started
    (partial / PARTIAL_KEY).unlink(missing_ok=True)
    manifest = {
        "stage": name,
        "key": key,
        "inputs": {str(p): input_key(p) for p in inputs},
        "config_hash": config_hash(config),
        "code_version": code_version(*_code_names(code)),
        "started_at": started,
        "seconds": round(elapsed, 3),
        "summary": summary,
        "output_hash": hash_files(partial),
    }
    atomic_write_json(partial / MANIFEST, manifest)
    fault_point(f"{name}:commit")
    if output.exists():
        shutil.rmtree(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, output)
    return {**manifest, "skipped": False}
