"""Training modes: LoRA with trainable embeddings, staged unfreezing, and the LR of each param group."""

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from cpt_core.train.config import TrainConfig
from cpt_core.train.modes import LoraSettings, UnfreezeStage, set_up_mode, stage_index
from cpt_core.train.optim import build_optimizer
from cpt_core.train.surgery import SURGERY_FILE
from cpt_core.train.tokenizer_ext import EXTENSION_FILE


def _tiny(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=tied,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def _step(model, optimizer) -> dict[str, torch.Tensor]:
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return before


def _changed(model, before) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}


@pytest.mark.parametrize("tied", [True, False])
def test_lora_with_embeddings_trains_exactly_adapters_and_vocabulary(tied, tmp_path):
    lora = LoraSettings(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    model, unfreezer = set_up_mode(_tiny(tied), "lora", lora, [], tmp_path)
    assert unfreezer is None
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    vocab = {n for n in trainable if "lora_" not in n}
    expected_vocab = {"base_model.model.model.embed_tokens.weight"} | (
        set() if tied else {"base_model.model.lm_head.weight"}
    )
    assert vocab == expected_vocab
    lora_names = {n for n in trainable if "lora_" in n}
    assert len(lora_names) == 3 * 2 * 2  # 3 layers x (q, v) x (A, B)
    assert all(".q_proj." in n or ".v_proj." in n for n in lora_names)
    # One optimizer step moves the vocabulary layers and the adapters' B matrices, and nothing else.
    optimizer, _ = build_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.0), 10)
    before = _step(model, optimizer)
    changed = _changed(model, before)
    assert expected_vocab <= changed and changed <= trainable
    assert not any("base_layer" in n or "norm" in n for n in changed)
    merged = model.merge_and_unload()
    assert not any("lora" in n for n, _ in merged.named_parameters())

    no_vocab = LoraSettings(r=4, target_modules=["q_proj"], trainable_embeddings=False)
    model, _ = set_up_mode(_tiny(tied), "lora", no_vocab, [], tmp_path)
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="not modules"):
        set_up_mode(_tiny(tied), "lora", LoraSettings(target_modules=["qkv"]), [], tmp_path)


def test_stage_index_follows_steps_and_fractions():
    stages = [
        UnfreezeStage(until_step=3, train=["new_embeddings"]),
        UnfreezeStage(until_fraction=0.5, train=["lm_head"]),
        UnfreezeStage(train=["all"]),
    ]
    assert [stage_index(stages, s, 10) for s in range(10)] == [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="only the last stage"):
        TrainConfig(unfreeze=[UnfreezeStage(train=["lm_head"]), UnfreezeStage(train=["all"])])
    with pytest.raises(ValueError, match="increase"):
        TrainConfig(unfreeze=[{"until_step": 5, "train": ["lm_head"]}, {"until_step": 2, "train": ["all"]},
                              {"train": ["all"]}])  # fmt: skip
    with pytest.raises(ValueError, match="not both"):
        UnfreezeStage(until_step=1, until_fraction=0.5, train=["all"])


def test_staged_unfreezing_freezes_what_each_stage_says(tmp_path):
    (tmp_path / EXTENSION_FILE).write_text(json.dumps({"first_new_id": 100}))
    (tmp_path / SURGERY_FILE).write_text(json.dumps({"identity_layers": [2]}))
    stages = [
        UnfreezeStage(until_step=1, train=["new_embeddings"]),
        UnfreezeStage(until_step=2, train=["lm_head", "new_layers"]),
        UnfreezeStage(train=["all"]),
    ]
    model, unfreezer = set_up_mode(_tiny(False), "full", LoraSettings(), stages, tmp_path)
    optimizer, _ = build_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.0), 3)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    emb = "model.embed_tokens.weight"

    assert unfreezer.apply(0, 3) and not unfreezer.apply(0, 3)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {emb}
    before = _step(model, optimizer)
    assert _changed(model, before) == {emb}
    new_rows = model.model.embed_tokens.weight
    assert torch.equal(new_rows[:100], before[emb][:100]) and not torch.equal(new_rows[100:], before[emb][100:])

    unfreezer.apply(1, 3)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"lm_head.weight"} | {n for n, _ in model.named_parameters() if n.startswith("model.layers.2.")}
    before = _step(model, optimizer)
    changed = _changed(model, before)
    assert "lm_head.weight" in changed and emb not in changed and changed <= trainable
    assert not any(n.startswith(("model.layers.0.", "model.layers.1.")) for n in changed)

    unfreezer.apply(2, 3)
    assert all(p.requires_grad for p in model.parameters())
    before = _step(model, optimizer)
    assert torch.ne(model.model.embed_tokens.weight[:100], before[emb][:100]).any()  # the mask is gone


def test_unfreeze_parts_that_the_model_lacks_fail_clearly(tmp_path):
    for part, message in (("new_embeddings", "extended tokenizer"), ("new_layers", "llama_pro"), ("lora", "lora")):
        with pytest.raises(ValueError, match=message):
            set_up_mode(_tiny(True), "full", LoraSettings(), [UnfreezeStage(train=[part])], tmp_path)


def test_each_param_group_gets_its_configured_lr():
    cfg = TrainConfig(lr=3e-4, embedding_lr_mult=0.2, weight_decay=0.05, warmup_ratio=0.0)
    for mode in ("full", "lora"):
        model, _ = set_up_mode(_tiny(False), mode, LoraSettings(r=2, target_modules=["q_proj"]), [], ".")
        optimizer, scheduler = build_optimizer(model, cfg, 10)
        groups = {g["name"]: g for g in optimizer.param_groups}
        assert groups["embeddings"]["lr"] == pytest.approx(6e-5) and groups["embeddings"]["weight_decay"] == 0
        assert groups["decay"]["lr"] == pytest.approx(3e-4) and groups["decay"]["weight_decay"] == 0.05
        emb_ids = {id(p) for p in groups["embeddings"]["params"]}
        assert emb_ids == {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
        if mode == "lora":
            assert "no_decay" not in groups  # norms are frozen under LoRA
            assert all(p.requires_grad for g in optimizer.param_groups for p in g["params"])
        else:
            assert groups["no_decay"]["lr"] == pytest.approx(3e-4)
