"""Measuring what was learned and what was forgotten: bits-per-byte and lm-evaluation-harness tasks.

Two kinds of number, each computed for the base model and the trained model on the same inputs:

* **Bits per byte** (bpb) on held-out *domain* text (did CPT learn the domain?) and on held-out *general* text
  (did it forget?). Per-token loss is not comparable across tokenizers (a tokenizer extended for Korean splits
  the same text into fewer tokens, so each token carries more information); dividing the summed negative
  log-likelihood by the text's UTF-8 bytes is. ``bpb = sum(NLL in nats) / (ln 2 * bytes)``.
* **A multiple-choice fact probe** built from the knowledge graph (``knowledge_graph.probe_rows``), run through
  lm-evaluation-harness on the in-memory model with a task YAML written next to a local JSONL, so it needs no
  network; plus any extra lm-eval tasks the config names.

Trade-offs of the bpb scoring, stated once:

* Each text is tokenised alone, without the tokenizer's own special tokens, and one *prefix* token is put in
  front: the document separator the CPT data uses (``packing.separator_id``: ``<|endoftext|>`` when the
  vocabulary has it, else EOS), so a text starts the way every training document does; BOS when there is
  neither. The prefix is context, never a target, so every token of the text is scored exactly once and
  nothing that is not in the text is scored (EOS after the text is not scored: the byte count has no end
  marker either). With no such token at all the first token of each text has nothing to be predicted from
  and is left unscored (reported as ``unscored_tokens``). Measured on SmolLM2-135M-Instruct, whose BOS is
  the chat token ``<|im_start|>``: prefixing ``<|endoftext|>`` instead gives 1.4% lower bpb.
* A text longer than ``seq_len`` is cut into windows of ``seq_len`` tokens that overlap by one token, so each
  target is predicted once; tokens just after a window boundary see a short context, which raises bpb a
  little compared with a sliding window, but costs one forward pass per window instead of many, and is the
  same for the base and the trained model, so their difference is unaffected.
* Windows are sorted by length and batched with right padding and an attention mask; padded positions carry
  no loss. Batching changes the sums only by floating-point rounding.

``torch``, ``transformers`` and ``lm_eval`` are imported inside the functions that need them: ``config.py``
imports ``EvalConfig`` from here, and loading a config must not take the seconds those imports take.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.data.general_text import GeneralTextConfig, general_texts
from cpt_core.data.knowledge_graph import load_facts, probe_rows
from cpt_core.data.tokenize import separator_id
from cpt_core.io import atomic_write_json, iter_text_rows, jsonl_files, write_jsonl
from cpt_core.progress import ProgressFn, no_progress
from cpt_core.stage import run_stage
from cpt_core.train.base_model import model_fingerprint

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

PROBE_TASK = "cptflow_fact_probe"
PROBE_PROMPT = "Question: {{question}}\nAnswer:"


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    general_heldout: GeneralTextConfig = Field(
        default_factory=lambda: GeneralTextConfig(source="stdlib-docstrings", max_chars=60_000),
        description="general text for forgetting; draw it from a different source than the replay text",
    )
    domain_max_chars: int = Field(60_000, ge=1000, description="cap on the domain held-out text scored")
    bpb_seq_len: int = Field(
        512, ge=16, description="tokens per scoring window (capped at the model's limit)"
    )
    batch_size: int = Field(8, ge=1)
    fact_probe: bool = Field(True, description="multiple-choice probe generated from the knowledge graph")
    lm_eval_tasks: list[str] = Field(
        default_factory=list, description="extra lm-eval task names or YAML paths"
    )
    lm_eval_limit: int | None = Field(
        None, ge=1, description="examples per extra lm-eval task (not the probe)"
    )


# --------------------------------------------------------------------------------------------- bits per byte


def _default_device(model) -> torch.device:
    return next(model.parameters()).device


def prefix_token_id(tokenizer) -> int | None:
    """The token put before every scored text: the CPT document separator, else BOS, else None."""
    try:
        return separator_id(tokenizer)
    except ValueError:
        return tokenizer.bos_token_id


def _score_texts(
    model,
    tokenizer,
    texts: list[str],
    seq_len: int,
    batch_size: int,
    device=None,
    progress: ProgressFn = no_progress,
) -> tuple[list[float], list[int], int]:
    """Per-text summed NLL (nats) and scored-token counts, plus the number of unscored tokens."""
    import torch
    import torch.nn.functional as F

    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2 (got {seq_len})")
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos and seq_len > max_pos:
        logger.warning("bpb seq_len %d exceeds the model's %d positions: using %d", seq_len, max_pos, max_pos)
        seq_len = max_pos
    device = torch.device(device) if device is not None else _default_device(model)
    prefix = prefix_token_id(tokenizer)
    pad_id = next(t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if t is not None)

    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    windows: list[tuple[int, list[int]]] = []
    unscored = 0
    for index, ids in enumerate(encoded):
        seq = ([prefix] if prefix is not None else []) + list(ids)
        if prefix is None and ids:
            unscored += 1
        # Consecutive windows share one token: the last input of one is the first of the next, so every
        # target after the first position is predicted exactly once.
        start = 0
        while start < len(seq) - 1:
            windows.append((index, seq[start : start + seq_len]))
            start += seq_len - 1
    # Longest first: similar lengths share a batch (little padding), and a memory error shows up at once.
    windows.sort(key=lambda w: -len(w[1]))

    nll = [0.0] * len(texts)
    tokens = [0] * len(texts)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in range(0, len(windows), batch_size):
                batch = windows[b : b + batch_size]
                width = len(batch[0][1])
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, (_, ids) in enumerate(batch):
                    input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                    mask[row, : len(ids)] = 1
                input_ids, mask = input_ids.to(device), mask.to(device)
                logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
                targets = input_ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
                losses = F.cross_entropy(
                    logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none"
                ).view(len(batch), -1)
                per_row = losses.sum(dim=1).double().cpu().tolist()
                for (index, ids), loss in zip(batch, per_row, strict=True):
                    nll[index] += loss
                    tokens[index] += len(ids) - 1
                progress(min(b + batch_size, len(windows)), len(windows), "bpb windows scored")
    finally:
        model.train(was_training)
    return nll, tokens, unscored


def _bpb_summary(texts: list[str], nll: list[float], tokens: list[int]) -> dict:
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    total_nll = float(sum(nll))
    total_tokens = int(sum(tokens))
    return {
        "bpb": total_nll / (math.log(2) * n_bytes) if n_bytes else float("nan"),
        "nll_nats": total_nll,
        "tokens": total_tokens,
        "bytes": n_bytes,
        "texts": len(texts),
        "tokens_per_byte": total_tokens / n_bytes if n_bytes else float("nan"),
    }


def bits_per_byte(
    model,
    tokenizer,
    texts: list[str],
    seq_len: int,
    batch_size: int,
    device=None,
    progress: ProgressFn = no_progress,
) -> dict:
    """Bits per UTF-8 byte of ``texts`` under ``model``: ``{bpb, nll_nats, tokens, bytes, texts, ...}``.

    See the module docstring for how texts are prefixed, windowed and batched. Empty texts are ignored.
    """
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("bits_per_byte: no non-empty text to score")
    nll, tokens, unscored = _score_texts(model, tokenizer, texts, seq_len, batch_size, device, progress)
    return {**_bpb_summary(texts, nll, tokens), "unscored_tokens": unscored}


# --------------------------------------------------------------------------------------------- lm-eval


def _clean_metrics(task_result: dict) -> dict:
    """``{'acc,none': 0.5, 'acc_stderr,none': 'N/A', ...}`` -> ``{'acc': 0.5}`` (numbers only)."""
    out = {}
    for key, value in task_result.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        metric, _, filt = key.partition(",")
        out[metric if filt in ("", "none") else f"{metric},{filt}"] = value
    return out


def _hflm(model, tokenizer, batch_size: int):
    from lm_eval.models.huggingface import HFLM

    # HFLM wraps the in-memory model as it is (no reload, no device move); it picks a pad token itself
    # when the tokenizer has none.
    return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def prompt_prefix(tokenizer) -> str:
    """The text that makes a prompt start the way a document does in training: the document separator
    (``prefix_token_id``) as literal text, unless the tokenizer adds BOS by itself.

    GPT-2-style tokenizers (SmolLM2's among them) add nothing, and lm-eval then scores a prompt whose first
    token has no separator before it -- a position the model never saw in packed training data, where every
    document follows a separator. On small models that alone can scramble the ranking (the tiny test model
    trained on the probe's own lines ranks 1 in 8 right without it). lm-eval sees the special token at the
    start of the text and does not add another.
    """
    ids = tokenizer("a")["input_ids"]
    if ids and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id:
        return ""
    prefix = prefix_token_id(tokenizer)
    return "" if prefix is None else tokenizer.convert_ids_to_tokens(prefix)


def probe_task_yaml(data_file: Path, cache_dir: Path, prefix: str = "") -> dict:
    """The lm-eval task config of the fact probe, reading ``{question, choices, answer}`` rows from JSONL.

    ``dataset_path: json`` is the datasets library's local JSON builder, which needs no network;
    ``cache_dir`` keeps its Arrow cache out of the user's home. The prompt is ``prefix`` (see
    ``prompt_prefix``) + ``Question: {question}\nAnswer:``; lm-eval joins prompt and choice with its default
    target delimiter, a space, so the scored continuations are `` {choice}``.
    """
    return {
        "task": PROBE_TASK,
        "dataset_path": "json",
        "dataset_kwargs": {
            "data_files": {"test": str(Path(data_file).resolve())},
            "cache_dir": str(cache_dir),
        },
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{% raw %}" + prefix + "{% endraw %}" + PROBE_PROMPT if prefix else PROBE_PROMPT,
        "doc_to_choice": "choices",
        "doc_to_target": "answer",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    }


def fact_probe_accuracy(
    model, tokenizer, rows: list[dict], workdir: Path, limit: int | None = None, batch_size: int = 8
) -> dict:
    """Accuracy of ``model`` on the multiple-choice rows ``{id, question, choices, answer}`` via lm-eval.

    Writes ``probe.jsonl`` and ``tasks/cptflow_fact_probe.yaml`` into ``workdir`` and runs the task with
    ``lm_eval.simple_evaluate`` on the in-memory model: the log-likelihood of each `` {choice}`` after
    ``<bos>Question: {question}\\nAnswer:`` (see ``prompt_prefix``), highest wins; ``acc_norm`` first
    divides each log-likelihood by the choice's length in characters.
    Returns ``{acc, acc_norm, n, per_item}``; ``per_item`` lists, per row, whether it was answered right, the
    chosen index and the choices' log-likelihoods, so a report can say which facts were learned.
    """
    import lm_eval
    import yaml
    from lm_eval.tasks import TaskManager

    for i, row in enumerate(rows):
        missing = {"id", "question", "choices", "answer"} - set(row)
        if missing:
            raise ValueError(f"fact probe row {i} lacks {sorted(missing)}")
        if not 0 <= int(row["answer"]) < len(row["choices"]):
            raise ValueError(f"fact probe row {row['id']}: answer {row['answer']} is not a choice index")
    if not rows:
        raise ValueError("fact probe: no rows")
    workdir = Path(workdir)
    task_dir = workdir / "tasks"
    task_dir.mkdir(parents=True, exist_ok=True)
    data_file = workdir / "probe.jsonl"
    write_jsonl(rows, data_file)
    cache_dir = workdir / ".datasets_cache"
    (task_dir / f"{PROBE_TASK}.yaml").write_text(
        yaml.safe_dump(probe_task_yaml(data_file, cache_dir, prompt_prefix(tokenizer)))
    )
    try:
        # include_defaults=False: indexing lm-eval's ~15k bundled task files takes seconds and is not needed.
        results = lm_eval.simple_evaluate(
            model=_hflm(model, tokenizer, batch_size),
            tasks=[PROBE_TASK],
            task_manager=TaskManager(include_path=str(task_dir), include_defaults=False),
            limit=limit,
            log_samples=True,
            bootstrap_iters=0,
        )
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    metrics = _clean_metrics(results["results"][PROBE_TASK])
    per_item = []
    for sample in sorted(results["samples"][PROBE_TASK], key=lambda s: s["doc_id"]):
        loglik = [float(r[0]) for r in sample["filtered_resps"]]
        per_item.append(
            {
                "id": sample["doc"]["id"],
                "answer": int(sample["target"]),
                "predicted": max(range(len(loglik)), key=loglik.__getitem__),
                "correct": bool(sample["acc"]),
                "correct_norm": bool(sample["acc_norm"]),
                "loglikelihoods": loglik,
            }
        )
    atomic_write_json(workdir / "per_item.json", per_item)
    return {"acc": metrics["acc"], "acc_norm": metrics["acc_norm"], "n": len(per_item), "per_item": per_item}


def _is_yaml_path(task: str) -> bool:
    return task.endswith((".yaml", ".yml")) or Path(task).is_file()


def run_lm_eval_tasks(
    model, tokenizer, tasks: list[str], limit: int | None, batch_size: int = 8
) -> dict[str, dict[str, float]]:
    """Run lm-eval tasks (registered names or YAML paths) on the in-memory model: ``{task: {metric: value}}``.

    Registered tasks fetch their data sets from the Hugging Face hub: without internet (or a filled HF
    datasets cache) they fail, and the error says so. A YAML path may point at local data and runs offline.
    """
    if not tasks:
        return {}
    import lm_eval
    from lm_eval.tasks import TaskManager

    for task in tasks:
        if _is_yaml_path(task) and not Path(task).is_file():
            raise FileNotFoundError(f"lm-eval task file {task} does not exist")
    named = [t for t in tasks if not _is_yaml_path(t)]
    specs = [str(Path(t).resolve()) if _is_yaml_path(t) else t for t in tasks]
    # The bundled task index is only needed to resolve names; building it costs several seconds.
    manager = TaskManager(include_defaults=bool(named))
    unknown = [t for t in named if t not in manager.all_tasks]
    if unknown:
        raise ValueError(f"unknown lm-eval task name(s) {unknown}: not among lm-eval's registered tasks")
    try:
        results = lm_eval.simple_evaluate(
            model=_hflm(model, tokenizer, batch_size),
            tasks=specs,
            task_manager=manager,
            limit=limit,
            log_samples=False,
            bootstrap_iters=0,
        )
    except (ConnectionError, OSError) as err:
        raise RuntimeError(
            f"lm-eval tasks {tasks} could not load their data: {err}. Registered lm-eval tasks download their "
            "data sets from the Hugging Face hub, which needs internet access (HF_DATASETS_OFFLINE / "
            "HF_HUB_OFFLINE are set for offline runs) or a pre-filled HF datasets cache; for offline runs use "
            "a task YAML that reads local files."
        ) from err
    return {name: _clean_metrics(values) for name, values in results["results"].items()}


# --------------------------------------------------------------------------------------------- model-level


def read_heldout(path: Path, max_chars: int) -> list[dict]:
    """``[{text, language}]`` from a JSONL file (or a folder of ``*.jsonl[.gz]``), at most ``max_chars`` chars.

    ``language`` is read from the row or its ``metadata`` (None when absent). When the cap bites, documents
    are taken round-robin across languages, so a file sorted by language still yields every language; the
    document that crosses the cap is cut to fit.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"held-out text {path} does not exist")
    files = jsonl_files(path)
    if not files:
        raise ValueError(f"held-out folder {path} holds no .jsonl or .jsonl.gz files")
    by_language: dict[str | None, list[str]] = {}
    for file in files:
        for _, row in iter_text_rows(file):
            meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
            language = row.get("language") or meta.get("language")
            if row["text"]:
                by_language.setdefault(language, []).append(row["text"])
    queues = [list(reversed(texts)) for texts in by_language.values()]
    languages = list(by_language)
    out: list[dict] = []
    used = 0
    while used < max_chars and any(queues):
        for language, queue in zip(languages, queues, strict=True):
            if not queue or used >= max_chars:
                continue
            text = queue.pop()[: max_chars - used]
            out.append({"text": text, "language": language})
            used += len(text)
    return out


def _pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(model_dir: Path, device: str | None = None):
    """``(model, tokenizer)`` from a ``save_pretrained`` folder, in float32 (so base and trained compare)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").exists():
        raise FileNotFoundError(f"model folder {model_dir} has no config.json: not a saved HF model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model.to(device or _pick_device()).eval(), tokenizer


def evaluate_model(
    cfg: EvalConfig,
    model_dir: Path,
    domain_heldout: Path,
    knowledge_graph: Path | None,
    workdir: Path,
    progress: ProgressFn = no_progress,
) -> dict:
    """Every measurement of one model: domain and general bpb, fact probe, extra lm-eval tasks.

    Returns ``{model_dir, domain_bpb, general_bpb, probe_acc, domain: {...bpb summary, by_language},
    general: {...}, probe: {...} | None, tasks: {...}, seconds}``.
    """
    started = time.time()
    model, tokenizer = load_model(model_dir)
    rows = read_heldout(domain_heldout, cfg.domain_max_chars)
    if not rows:
        raise ValueError(f"held-out text {domain_heldout} holds no non-empty 'text'")
    texts = [r["text"] for r in rows]
    nll, tokens, unscored = _score_texts(
        model, tokenizer, texts, cfg.bpb_seq_len, cfg.batch_size, None, progress
    )
    domain = {**_bpb_summary(texts, nll, tokens), "unscored_tokens": unscored}
    languages = sorted({r["language"] for r in rows if r["language"]})
    if languages:
        domain["by_language"] = {}
        for language in languages:
            idx = [i for i, r in enumerate(rows) if r["language"] == language]
            domain["by_language"][language] = _bpb_summary(
                [texts[i] for i in idx], [nll[i] for i in idx], [tokens[i] for i in idx]
            )
    general_input = general_texts(cfg.general_heldout)
    if not any(general_input):
        raise ValueError(f"general held-out source {cfg.general_heldout.source!r} yielded no text")
    general = bits_per_byte(
        model, tokenizer, general_input, cfg.bpb_seq_len, cfg.batch_size, progress=progress
    )
    probe = None
    if cfg.fact_probe and knowledge_graph:
        probe = fact_probe_accuracy(
            model,
            tokenizer,
            probe_rows(load_facts(knowledge_graph)),
            Path(workdir) / "probe",
            None,
            cfg.batch_size,
        )
    tasks = run_lm_eval_tasks(model, tokenizer, cfg.lm_eval_tasks, cfg.lm_eval_limit, cfg.batch_size)
    return {
        "model_dir": str(model_dir),
        "domain_bpb": domain["bpb"],
        "general_bpb": general["bpb"],
        "probe_acc": probe["acc"] if probe else None,
        "domain": domain,
        "general": general,
        "probe": probe,
        "tasks": tasks,
        "seconds": round(time.time() - started, 3),
    }


def _rel(new: float | None, old: float | None) -> float | None:
    if new is None or old is None or not old or any(map(math.isnan, (new, old))):
        return None
    return (new - old) / old


def eval_delta(base: dict, trained: dict) -> dict:
    """Relative bpb changes (negative = better) and probe accuracy change in points of 1.0."""
    probe = None
    if base.get("probe_acc") is not None and trained.get("probe_acc") is not None:
        probe = trained["probe_acc"] - base["probe_acc"]
    return {
        "domain_bpb_rel": _rel(trained.get("domain_bpb"), base.get("domain_bpb")),
        "general_bpb_rel": _rel(trained.get("general_bpb"), base.get("general_bpb")),
        "probe_acc_points": probe,
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}%"


def run_evaluate(
    cfg: EvalConfig,
    base_dir: Path,
    trained_dir: Path,
    domain_heldout: Path,
    knowledge_graph: Path | None,
    output: Path,
    progress: ProgressFn = no_progress,
) -> dict:
    """The evaluate stage: base and trained model on the same texts and probe; writes ``results.json``.

    ``results.json`` is ``{base: {...}, trained: {...}, delta: {domain_bpb_rel, general_bpb_rel,
    probe_acc_points}}``. Returns the stage manifest; its ``summary`` holds the headline numbers.
    The base model enters the stage key through ``base_model.model_fingerprint`` (its config and weight
    file sizes: hashing its weights would cost seconds per GB on every rerun).
    """
    inputs = [Path(trained_dir), Path(domain_heldout)] + ([Path(knowledge_graph)] if knowledge_graph else [])

    def work(partial: Path) -> dict:
        started = time.time()
        columns = {}
        for i, (name, model_dir) in enumerate((("base", base_dir), ("trained", trained_dir))):
            progress(i, 2, f"evaluating the {name} model ({model_dir})")
            columns[name] = evaluate_model(
                cfg, Path(model_dir), Path(domain_heldout), knowledge_graph, partial / name
            )
            logger.info(
                "%s model: domain bpb %.4f, general bpb %.4f, probe acc %s",
                name,
                columns[name]["domain_bpb"],
                columns[name]["general_bpb"],
                columns[name]["probe_acc"],
            )
        progress(2, 2, "evaluated base and trained")
        delta = eval_delta(columns["base"], columns["trained"])
        atomic_write_json(partial / "results.json", {**columns, "delta": delta})
        base, trained = columns["base"], columns["trained"]
        probe = (
            f", probe acc {base['probe_acc']:.3f} -> {trained['probe_acc']:.3f}"
            if delta["probe_acc_points"] is not None
            else ""
        )
        return {
            "base_domain_bpb": base["domain_bpb"],
            "trained_domain_bpb": trained["domain_bpb"],
            "base_general_bpb": base["general_bpb"],
            "trained_general_bpb": trained["general_bpb"],
            "base_probe_acc": base["probe_acc"],
            "trained_probe_acc": trained["probe_acc"],
            **delta,
            "domain_tokens": trained["domain"]["tokens"],
            "general_tokens": trained["general"]["tokens"],
            "probe_n": trained["probe"]["n"] if trained["probe"] else 0,
            "seconds": round(time.time() - started, 3),
            "log_line": (
                f"domain bpb {base['domain_bpb']:.4f} -> {trained['domain_bpb']:.4f} "
                f"({_pct(delta['domain_bpb_rel'])}), general bpb {base['general_bpb']:.4f} -> "
                f"{trained['general_bpb']:.4f} ({_pct(delta['general_bpb_rel'])}){probe} "
                f"in {time.time() - started:.1f}s"
            ),
        }

    extra = {"base": model_fingerprint(base_dir)}
    return run_stage("evaluate", output, cfg, inputs, work, extra_key=extra, code=("cpt_core.evaluate", "cpt_core.data"))


def load_results(path: Path) -> dict[str, Any]:
    """``results.json`` of an evaluate stage, with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"evaluation results {path} do not exist: run the evaluate stage first")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"evaluation results {path} are not valid JSON: {err}") from None
    for key in ("base", "trained"):
        if not isinstance(data.get(key), dict):
            raise ValueError(f"evaluation results {path} lack the {key!r} column")
    return data
