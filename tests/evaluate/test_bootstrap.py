"""Document-bootstrap intervals of bits/byte and of the paired trained-minus-base change."""

from __future__ import annotations

import math

import pytest

from cpt_core.evaluate.bootstrap import bpb_interval, paired_difference


def _nll(bpb: list[float], n_bytes: list[int]) -> list[float]:
    return [b * n * math.log(2) for b, n in zip(bpb, n_bytes, strict=True)]


def test_interval_brackets_the_point_value_and_is_reproducible():
    n_bytes = [100 + 7 * i for i in range(40)]
    per_doc = [1.0 + 0.5 * ((i * 37) % 11) / 10 for i in range(40)]
    nll = _nll(per_doc, n_bytes)
    point = sum(nll) / (math.log(2) * sum(n_bytes))
    lo, hi = bpb_interval(nll, n_bytes)
    assert lo < point < hi and hi - lo < 0.3
    assert bpb_interval(nll, n_bytes) == [lo, hi]  # fixed seed
    assert bpb_interval(nll, n_bytes, seed=1) != [lo, hi]
    # Identical documents: nothing varies, a zero-width interval.
    assert bpb_interval(_nll([1.5] * 5, [10] * 5), [10] * 5) == pytest.approx([1.5, 1.5])


def test_paired_interval_cancels_document_difficulty():
    # Documents differ wildly in difficulty, but the trained model is 2% better on every one of them: the
    # paired interval of the relative change is tight around -2%, far narrower than either model's own.
    n_bytes = [200] * 30
    base = _nll([0.5 + 3 * ((i * 13) % 7) / 7 for i in range(30)], n_bytes)
    trained = [x * 0.98 for x in base]
    out = paired_difference(base, trained, n_bytes)
    assert out["rel"] == pytest.approx(-0.02)
    assert out["rel_ci"] == pytest.approx([-0.02, -0.02])
    assert out["diff"] < 0 and out["diff_ci"][0] <= out["diff"] <= out["diff_ci"][1]
    own = bpb_interval(base, n_bytes)
    assert own[1] - own[0] > 10 * (out["diff_ci"][1] - out["diff_ci"][0])


def test_paired_interval_is_wide_when_the_gain_is_one_lucky_document():
    n_bytes = [100] * 20
    base = _nll([1.0] * 20, n_bytes)
    trained = list(base)
    trained[0] *= 0.5  # one document much better, the rest unchanged: point gain 2.5%
    out = paired_difference(base, trained, n_bytes)
    assert out["rel"] == pytest.approx(-0.025)
    assert out["rel_ci"][1] > -0.01 and out["rel_ci"][0] < -0.025


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="no scored text"):
        bpb_interval([], [])
    with pytest.raises(ValueError, match="2 per-text scores for 3 byte counts"):
        bpb_interval([1.0, 2.0], [1, 2, 3])
