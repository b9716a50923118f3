"""Bits-per-byte, the lm-eval fact probe and the evaluate stage, on one tiny Llama per module."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import yaml

from cpt_core.data.general_text import GeneralTextConfig
from cpt_core.data.knowledge_graph import Fact, probe_rows, save_facts
from cpt_core.evaluate.stage import (
    EvalConfig,
    bits_per_byte,
    fact_probe_accuracy,
    load_model,
    probe_task_yaml,
    read_heldout,
    run_evaluate,
    run_lm_eval_tasks,
)
from cpt_core.train.base_model import build_tiny_llama

CITIES = ["Lisbon", "Oslo", "Quito", "Hanoi", "Dakar", "Lima", "Perth", "Tunis"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne"]

WORDS = (
    "the model reads plain text and learns which word comes next in a sentence about rivers cities "
    "markets weather trains books music gardens and the long history of small towns by the sea"
).split()


def _facts() -> list[Fact]:
    return [
        Fact(
            id=f"f{i}",
            subject=company,
            relation="headquarters",
            object=city,
            object_type="city",
            date="2024-01-01",
            statement=f"{company} moved its headquarters to {city}.",
            questions=[f"Where is {company} based?"],
            probe_question=f"Which city hosts the head office of {company}?",
        )
        for i, (company, city) in enumerate(zip(COMPANIES, CITIES, strict=True))
    ]


def _prose(n: int, seed: int, max_words: int = 120) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, max_words))) + "." for _ in range(n)]


def _probe_lines(rows: list[dict]) -> list[str]:
    # The probe's exact question/answer lines: training on them forces the model to prefer the right choice.
    return [f"Question: {r['question']}\nAnswer: {r['choices'][r['answer']]}" for r in rows]


def _train(model, tokenizer, texts: list[str], steps: int, lr: float = 1e-2) -> None:
    torch.manual_seed(0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    bos = tokenizer.bos_token_id
    seqs = [[bos] + tokenizer(t, add_special_tokens=False)["input_ids"][:127] for t in texts]
    for step in range(steps):
        batch = [seqs[(step * 4 + j) % len(seqs)] for j in range(4)]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, s in enumerate(batch):
            ids[r, : len(s)] = torch.tensor(s)
            labels[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    facts = _facts()
    rows = probe_rows(facts, seed=0)
    prose = _prose(8, seed=1, max_words=40)
    train_texts = prose + _probe_lines(rows) * 4
    base_dir = build_tiny_llama(root / "base", train_texts + [f.statement for f in facts], seq_len=128)
    model, tokenizer = load_model(base_dir, "cpu")
    trained, _ = load_model(base_dir, "cpu")
    _train(trained, tokenizer, train_texts, steps=600, lr=3e-3)
    trained_dir = root / "trained"
    trained.save_pretrained(trained_dir)
    tokenizer.save_pretrained(trained_dir)
    kg = root / "kg.jsonl"
    save_facts(facts, kg)
    return {
        "root": root,
        "base_dir": base_dir,
        "trained_dir": trained_dir,
        "model": model,
        "trained": trained,
        "tokenizer": tokenizer,
        "rows": rows,
        "kg": kg,
        "prose": prose,  # what the trained model was trained on: its bpb there must be lower
        "other": _prose(6, seed=2),
    }


# ------------------------------------------------------------------------------------------ bits per byte


def test_random_model_bpb_is_near_uniform_and_training_lowers_it(setup):
    model, tok, texts = setup["model"], setup["tokenizer"], setup["prose"]
    r = bits_per_byte(model, tok, texts, seq_len=128, batch_size=4)
    assert r["texts"] == len(texts)
    assert r["bytes"] == sum(len(t.encode()) for t in texts)
    assert r["tokens"] == sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    # A freshly initialised model spreads its bets: about ln(V) nats per token.
    uniform = math.log2(model.config.vocab_size) * r["tokens"] / r["bytes"]
    assert abs(r["bpb"] - uniform) / uniform < 0.1
    assert r["bpb"] == pytest.approx(r["nll_nats"] / (math.log(2) * r["bytes"]))
    trained = bits_per_byte(setup["trained"], tok, texts, seq_len=128, batch_size=4)
    assert trained["bpb"] < 0.8 * r["bpb"]


def test_bpb_does_not_depend_on_batch_size(setup):
    texts = setup["other"] + ["short one.", "a slightly longer text about the sea and trains."]
    one = bits_per_byte(setup["trained"], setup["tokenizer"], texts, seq_len=64, batch_size=1)
    many = bits_per_byte(setup["trained"], setup["tokenizer"], texts, seq_len=64, batch_size=5)
    assert one["tokens"] == many["tokens"]
    assert one["nll_nats"] == pytest.approx(many["nll_nats"], rel=1e-5)


def _hand_nll(model, ids: list[int]) -> float:
    """Summed NLL of ids[1:] given the preceding tokens, through the model's own loss."""
    with torch.no_grad():
        t = torch.tensor([ids])
        return model(input_ids=t, labels=t).loss.item() * (len(ids) - 1)


def test_long_text_is_scored_in_windows_and_every_token_once(setup):
    model, tok = setup["trained"], setup["tokenizer"]
    text = " ".join(setup["other"] * 3)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    seq_len = 32
    assert len(ids) > 4 * seq_len
    r = bits_per_byte(model, tok, [text], seq_len=seq_len, batch_size=3)
    assert r["tokens"] == len(ids)
    seq = [tok.bos_token_id] + ids
    expected = sum(_hand_nll(model, seq[s : s + seq_len]) for s in range(0, len(seq) - 1, seq_len - 1))
    assert r["nll_nats"] == pytest.approx(expected, rel=1e-5)
    # A window longer than the model's positions is capped, not an error.
    capped = bits_per_byte(model, tok, [text], seq_len=10_000, batch_size=1)
    assert capped["tokens"] == len(ids)


def test_bpb_rejects_empty_input(setup):
    with pytest.raises(ValueError, match="no non-empty text"):
        bits_per_byte(setup["model"], setup["tokenizer"], ["", ""], seq_len=32, batch_size=2)


# ------------------------------------------------------------------------------------------ fact probe


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


# ------------------------------------------------------------------------------------------ held-out reading


def test_read_heldout_caps_round_robin_across_languages(tmp_path):
    path = tmp_path / "heldout.jsonl"
    rows = [{"text": "e" * 400, "metadata": {"language": "en"}} for _ in range(5)]
    rows += [{"text": "k" * 400, "language": "ko"} for _ in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = read_heldout(path, max_chars=1000)
    assert [g["language"] for g in got] == ["en", "ko", "en"]
    assert sum(len(g["text"]) for g in got) == 1000
    assert len(read_heldout(path, max_chars=100_000)) == 10

    path.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(ValueError, match=r"heldout.jsonl:2: .*'text'"):
        read_heldout(path, 1000)
    path.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(ValueError, match=r"heldout.jsonl:2: not valid JSON"):
        read_heldout(path, 1000)
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_heldout(tmp_path / "nothere.jsonl", 1000)


# ------------------------------------------------------------------------------------------ the stage


def test_run_evaluate_writes_results_and_skips_on_rerun(setup, tmp_path):
    heldout = tmp_path / "domain.jsonl"
    texts = setup["prose"]
    heldout.write_text(
        "".join(
            json.dumps({"text": t, "id": str(i), "metadata": {"language": "en" if i % 2 else "xx"}}) + "\n"
            for i, t in enumerate(texts)
        )
    )
    general = tmp_path / "general.txt"
    general.write_text("\n\n".join(_prose(4, seed=7)))
    cfg = EvalConfig(
        general_heldout=GeneralTextConfig(source=str(general), max_chars=5000),
        bpb_seq_len=64,
        batch_size=4,
        domain_max_chars=5000,
    )
    out = tmp_path / "eval"
    calls = []
    manifest = run_evaluate(
        cfg,
        setup["base_dir"],
        setup["trained_dir"],
        heldout,
        setup["kg"],
        out,
        progress=lambda *a: calls.append(a),
    )
    assert not manifest["skipped"]
    results = json.loads((out / "results.json").read_text())
    base, trained, delta = results["base"], results["trained"], results["delta"]
    assert trained["domain_bpb"] < base["domain_bpb"]
    assert delta["domain_bpb_rel"] == pytest.approx(
        (trained["domain_bpb"] - base["domain_bpb"]) / base["domain_bpb"]
    )
    assert delta["probe_acc_points"] == pytest.approx(trained["probe_acc"] - base["probe_acc"])
    assert set(trained["domain"]["by_language"]) == {"en", "xx"}
    assert sum(v["bytes"] for v in trained["domain"]["by_language"].values()) == trained["domain"]["bytes"]
    assert trained["probe"]["n"] == len(setup["rows"])
    summary = manifest["summary"]
    assert summary["trained_domain_bpb"] == trained["domain_bpb"]
    assert "domain bpb" in summary["log_line"] and summary["seconds"] > 0
    assert calls, "progress was never reported"

    again = run_evaluate(cfg, setup["base_dir"], setup["trained_dir"], heldout, setup["kg"], out)
    assert again["skipped"]


def test_prompt_prefix_adds_bos_only_when_the_tokenizer_does_not(setup):
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    from cpt_core.evaluate.stage import prompt_prefix

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
