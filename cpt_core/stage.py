"""Resumable, idempotent stages.

A stage turns input folders into one output folder. ``run_stage`` gives every stage the same contract:

1. A *key* is computed from the stage name, the stage's config, the code version and the keys recorded in
   the input folders' manifests (or, for inputs without one, a hash of their files).
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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import BaseModel

from cpt_core import __version__
from cpt_core.faults import fault_point
from cpt_core.io import atomic_write_json, stable_json

MANIFEST = "_manifest.json"
PARTIAL_KEY = "_partial_key"  # in a kept .partial folder: the key of the attempt that wrote it


def config_hash(config: BaseModel | dict | None) -> str:
    if config is None:
        return "none"
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    return hashlib.sha256(stable_json(data).encode()).hexdigest()[:16]


# datatrove's per-task logs and stats change on every run and say nothing about the output itself.
HASH_EXCLUDE = (MANIFEST, "logs")


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


def stage_key(name: str, config: BaseModel | dict | None, inputs: Iterable[Path], extra: dict | None = None) -> str:
    parts = {
        "stage": name,
        "config": config_hash(config),
        "code": __version__,
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
) -> dict:
    """Run ``work(partial_dir) -> summary`` unless ``output`` already holds a matching manifest.

    ``summary`` is a JSON-able dict; by convention it has ``docs_in``, ``docs_out``, ``dropped`` (reason ->
    count) and whatever else the stage wants in its report. Returns the manifest, with ``skipped`` set to
    True when nothing was done. With ``keep_partial`` the work must cope with finding an earlier attempt's
    files in ``partial_dir`` (see the module docstring).
    """
    output = Path(output)
    inputs = [Path(p) for p in inputs]
    key = stage_key(name, config, inputs, extra_key)
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
        "code_version": __version__,
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
