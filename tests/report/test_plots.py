"""Report plots: real PNG files, written whole, that survive half-written metrics and missing probe results."""

from __future__ import annotations

import json

import pytest

from cpt_core.report.plots import eval_delta_png, loss_curve_png, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

RESULTS = {
    "base": {"domain_bpb": 1.2, "general_bpb": 0.9, "probe_acc": 0.25},
    "trained": {"domain_bpb": 1.05, "general_bpb": 0.918, "probe_acc": 0.5},
    "delta": {"domain_bpb_rel": -0.125, "general_bpb_rel": 0.02, "probe_acc_points": 0.25},
}


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1000


def test_read_metrics_keeps_loss_rows_and_counts_unreadable_lines(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 3.5}\n{"event": "checkpoint"}\n\n{"step": 2, "train_loss": 3}\n{"st')
    rows, bad = read_metrics(metrics)
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 3.5), (2, 3.0)]
    assert isinstance(rows[1]["loss"], float) and bad == 1


def test_loss_curve_png(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": i, "loss": 4.0 - 0.1 * i, "lr": 1e-4 * min(1, i / 3)} for i in range(20)]
    metrics.write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 20, "lo'
    )  # a line being written
    out = loss_curve_png(metrics, tmp_path / "report" / "loss_curve.png")
    assert out == tmp_path / "report" / "loss_curve.png" and _is_png(out)
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"event": "start"}\n')
    assert _is_png(loss_curve_png(empty, tmp_path / "empty.png"))
    with pytest.raises(FileNotFoundError, match="nothing.jsonl"):
        loss_curve_png(tmp_path / "nothing.jsonl", tmp_path / "x.png")


def test_eval_delta_png(tmp_path):
    assert _is_png(eval_delta_png(RESULTS, tmp_path / "eval_delta.png"))
    no_probe = {k: {**v, "probe_acc": None} for k, v in RESULTS.items() if k != "delta"}
    assert _is_png(eval_delta_png(no_probe, tmp_path / "no_probe.png"))
    assert not [p for p in tmp_path.rglob("*.tmp.png")]  # written under a temporary name, then renamed


def test_smoothed_loss_is_a_debiased_moving_average():
    from cpt_core.report.plots import smoothed

    assert smoothed([4.0, 4.0, 4.0]) == pytest.approx([4.0, 4.0, 4.0])  # no pull toward zero at the start
    noisy = [5.0, 3.0, 5.0, 3.0, 5.0, 3.0]
    out = smoothed(noisy, 0.5)
    assert max(out[2:]) - min(out[2:]) < max(noisy) - min(noisy)
