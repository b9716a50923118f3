"""Document-masked attention: a packed row's losses are its documents' losses run one by one."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from cpt_core.train.doc_mask import document_inputs
from cpt_core.train.loss import IGNORE_INDEX, token_loss_sum

SEP = 1


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=50, attn_implementation="sdpa")  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


def _docs():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(2, 50, (n,), generator=g).tolist() + [SEP] for n in (5, 9, 3)]


def test_positions_labels_and_mask_restart_per_document():
    row = torch.tensor([[7, 8, SEP, 9, SEP, 4, 5]])
    labels, inputs = document_inputs(row, SEP, flash=False)
    assert inputs["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1]]
    assert labels.tolist() == [[7, 8, SEP, IGNORE_INDEX, SEP, IGNORE_INDEX, 5]]
    allowed = inputs["attention_mask"][0, 0] == 0
    assert allowed[4].tolist() == [False, False, False, True, True, False, False]
    assert allowed[6].tolist() == [False] * 5 + [True, True]
    _, flash_inputs = document_inputs(row, SEP, flash=True)
    assert "attention_mask" not in flash_inputs  # varlen attention reads the positions alone


def test_packed_masked_loss_equals_documents_one_by_one(model):
    docs = _docs()
    row = torch.tensor([sum(docs, [])])
    labels, inputs = document_inputs(row, SEP, flash=False)
    with torch.no_grad():
        packed = token_loss_sum(model, row, labels, **inputs)
        alone = sum(token_loss_sum(model, torch.tensor([d]), torch.tensor([d])) for d in docs)
        unmasked = token_loss_sum(model, row, labels)  # same targets, attention across documents
    assert packed.item() == pytest.approx(alone.item(), rel=1e-5)
    assert abs(unmasked.item() - alone.item()) > 1e-3  # without the mask, documents see each other
