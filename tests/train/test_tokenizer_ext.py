"""Tokenizer extension: old ids kept, new tokens reachable, rows resized and initialised, save/reload identical."""

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from cpt_core.train.base_model import build_tiny_llama
from cpt_core.train.tokenizer_ext import (
    EXTENSION_FILE,
    ExtendTokenizerConfig,
    extend_model,
    extend_tokenizer,
)

ENGLISH = [f"The council of Alder counted {i} sheep and {i % 7} mills near the river." for i in range(60)]
WORDS = ["한국어", "문서", "사용자", "설정", "파일", "저장", "프로그램", "도움말", "선택", "메뉴", "창을", "엽니다"]


def _korean(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(n)]


def _docs() -> list[dict]:
    docs = [{"id": f"ko{i}", "text": t, "metadata": {"language": "ko"}} for i, t in enumerate(_korean(120))]
    return docs + [{"id": f"en{i}", "text": t, "metadata": {"language": "en"}} for i, t in enumerate(ENGLISH)]


def _base(tmp_path, tied=True):
    folder = build_tiny_llama(tmp_path / "base", ENGLISH, vocab_size=300, hidden=32, heads=2, seq_len=64)
    if not tied:  # same tokenizer, an untied head
        model = AutoModelForCausalLM.from_pretrained(folder)
        model.config.tie_word_embeddings = False
        untied = LlamaForCausalLM(model.config)
        untied.model.load_state_dict(model.model.state_dict())
        untied.lm_head.weight.data = model.lm_head.weight.detach().clone() + 0.01
        untied.save_pretrained(folder)
    return folder


def test_extension_keeps_every_old_id_and_round_trips_text(tmp_path):
    base = _base(tmp_path)
    record = extend_tokenizer(base, tmp_path / "ext", _korean(200), ExtendTokenizerConfig(new_tokens=40))
    old = AutoTokenizer.from_pretrained(base)
    new = AutoTokenizer.from_pretrained(tmp_path / "ext")
    old_vocab, new_vocab = old.get_vocab(), new.get_vocab()
    assert all(new_vocab[token] == i for token, i in old_vocab.items())
    assert record["added"] == 40 and len(new) == len(old) + 40 == record["new_vocab"]
    added_ids = sorted(i for t, i in new_vocab.items() if t not in old_vocab)
    assert added_ids == list(range(record["first_new_id"], record["first_new_id"] + 40))
    text = _korean(1, seed=9)[0] + " The council counted 3 sheep."
    ids = new(text)["input_ids"]
    assert new.decode(ids) == text
    assert set(ids) & set(added_ids)  # the new tokens are actually produced
    assert len(ids) < len(old(text)["input_ids"])
    assert new.eos_token == old.eos_token and new.eos_token_id == old.eos_token_id


def test_extension_refuses_a_non_bpe_tokenizer(tmp_path):
    base = _base(tmp_path)
    data = json.loads((base / "tokenizer.json").read_text())
    data["pre_tokenizer"] = {"type": "Whitespace"}
    (base / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="byte-level"):
        extend_tokenizer(base, tmp_path / "ext", _korean(50), ExtendTokenizerConfig(new_tokens=5))


@pytest.mark.parametrize("tied", [True, False])
def test_extended_model_resizes_inits_and_reloads_identically(tmp_path, tied):
    base = _base(tmp_path, tied)
    cfg = ExtendTokenizerConfig(new_tokens=30, heldout_fraction=0.2)
    report = extend_model(base, tmp_path / "ext", _docs(), cfg)
    assert report["rows_after"] % 64 == 0 and report["rows_after"] >= report["new_vocab"] and report["tied"] == tied
    assert report["tokens_per_byte_after"]["ko"] < report["tokens_per_byte_before"]["ko"]
    assert set(report["tokens_per_byte_before"]) == {"ko", "en", "all"}

    old_model = AutoModelForCausalLM.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "ext")
    tok = AutoTokenizer.from_pretrained(tmp_path / "ext")
    old_tok = AutoTokenizer.from_pretrained(base)
    assert model.get_input_embeddings().weight.shape[0] == report["rows_after"] == model.config.vocab_size
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    n_old = report["base_vocab"]
    for new_w, old_w in ((model.model.embed_tokens.weight, old_model.model.embed_tokens.weight),
                         (model.lm_head.weight, old_model.lm_head.weight)):  # fmt: skip
        assert torch.equal(new_w[:n_old], old_w[:n_old])  # old rows untouched
        for token_id in (report["first_new_id"], report["new_vocab"] - 1):
            # The base BPE's own split of the new token's byte-level string (it may be part of a character).
            token = tok.convert_ids_to_tokens(token_id)
            pieces = [t.id for t in old_tok.backend_tokenizer.model.tokenize(token)]
            assert len(pieces) >= 2
            torch.testing.assert_close(new_w[token_id], old_w[pieces].mean(dim=0))
    assert json.loads((tmp_path / "ext" / EXTENSION_FILE).read_text())["added"] == report["added"]

    # Save and reload: the same weights, vocabulary and encodings.
    model.save_pretrained(tmp_path / "again")
    tok.save_pretrained(tmp_path / "again")
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path / "again")
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "again")
    assert tok2.get_vocab() == tok.get_vocab()
    text = _korean(3, seed=5)[2]
    assert tok2(text)["input_ids"] == tok(text)["input_ids"]
    sd, sd2 = model.state_dict(), model2.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, model2(input_ids=ids).logits)


def test_mean_init_gives_every_new_row_the_mean_of_old_rows(tmp_path):
    base = _base(tmp_path)
    report = extend_model(base, tmp_path / "ext", _docs(), ExtendTokenizerConfig(new_tokens=10, init="mean"))
    old = AutoModelForCausalLM.from_pretrained(base).model.embed_tokens.weight
    new = AutoModelForCausalLM.from_pretrained(tmp_path / "ext").model.embed_tokens.weight
    mean = old[: report["base_vocab"]].mean(dim=0)
    for row in range(report["first_new_id"], report["rows_after"]):
        torch.testing.assert_close(new[row], mean)
