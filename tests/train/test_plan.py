"""``cptflow plan``: model shapes, the memory model, and the 7B recipe's layout that fits 8x80 GB."""

import json

import pytest
from typer.testing import CliRunner

from cpt_core.config import load_config
from cpt_core.train.plan import KNOWN_SHAPES, Layout, ModelShape, memory_per_gpu, plan_recipe, resolve_shape
from flows.cli import app


def test_llama2_7b_parameter_count_matches_the_published_figure():
    shape = ModelShape(**KNOWN_SHAPES["meta-llama/Llama-2-7b-hf"])
    assert shape.params == 6_738_415_616  # what transformers reports for Llama-2-7b-hf
    assert shape.flops_per_token(4096) == pytest.approx(6 * shape.params + 12 * 32 * 32 * 128 * 4096)


def test_sharding_divides_states_and_checkpointing_cuts_activations():
    shape = ModelShape(**KNOWN_SHAPES["meta-llama/Llama-2-7b-hf"])
    plain = memory_per_gpu(shape, Layout(8, 8, "none", False, 4, 4096))
    full = memory_per_gpu(shape, Layout(8, 8, "full", False, 4, 4096))
    hybrid = memory_per_gpu(shape, Layout(16, 8, "hybrid", True, 4, 4096))
    ckpt = memory_per_gpu(shape, Layout(8, 8, "full", True, 4, 4096))
    assert plain["weights"] + plain["gradients"] + plain["optimizer"] == pytest.approx(16 * shape.params / 2**30)
    assert full["optimizer"] == pytest.approx(plain["optimizer"] / 8)
    assert hybrid["optimizer"] == pytest.approx(full["optimizer"])  # sharded within the node of 8 only
    assert ckpt["activations"] < full["activations"] / 10


def test_shape_comes_from_a_local_config_json_first(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 500, "tie_word_embeddings": True,
    }))  # fmt: skip
    shape, where = resolve_shape(str(tmp_path))
    assert (shape.layers, shape.kv_heads, shape.tied) == (3, 2, True) and "config.json" in where
    with pytest.raises(ValueError, match="--shape"):
        resolve_shape(str(tmp_path / "missing"))


def test_korean_7b_recipe_fits_8x80gb_and_prints_key_values():
    cfg = load_config("configs/korean_7b.yaml", [])
    plan = plan_recipe(cfg)
    assert plan.fits and plan.layout.sharding == "full" and plan.layout.checkpointing and plan.layout.gpus == 8
    unsharded = plan_recipe(load_config("configs/korean_7b.yaml", ["train.sharding=none"]))
    assert not unsharded.fits

    result = CliRunner().invoke(app, ["plan", "configs/korean_7b.yaml", "--tokens", "1000000000"])
    assert result.exit_code == 0, result.output
    last = dict(kv.split("=") for kv in result.output.strip().splitlines()[-1].split())
    assert last["fits"] == "true" and float(last["per_gpu_gb"]) < 80 and last["tokens"] == "1000000000"
    assert "sharding none    checkpointing off" in result.output and "<- recipe" in result.output
