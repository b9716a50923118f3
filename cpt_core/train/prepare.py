"""The model-preparation stage: depth up-scaling and tokenizer extension on the resolved base checkpoint.

Runs between resolving the base model and tokenizing (the tokens depend on the extended tokenizer): surgery
first (``surgery.py``), then tokenizer extension trained on the run's curated documents
(``tokenizer_ext.py``). The output is an ordinary Hugging Face folder in the run (``<run>/start-model``)
holding the records of both steps (``surgery.json``, ``tokenizer_extension.json``) that staged unfreezing
reads. Like every stage it is keyed (config, curated documents, the base model's content, code) and written
to a partial folder renamed at the end, so a rerun with the same inputs skips it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from cpt_core.data.tokenize import read_documents
from cpt_core.progress import ProgressFn, no_progress
from cpt_core.stage import run_stage
from cpt_core.train.base_model import model_fingerprint
from cpt_core.train.config import ModelConfig
from cpt_core.train.surgery import SURGERY_FILE, run_surgery
from cpt_core.train.tokenizer_ext import extend_model

logger = logging.getLogger(__name__)

PREPARE_CODE = ("cpt_core.train.prepare", "cpt_core.train.surgery", "cpt_core.train.tokenizer_ext")


def run_prepare_model(
    cfg: ModelConfig, model_dir: Path, curated_dir: Path | None, output: Path, progress: ProgressFn = no_progress
) -> dict:
    """Grow and/or extend ``model_dir`` into ``output``; returns the stage manifest."""
    model_dir, output = Path(model_dir), Path(output)
    if not cfg.changes_model:
        raise ValueError("model: neither surgery nor extend_tokenizer is set; there is nothing to prepare")
    if cfg.extend_tokenizer is not None and curated_dir is None:
        raise ValueError("model.extend_tokenizer needs the curated documents to train new tokens on")
    inputs = [Path(curated_dir)] if cfg.extend_tokenizer is not None else []
    steps = int(cfg.surgery.kind != "none") + int(cfg.extend_tokenizer is not None)

    def work(partial: Path) -> dict:
        summary: dict = {}
        source = model_dir
        if cfg.surgery.kind != "none":
            progress(0, steps, f"model surgery: {cfg.surgery.kind}")
            grown = partial if cfg.extend_tokenizer is None else partial.with_name(partial.name + "-surgery")
            if grown != partial:
                shutil.rmtree(grown, ignore_errors=True)
            summary["surgery"] = run_surgery(cfg.surgery, model_dir, grown)
            source = grown
        if cfg.extend_tokenizer is not None:
            progress(steps - 1, steps, f"tokenizer extension: {cfg.extend_tokenizer.new_tokens} tokens")
            docs, _ = read_documents(Path(curated_dir))
            summary["tokenizer_extension"] = extend_model(source, partial, docs, cfg.extend_tokenizer)
            if source != model_dir:
                shutil.copy2(source / SURGERY_FILE, partial / SURGERY_FILE)
                shutil.rmtree(source, ignore_errors=True)
        progress(steps, steps, "model prepared")
        return summary

    extra = {"model": model_fingerprint(model_dir)}
    return run_stage("prepare-model", output, cfg, inputs, work, extra_key=extra, code=PREPARE_CODE)
