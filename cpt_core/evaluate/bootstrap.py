"""Bootstrap confidence intervals for bits per byte, resampling whole documents.

Bits per byte of a set of texts is a ratio of sums, ``sum(nll) / (ln 2 * sum(bytes))``, and its noise comes
from *which documents* were held out, not from which tokens: tokens of one document are strongly correlated.
So the resampling unit is the document: each of ``resamples`` draws picks ``n`` documents with replacement and
recomputes the ratio; the interval is the percentile interval of those values (``level`` = 0.95 gives the
2.5th and 97.5th percentiles).

Base and trained model are compared *paired*: every draw uses the same documents for both, so the interval of
their difference holds only the noise that does not cancel. A hard document is hard for both models; an
unpaired interval would count its difficulty twice and hide a real gain.

The draws come from a fixed seed, so the same scores give the same interval on every run (and a resumed
stage writes the same ``results.json``). One document gives a zero-width interval: there is nothing to
resample, and the report shows the number of documents beside each interval.
"""

from __future__ import annotations

import math

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0


def _draws(n: int, resamples: int, seed: int) -> np.ndarray:
    """``resamples`` rows of ``n`` document indices drawn with replacement (row 0 ... from one seeded stream)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(resamples, n))


def _interval(values: np.ndarray, level: float) -> list[float]:
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def _check(nll: list[float], n_bytes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    if len(nll) != len(n_bytes):
        raise ValueError(f"bootstrap: {len(nll)} per-text scores for {len(n_bytes)} byte counts")
    if not nll:
        raise ValueError("bootstrap: no scored text")
    return np.asarray(nll, dtype=np.float64), np.asarray(n_bytes, dtype=np.float64)


def bpb_interval(
    nll: list[float], n_bytes: list[int], resamples: int = RESAMPLES, level: float = LEVEL, seed: int = SEED
) -> list[float]:
    """``[lo, hi]``: the ``level`` percentile interval of bits per byte over document resamples."""
    nll_a, bytes_a = _check(nll, n_bytes)
    idx = _draws(len(nll_a), resamples, seed)
    return _interval(nll_a[idx].sum(axis=1) / (math.log(2) * bytes_a[idx].sum(axis=1)), level)


def paired_difference(
    base_nll: list[float],
    trained_nll: list[float],
    n_bytes: list[int],
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = SEED,
) -> dict:
    """Trained minus base bits per byte on the same documents, with paired intervals.

    Returns ``{diff, diff_ci, rel, rel_ci}``: ``diff`` in bits/byte (negative = the trained model is better),
    ``rel`` relative to the base (``diff / base bpb``; the bytes cancel, so it is ``sum(dNLL) / sum(base NLL)``
    per draw), each with its ``[lo, hi]`` interval from the same draws.
    """
    base_a, bytes_a = _check(base_nll, n_bytes)
    trained_a, _ = _check(trained_nll, n_bytes)
    idx = _draws(len(base_a), resamples, seed)
    base_sum, trained_sum, bytes_sum = base_a[idx].sum(axis=1), trained_a[idx].sum(axis=1), bytes_a[idx].sum(axis=1)
    diff = (trained_sum - base_sum) / (math.log(2) * bytes_sum)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (trained_sum - base_sum) / base_sum
    total_base = float(base_a.sum())
    return {
        "diff": float((trained_a.sum() - total_base) / (math.log(2) * bytes_a.sum())),
        "diff_ci": _interval(diff, level),
        "rel": float((trained_a.sum() - total_base) / total_base) if total_base else None,
        "rel_ci": _interval(rel, level) if total_base else None,
    }
