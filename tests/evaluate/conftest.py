"""One tiny Llama pair for the evaluate tests: a base model and a copy trained on prose and the probe's lines."""

from __future__ import annotations

import random

import pytest
import torch

from cpt_core.data.knowledge_graph import Fact, probe_rows, save_facts
from cpt_core.evaluate.stage import load_model
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


def prose_texts(n: int, seed: int, max_words: int = 120) -> list[str]:
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


@pytest.fixture(scope="package")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    facts = _facts()
    rows = probe_rows(facts, seed=0)
    prose = prose_texts(8, seed=1, max_words=40)
    train_texts = prose + _probe_lines(rows) * 4
    base_dir = build_tiny_llama(root / "base", train_texts + [f.statement for f in facts], seq_len=128)
    model, tokenizer = load_model(base_dir, "cpu")
    trained, _ = load_model(base_dir, "cpu")
    # lr 1e-3: every rate from 7e-4 to 2e-3 learns all 8 facts; at 3e-3 the run can plateau at chance on some
    # CPUs (float rounding differs across instruction sets: an AVX-512 EPYC learned none of them).
    _train(trained, tokenizer, train_texts, steps=600, lr=1e-3)
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
        "other": prose_texts(6, seed=2),
    }
