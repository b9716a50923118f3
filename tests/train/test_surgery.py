"""Depth up-scaling: the SOLAR layer map, LLaMA-Pro identity insertion, and the saved HF folder."""

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from cpt_core.train.base_model import build_tiny_llama
from cpt_core.train.surgery import (
    SurgeryConfig,
    apply_surgery,
    llama_pro_layer_map,
    run_surgery,
    solar_layer_map,
)


def _tiny(layers: int = 4, tied: bool = True) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
        num_key_value_heads=2, tie_word_embeddings=tied,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


def test_solar_layer_map_drops_m_from_each_copy():
    assert solar_layer_map(4, 1) == [0, 1, 2, 1, 2, 3]
    assert solar_layer_map(32, 8) == list(range(24)) + list(range(8, 32))  # SOLAR 10.7B: 48 layers
    assert len(solar_layer_map(32, 8)) == 2 * (32 - 8)
    for bad in (0, 4):
        with pytest.raises(ValueError, match="drop_layers"):
            solar_layer_map(4, bad)


def test_llama_pro_map_inserts_a_copy_after_every_k_layers():
    assert llama_pro_layer_map(4, 2) == [(0, False), (1, False), (1, True), (2, False), (3, False), (3, True)]
    assert [old for old, _ in llama_pro_layer_map(3, 1)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="every"):
        llama_pro_layer_map(4, 5)


def test_config_needs_the_kind_parameter():
    with pytest.raises(ValueError, match="drop_layers"):
        SurgeryConfig(kind="solar")
    with pytest.raises(ValueError, match="every"):
        SurgeryConfig(kind="llama_pro")


def test_solar_copies_the_mapped_weights():
    model = _tiny(4)
    old = [layer.mlp.up_proj.weight.clone() for layer in model.model.layers]
    info = apply_surgery(model, SurgeryConfig(kind="solar", drop_layers=1))
    assert info["layers_after"] == 6 == model.config.num_hidden_layers
    for new_index, old_index in enumerate(info["layer_map"]):
        layer = model.model.layers[new_index]
        assert torch.equal(layer.mlp.up_proj.weight, old[old_index])
        assert layer.self_attn.layer_idx == new_index
    # Copies are independent parameters, not the same tensor twice.
    assert model.model.layers[1].mlp.up_proj.weight is not model.model.layers[3].mlp.up_proj.weight


@pytest.mark.parametrize("tied", [True, False])
def test_identity_insertion_leaves_outputs_unchanged(tied):
    model = _tiny(4, tied)
    ids = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    info = apply_surgery(model, SurgeryConfig(kind="llama_pro", every=2))
    assert info["layers_after"] == 6 and info["identity_layers"] == [2, 5]
    with torch.no_grad():
        after = model(input_ids=ids).logits
        generated = model.generate(ids[:, :4], max_new_tokens=3, do_sample=False)  # the KV cache path
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    inserted = model.model.layers[2]
    assert not inserted.self_attn.o_proj.weight.any() and not inserted.mlp.down_proj.weight.any()
    assert inserted.self_attn.q_proj.weight.any()  # only the output projections are zero
    assert generated.shape == (2, 7)


def test_run_surgery_saves_an_ordinary_hf_folder(tmp_path):
    texts = ["the quick brown fox jumps over the lazy dog"] * 20
    base = build_tiny_llama(tmp_path / "base", texts, vocab_size=300, hidden=32, layers=2, heads=2, seq_len=32)
    info = run_surgery(SurgeryConfig(kind="llama_pro", every=1), base, tmp_path / "grown")
    grown = AutoModelForCausalLM.from_pretrained(tmp_path / "grown")
    original = AutoModelForCausalLM.from_pretrained(base)
    assert grown.config.num_hidden_layers == 4 == info["layers_after"]
    ids = torch.arange(10).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(grown(input_ids=ids).logits, original(input_ids=ids).logits, rtol=0, atol=1e-6)
    assert (tmp_path / "grown" / "tokenizer.json").exists() and (tmp_path / "grown" / "surgery.json").exists()


def test_prepare_stage_grows_then_extends_into_one_hf_folder_and_skips_when_done(tmp_path):
    import json

    from cpt_core.config import validate_config
    from cpt_core.train.prepare import run_prepare_model

    english = ["the quick brown fox jumps over the lazy dog"] * 20
    base = build_tiny_llama(tmp_path / "base", english, vocab_size=300, hidden=32, layers=2, heads=2, seq_len=32)
    docs = tmp_path / "curated" / "documents"
    docs.mkdir(parents=True)
    rows = [{"id": f"d{i}", "text": "파일을 저장합니다 메뉴를 선택합니다 " * 3, "metadata": {"language": "ko"}}
            for i in range(40)]  # fmt: skip
    (docs / "00000.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    cfg = validate_config(
        {"model": {"surgery": {"kind": "llama_pro", "every": 2}, "extend_tokenizer": {"new_tokens": 8}}}
    ).model
    manifest = run_prepare_model(cfg, base, tmp_path / "curated", tmp_path / "start-model")
    out = tmp_path / "start-model"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 3 and model.config.vocab_size % 64 == 0
    assert manifest["summary"]["tokenizer_extension"]["added"] == 8
    assert (out / "surgery.json").exists() and (out / "tokenizer_extension.json").exists()
    assert not list(tmp_path.glob("*-surgery"))
    again = run_prepare_model(cfg, base, tmp_path / "curated", out)
    assert again["skipped"] and again["key"] == manifest["key"]
    with pytest.raises(ValueError, match="model.surgery"):
        validate_config({"model": {"surgery": {"kind": "solar"}}})
