"""The lm-eval fact probe and extra lm-eval tasks on an in-memory model, offline."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from cpt_core.evaluate.harness import fact_probe_accuracy, probe_task_yaml, prompt_prefix, run_lm_eval_tasks


def _own_ranking(model, tok, rows: list[dict]) -> list[int]:
    """Argmax over choices of log P(' choice' | '<bos>Question: q\\nAnswer:'), tokenised as lm-eval does."""
    picks = []
    for row in rows:
        context = f"{tok.bos_token}Question: {row['question']}\nAnswer:"
        scores = []
        for choice in row["choices"]:
            ctx = tok(context)["input_ids"]
            whole = tok(context + " " + choice)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), -1)
            scores.append(sum(logp[i - 1, whole[i]].item() for i in range(len(ctx), len(whole))))
        picks.append(max(range(len(scores)), key=scores.__getitem__))
    return picks


def test_fact_probe_matches_own_loglikelihood_ranking(setup, tmp_path):
    tok, rows = setup["tokenizer"], setup["rows"]
    for name in ("model", "trained"):
        model = setup[name]
        result = fact_probe_accuracy(model, tok, rows, tmp_path / name, batch_size=4)
        assert result["n"] == len(rows)
        assert 0.0 <= result["acc"] <= 1.0 and 0.0 <= result["acc_norm"] <= 1.0
        picks = _own_ranking(model, tok, rows)
        assert [item["predicted"] for item in result["per_item"]] == picks
        assert [item["id"] for item in result["per_item"]] == [r["id"] for r in rows]
        expected = sum(p == r["answer"] for p, r in zip(picks, rows, strict=True)) / len(rows)
        assert result["acc"] == pytest.approx(expected)
        assert json.loads((tmp_path / name / "per_item.json").read_text()) == result["per_item"]
    # The model trained on the probe's own lines prefers the right answers.
    assert result["acc"] >= 0.75


def test_fact_probe_limit_and_bad_rows(setup, tmp_path):
    result = fact_probe_accuracy(setup["model"], setup["tokenizer"], setup["rows"], tmp_path, limit=3)
    assert result["n"] == 3
    bad = [{**setup["rows"][0], "answer": 9}]
    with pytest.raises(ValueError, match="not a choice index"):
        fact_probe_accuracy(setup["model"], setup["tokenizer"], bad, tmp_path)


def test_run_lm_eval_tasks_from_yaml_and_clear_offline_error(setup, tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in setup["rows"]))
    task = probe_task_yaml(data, tmp_path / "cache")
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(task))
    out = run_lm_eval_tasks(setup["trained"], setup["tokenizer"], [str(tmp_path / "probe.yaml")], limit=None)
    probe = fact_probe_accuracy(setup["trained"], setup["tokenizer"], setup["rows"], tmp_path / "p")
    assert out[task["task"]]["acc"] == pytest.approx(probe["acc"])

    hub = {**task, "task": "hub_task", "dataset_path": "allenai/ai2_arc", "dataset_kwargs": {}}
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump(hub))
    with pytest.raises(RuntimeError, match="internet"):
        run_lm_eval_tasks(setup["model"], setup["tokenizer"], [str(tmp_path / "hub.yaml")], limit=2)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        run_lm_eval_tasks(setup["model"], setup["tokenizer"], [str(tmp_path / "missing.yaml")], limit=2)
    assert run_lm_eval_tasks(setup["model"], setup["tokenizer"], [], limit=None) == {}


def test_prompt_prefix_adds_bos_only_when_the_tokenizer_does_not(setup):
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast


    tok = setup["tokenizer"]
    assert prompt_prefix(tok) == tok.bos_token
    backend = Tokenizer.from_str(tok.backend_tokenizer.to_str())  # a copy: the fixture's stays as it is
    backend.post_processor = processors.TemplateProcessing(
        single=f"{tok.bos_token} $A", special_tokens=[(tok.bos_token, tok.bos_token_id)]
    )
    adds_bos = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=tok.bos_token, eos_token=tok.eos_token
    )
    assert adds_bos("a")["input_ids"][0] == tok.bos_token_id
    assert prompt_prefix(adds_bos) == ""


HELLASWAG_ROWS = [
    {"ind": i, "activity_label": "Cooking", "ctx_a": f"A cook slices onion number {i}.", "ctx_b": "then she",
     "ctx": f"A cook slices onion number {i}. then she", "source_id": "local", "split": "val",
     "split_type": "indomain", "label": str(i % 4),
     "endings": ["puts them in a pan.", "paints the wall.", "drives a bus.", "reads a map."]}
    for i in range(8)
]  # fmt: skip


def test_a_registered_task_runs_from_local_files_and_a_missing_data_set_is_named(setup, tmp_path):
    val = tmp_path / "hellaswag_val.jsonl"
    val.write_text("".join(json.dumps(r) + "\n" for r in HELLASWAG_ROWS))
    out = run_lm_eval_tasks(setup["model"], setup["tokenizer"], ["hellaswag"], limit=None,
                            data={"hellaswag": {"validation": str(val)}})  # fmt: skip
    assert set(out) == {"hellaswag"} and 0 <= out["hellaswag"]["acc"] <= 1 and "acc_norm" in out["hellaswag"]

    with pytest.raises(FileNotFoundError, match="Rowan/hellaswag.*lm_eval_data"):
        run_lm_eval_tasks(setup["model"], setup["tokenizer"], ["hellaswag"], limit=2)
    with pytest.raises(FileNotFoundError, match="lm_eval_data.hellaswag"):
        run_lm_eval_tasks(setup["model"], setup["tokenizer"], ["hellaswag"], limit=2,
                          data={"hellaswag": {"validation": str(tmp_path / "missing.jsonl")}})  # fmt: skip
    with pytest.raises(ValueError, match="evaluation splits"):
        run_lm_eval_tasks(setup["model"], setup["tokenizer"], ["hellaswag"], limit=2,
                          data={"hellaswag": {"train": str(val)}})  # fmt: skip
