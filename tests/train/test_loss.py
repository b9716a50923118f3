"""Loss normalisation over the gradient-accumulation window, with uneven numbers of target tokens."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from cpt_core.train.loss import IGNORE_INDEX, backward_window, target_count, token_loss_sum


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _tiny_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16)  # fmt: skip
    return LlamaForCausalLM(config)


def _micro_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    out = []
    for masked_from in (3, 11):  # 2*(3-1)=4 targets in one micro-batch, 2*(11-1)=20 in the other
        ids = torch.randint(0, 50, (2, 12), generator=g)
        labels = ids.clone()
        labels[:, masked_from:] = IGNORE_INDEX
        out.append((ids, labels))
    return out


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


def test_window_gradient_equals_the_token_mean_over_the_union():
    from accelerate import Accelerator

    batches = _micro_batches()
    assert [int(target_count(labels)) for _, labels in batches] == [4, 20]

    # Reference: one batch holding both micro-batches, HF's token mean over its unmasked targets.
    reference = _tiny_model()
    ids = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    union_loss = reference(input_ids=ids, labels=labels).loss
    union_loss.backward()
    expected = _grads(reference)

    accelerator = Accelerator(gradient_accumulation_steps=2, cpu=True)
    model = accelerator.prepare(_tiny_model())
    loss_sum, tokens = backward_window(accelerator, model, batches)
    got = _grads(model)
    assert int(tokens) == 24
    assert float(loss_sum / tokens) == pytest.approx(union_loss.item(), rel=1e-5)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)

    # The per-micro-batch mean (what accumulating model(labels=...).loss gives) is a different gradient.
    naive = _tiny_model()
    for micro_ids, micro_labels in batches:
        (naive(input_ids=micro_ids, labels=micro_labels).loss / 2).backward()
    differs = [not torch.allclose(n, e, rtol=1e-3, atol=1e-6) for n, e in zip(_grads(naive), expected, strict=True)]
    assert any(differs)


def test_token_loss_sum_ignores_masked_labels_and_wrong_window_size_is_refused():
    from accelerate import Accelerator

    model = _tiny_model()
    ids, labels = _micro_batches()[0]
    total = token_loss_sum(model, ids, labels)
    assert (total / target_count(labels)).item() == pytest.approx(model(input_ids=ids, labels=labels).loss.item())
    accelerator = Accelerator(gradient_accumulation_steps=3, cpu=True)
    with pytest.raises(ValueError, match="2 micro-batches for gradient_accumulation_steps=3"):
        backward_window(accelerator, model, _micro_batches())
