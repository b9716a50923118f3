"""Bits per byte: near uniform for an untrained model, lower after training, independent of batching,
every token scored exactly once across windows."""

from __future__ import annotations

import math

import pytest
import torch

from cpt_core.evaluate.bpb import bits_per_byte


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
