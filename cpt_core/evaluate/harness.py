"""lm-evaluation-harness on an in-memory model: the multiple-choice fact probe and any extra tasks.

The fact probe is built from the knowledge graph (``knowledge_graph.probe_rows``) and run through lm-eval
with a task YAML written next to a local JSONL, so it needs no network. Extra tasks are registered lm-eval
names (their data comes from the Hugging Face hub) or YAML paths (which may read local files).

``lm_eval`` is imported inside the functions that need it: it takes seconds to import.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from cpt_core.evaluate.bpb import prefix_token_id
from cpt_core.io import atomic_write_json, write_jsonl

PROBE_TASK = "cptflow_fact_probe"
PROBE_PROMPT = "Question: {{question}}\nAnswer:"


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


LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")


@functools.cache
def _registered_tasks():
    """lm-eval's index of its bundled tasks (read once per process)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_defaults=True)


def _task_config(manager, name: str) -> dict:
    """A registered task's YAML config (includes merged, functions left unresolved)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = manager.task_index.get(name)
    if entry is None or entry.yaml_path is None or getattr(entry.kind, "name", "") != "TASK":
        raise ValueError(f"lm-eval name {name!r} is not a single task with a YAML config (a group or tag?)")
    return load_yaml(entry.yaml_path, resolve_func=False)


def local_task_spec(manager, name: str, files: dict[str, str]) -> dict:
    """Registered task ``name`` reading its splits from local files (``{split: path}``) instead of the hub.

    Everything else (prompts, choices, metrics, document processing) stays the registered task's.
    """
    paths = {split: str(Path(p).expanduser().resolve()) for split, p in files.items()}
    if missing := [p for p in paths.values() if not Path(p).is_file()]:
        raise FileNotFoundError(f"evaluate.lm_eval_data.{name}: file(s) {missing} do not exist")
    formats = {LOCAL_FORMATS.get(Path(p).suffix.lower()) for p in paths.values()}
    if None in formats or len(formats) != 1:
        raise ValueError(
            f"evaluate.lm_eval_data.{name}: files must share one format among {sorted(LOCAL_FORMATS)}: {paths}"
        )
    cfg = _task_config(manager, name)
    wanted = [cfg.get(k) for k in ("validation_split", "test_split") if cfg.get(k)]
    if not any(split in paths for split in wanted):
        raise ValueError(f"evaluate.lm_eval_data.{name}: give a file for one of its evaluation splits {wanted}")
    override = {"task": name, "dataset_path": formats.pop(), "dataset_name": None, "dataset_kwargs": {"data_files": paths}}
    override.update({k: (cfg.get(k) if cfg.get(k) in paths else None) for k in SPLIT_KEYS})
    # A task reference with overrides inside an inline group is lm-eval's own way to re-point a registered task.
    return {"group": f"cptflow_local_{name}", "task": [override]}


def check_cached(manager, name: str) -> None:
    """Raise, naming the data set, when registered task ``name`` has no local copy to run offline from."""
    import datasets

    cfg = _task_config(manager, name)
    path, subset = cfg.get("dataset_path"), cfg.get("dataset_name")
    try:
        datasets.load_dataset_builder(path, subset, **(cfg.get("dataset_kwargs") or {}))
    except Exception as err:  # datasets raises many kinds (ConnectionError, FileNotFoundError, ValueError)
        raise FileNotFoundError(
            f"lm-eval task {name!r} needs the data set {path!r}" + (f" (subset {subset!r})" if subset else "")
            + " and it is neither in the HF datasets cache nor reachable offline: fill the cache (e.g. "
            "`datasets.load_dataset(...)` on a connected machine, copying ~/.cache/huggingface) or point the task "
            f"at local files with evaluate.lm_eval_data: {{{name}: {{validation: PATH.jsonl}}}} ({err})"
        ) from None


def run_lm_eval_tasks(
    model, tokenizer, tasks: list[str], limit: int | None, batch_size: int = 8, data: dict | None = None
) -> dict[str, dict[str, float]]:
    """Run lm-eval tasks (registered names or YAML paths) on the in-memory model: ``{task: {metric: value}}``.

    A registered task (hellaswag, kobest_boolq, kmmlu_..., haerae_...) runs offline from the HF datasets cache,
    or from local files given in ``data`` (``{task: {split: path}}``); when neither has it, the error names the
    data set. A YAML path may point at local data and runs offline.
    """
    if not tasks:
        return {}
    import lm_eval
    from lm_eval.tasks import TaskManager

    data = data or {}
    for task in tasks:
        if _is_yaml_path(task) and not Path(task).is_file():
            raise FileNotFoundError(f"lm-eval task file {task} does not exist")
    named = [t for t in tasks if not _is_yaml_path(t)]
    # The bundled task index is only needed to resolve names; building it costs several seconds, once.
    manager = _registered_tasks() if named else TaskManager(include_defaults=False)
    unknown = [t for t in named if t not in manager.all_tasks]
    if unknown:
        raise ValueError(f"unknown lm-eval task name(s) {unknown}: not among lm-eval's registered tasks")
    specs: list = []
    for t in tasks:
        if _is_yaml_path(t):
            specs.append(str(Path(t).resolve()))
        elif t in data:
            specs.append(local_task_spec(manager, t, data[t]))
        else:
            if t in manager.task_index and getattr(manager.task_index[t], "yaml_path", None):
                try:
                    check_cached(manager, t)
                except ValueError:
                    pass  # a group or tag: its members' data is checked by lm-eval itself
            specs.append(t)
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
    return {
        name: _clean_metrics(values)
        for name, values in results["results"].items()
        if not name.startswith("cptflow_local_")  # the inline group around a re-pointed task holds no metrics
    }

