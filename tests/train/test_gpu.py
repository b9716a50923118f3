"""GPU paths of the trainer: bf16 with fused AdamW, and varlen (flash) document masking against the CPU mask.

Skipped without CUDA; run them on a GPU machine with ``pytest -m gpu``.
"""

import importlib.util

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from cpt_core.train.config import TrainConfig
from cpt_core.train.doc_mask import document_inputs
from cpt_core.train.loop import train
from cpt_core.train.loss import token_loss_sum
from cpt_core.train.optim import build_optimizer
from tests.train.test_loop import _metrics, _spec, data, fresh_accelerate_state  # noqa: F401

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_bf16_training_uses_fused_adamw_and_learns(data):  # noqa: F811
    root, model, tokens = data
    summary = train(_spec(root, model, tokens, "gpu-bf16", max_steps=6, precision="bf16"))
    rows = _metrics(root / "gpu-bf16" / "out")
    assert summary["precision"] == "bf16" and summary["device"].startswith("cuda")
    assert rows[-1]["loss"] < rows[0]["loss"] and summary["peak_from"].endswith(("(bf16)", "(tf32)"))
    tiny = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, vocab_size=64)).cuda()  # fmt: skip
    optimizer, _ = build_optimizer(tiny, TrainConfig(), 10)
    assert optimizer.defaults["fused"]


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="needs flash-attn")
def test_varlen_flash_positions_equal_the_cpu_block_mask():
    torch.manual_seed(0)
    cfg = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=64)
    sdpa = LlamaForCausalLM(LlamaConfig(**cfg, attn_implementation="sdpa")).cuda().to(torch.bfloat16).eval()
    flash = LlamaForCausalLM(LlamaConfig(**cfg, attn_implementation="flash_attention_2")).cuda().to(torch.bfloat16)
    flash.load_state_dict(sdpa.state_dict())
    row = torch.tensor([[5, 6, 7, 1, 8, 9, 1, 10, 11, 12, 13, 1]], device="cuda")
    labels, masked = document_inputs(row, 1, flash=False)
    _, varlen = document_inputs(row, 1, flash=True)
    with torch.no_grad():
        a = token_loss_sum(sdpa, row, labels, **masked)
        b = token_loss_sum(flash.eval(), row, labels, **varlen)
    assert a.item() == pytest.approx(b.item(), rel=2e-2)
