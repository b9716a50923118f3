"""Per-step telemetry (LR per group, MFU, data wait, TensorBoard) and the warmup-stable-decay schedule."""

import pytest

from cpt_core.train.loop import train
from cpt_core.train.optim import lr_factor
from tests.train.test_loop import _metrics, _spec, data, fresh_accelerate_state  # noqa: F401


def test_wsd_warms_up_holds_then_decays_linearly_to_the_floor():
    f = [lr_factor(s, 20, 0.1, 0.1, "wsd", 0.25) for s in range(20)]
    assert f[0] < f[1] < 1.0 and f[2:15] == [1.0] * 13
    assert all(b < a for a, b in zip(f[15:], f[16:], strict=False)) and f[-1] == pytest.approx(0.1)
    cosine = [lr_factor(s, 20, 0.1, 0.1) for s in range(20)]
    assert cosine[10] < 1.0  # cosine decays from the end of warmup on


def test_metrics_rows_carry_group_lrs_mfu_data_wait_and_tensorboard(data):  # noqa: F811
    root, model, tokens = data
    summary = train(_spec(root, model, tokens, "telemetry", max_steps=3, embedding_lr_mult=0.5,
                          warmup_ratio=0.0, document_masking=True))  # fmt: skip
    rows = _metrics(root / "telemetry" / "out")
    groups = rows[0]["lr_groups"]
    assert groups["embeddings"] == pytest.approx(0.5 * groups["decay"]) and groups["decay"] == rows[0]["lr"]
    assert all(0 < r["mfu"] < 1 and 0 <= r["data_wait"] < 1 for r in rows)
    assert 0 < summary["mfu"] < 1 and summary["peak_from"].startswith("measured")
    assert summary["flops_per_token"] > 0
    events = list((root / "telemetry" / "out" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_new_token_rows_move_at_their_own_lr(data, tmp_path):  # noqa: F811
    import json
    import shutil

    import torch
    from accelerate.state import AcceleratorState
    from transformers import AutoModelForCausalLM

    root, model, tokens = data
    extended = tmp_path / "extended"
    shutil.copytree(model, extended)
    vocab = AutoModelForCausalLM.from_pretrained(extended).config.vocab_size
    first = vocab - 40
    (extended / "tokenizer_extension.json").write_text(json.dumps({"first_new_id": first}))
    before = AutoModelForCausalLM.from_pretrained(extended).get_input_embeddings().weight.detach().clone()
    AcceleratorState._reset_state(reset_partial_state=True)
    train(_spec(root, extended, tokens, "new-rows", max_steps=1, warmup_ratio=0.0, embedding_lr_mult=0.1,
                new_token_lr_mult=1.0))  # fmt: skip
    after = AutoModelForCausalLM.from_pretrained(root / "new-rows" / "out" / "final").get_input_embeddings().weight
    moved = (after.detach() - before).abs()
    # Adam's first step moves each element by about its LR: new rows 10x as far as the old ones.
    ratio = moved[first:].median() / moved[:first].median()
    assert 8 < ratio.item() < 12
    row = _metrics(root / "new-rows" / "out")[0]
    assert row["lr_groups"]["new_tokens"] == pytest.approx(10 * row["lr_groups"]["embeddings"])
    assert torch.isfinite(after).all()
