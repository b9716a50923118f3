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
