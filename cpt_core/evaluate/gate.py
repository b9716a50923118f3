"""The promotion gate: a pure decision over one run's evaluation and the champion it is judged against.

``decide`` compares the trained model with the ``base`` column of the same evaluation, not with numbers stored
from an earlier run: bits-per-byte and probe accuracy depend on the held-out text and probe they were measured
on, which change every refresh, so only two models measured side by side are comparable. A run that continues
from the champion (``BaseModelConfig.continue_from_champion``) has the champion as its base, so "better than
base" *is* "better than the champion". A run that started from some other checkpoint while a champion exists
measured the wrong baseline; the gate refuses it and says so (this is also how a run whose champion was
replaced while it trained is refused: it started from a stale parent).

Forgetting is bounded twice. Against the parent: general bpb may rise by at most
``max_general_bpb_regression`` in one run. Against the *original* base model (the first model of the
lineage): each run's relative change was measured side by side, so the drift since the original base is the
product of the per-run ratios along the lineage, ``(1 + champion drift) * (1 + this run's change) - 1``, which
holds whatever text each run measured on. Without that second bound, a run may add 2 % to its parent, the next
2 % to that, and so on without end.

Noise. Bits/byte is measured on a sample of held-out documents, so a gain of 1.2 % may be 0.3 % or 2 % on
another sample. When ``results.json`` carries the paired bootstrap interval of a relative change
(``delta.domain_bpb_rel_ci``, ``delta.general_bpb_rel_ci``: the same resampled documents for both models), the
gate judges the *pessimistic end* of that interval: the domain gain must reach ``min_domain_bpb_gain`` at the
interval's upper end (the smallest plausible gain), and the general rise must stay within
``max_general_bpb_regression`` at its upper end (the largest plausible loss). A point gain that clears the
threshold but whose interval reaches below it is refused, with the interval in the reason. Results without
intervals are judged on their point values.

The registry (``cpt_core.evaluate.registry``) supplies the champion and its drift and records the decision
under its file lock; nothing here reads or writes files.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.evaluate.stage import eval_delta

# Comparisons of relative changes tolerate float rounding: a gain of exactly the threshold passes.
EPS = 1e-12


class PromoteConfig(BaseModel):
    """Promote when the domain gain is real and the general loss stays within tolerance."""

    model_config = ConfigDict(extra="forbid")
    min_domain_bpb_gain: float = Field(
        0.01, ge=0.0, le=1.0, description="relative domain bits/byte drop required (0.01 = 1%), in [0, 1]"
    )
    max_general_bpb_regression: float = Field(
        0.02, ge=0.0, le=1.0, description="relative general bits/byte rise allowed vs the parent, in [0, 1]"
    )
    max_general_regression_vs_base: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="relative general bits/byte rise allowed vs the original base model of the lineage, "
        "compounded over every promotion since, in [0, 1]",
    )
    min_probe_gain: float = Field(
        0.0,
        ge=-1.0,
        le=1.0,
        description="fact-probe accuracy gain required, in points of 1.0 (a negative value tolerates a drop)",
    )
    max_probe_forgetting: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="largest accuracy drop, in points of 1.0, allowed on the auto probe of each earlier visible "
        "run (what an earlier refresh taught); null: reported, not gated",
    )
    judge_on: Literal["interval", "point"] = Field(
        "interval",
        description="bits/byte changes judged at the pessimistic end of their paired 95% bootstrap interval "
        "(interval), or on the point values alone (point: for tiny held-out sets where intervals are wide)",
    )


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def bad_number(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def same_model(a: str | None, b: str | None) -> bool:
    """Whether two run ids / model folders name the same model (folders compared resolved)."""
    if a is None or b is None:
        return False
    if a == b:
        return True
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, ValueError):
        return False


def compound(drift: float | None, rel: float | None) -> float | None:
    """The relative change since the original base after one more run: ``(1 + drift)(1 + rel) - 1``."""
    if bad_number(drift) or bad_number(rel):
        return None
    return (1.0 + drift) * (1.0 + rel) - 1.0


def _baseline_reason(champion: dict | None, parent: str | None) -> tuple[bool, str]:
    if champion is None:
        return True, "no champion: the baseline is the base model the run started from"
    if parent is not None and not (parent == champion["run_id"] or same_model(parent, champion.get("model_dir"))):
        return False, (
            f"the run started from {parent}, not from the champion {champion['run_id']}: its base column "
            "measures another model, so it cannot show a gain over the champion (a stale parent when the "
            "champion changed while the run trained; rerun with continue_from_champion)"
        )
    return True, f"baseline: the champion {champion['run_id']}, measured on this run's held-out data (base column)"


def _check(passed: bool) -> str:
    return "ok" if passed else "FAILED"


def _upper(rel: float, interval) -> tuple[float, str]:
    """The interval's upper end (the pessimistic end of a bpb change) and how the reason shows it; the point
    value when there is no interval."""
    if not interval or bad_number(interval[1]):
        return rel, ""
    return max(rel, interval[1]), f", 95% interval [{100 * interval[0]:+.2f}%, {100 * interval[1]:+.2f}%]"


def _general_checks(
    cfg: PromoteConfig, base: dict, trained: dict, rel, drift, interval=None
) -> tuple[bool, list[str]]:
    if bad_number(rel):
        return False, ["general bits/byte missing for base or trained: cannot judge forgetting"]
    worst, shown = _upper(rel, interval)
    passed = worst <= cfg.max_general_bpb_regression + EPS
    beyond = " at the upper end of the interval" if shown else ""
    reasons = [
        f"general bits/byte {base['general_bpb']:.4f} -> {trained['general_bpb']:.4f} ({100 * rel:+.2f}%{shown}); "
        f"a rise of at most {100 * cfg.max_general_bpb_regression:.2f}% vs the parent{beyond} is allowed: "
        f"{_check(passed)}"
    ]
    vs_base = compound(drift, rel)
    if vs_base is None:
        reasons.append(
            "general bits/byte vs the original base model unknown (a lineage entry lacks its general change): "
            "cannot bound forgetting since the original base"
        )
        return False, reasons
    within = vs_base <= cfg.max_general_regression_vs_base + EPS
    reasons.append(
        f"general bits/byte vs the original base model {100 * vs_base:+.2f}% (champion {100 * drift:+.2f}%, "
        f"this run {100 * rel:+.2f}%, compounded); a rise of at most "
        f"{100 * cfg.max_general_regression_vs_base:.2f}% (max_general_regression_vs_base) is allowed: "
        f"{_check(within)}"
    )
    return passed and within, reasons


def decide(
    cfg: PromoteConfig,
    results: dict,
    champion: dict | None,
    parent: str | None = None,
    champion_drift: float | None = 0.0,
) -> Decision:
    """Promote or not, with one reason per check (passed or failed).

    ``results`` is an evaluate stage's ``results.json`` (``base`` and ``trained`` columns). ``champion`` is
    the champion the run is judged against (None when there is none: the run's base is the original base
    model); ``parent`` (the run id or model the run started from), when given, must be that champion.
    ``champion_drift`` is the champion's relative general bpb change since the original base (0 without a
    champion; None when unknown). Checks: domain bpb falls by at least ``min_domain_bpb_gain`` (relative),
    at the upper end of its paired interval when ``results['delta']`` has one; general bpb rises by at most
    ``max_general_bpb_regression`` vs the parent (upper end of its interval likewise) and by at most
    ``max_general_regression_vs_base`` vs the original base; probe accuracy gains at least
    ``min_probe_gain`` points, when a probe ran for both models; the auto probe of each earlier run (what an
    earlier refresh taught) drops by at most ``max_probe_forgetting`` points, when that is set.
    """
    base, trained = results.get("base") or {}, results.get("trained") or {}
    delta = eval_delta(base, trained)
    ok, reason = _baseline_reason(champion, parent)
    reasons = [reason]

    # Judged on the pessimistic end of the paired intervals unless the recipe asks for point values.
    intervals = (results.get("delta") or {}) if cfg.judge_on == "interval" else {}
    rel = delta["domain_bpb_rel"]
    if bad_number(rel):
        ok = False
        reasons.append("domain bits/byte missing for base or trained: cannot judge the domain gain")
    else:
        worst, shown = _upper(rel, intervals.get("domain_bpb_rel_ci"))
        passed = worst <= -cfg.min_domain_bpb_gain + EPS
        ok &= passed
        beyond = " across the whole interval" if shown else ""
        reasons.append(
            f"domain bits/byte {base['domain_bpb']:.4f} -> {trained['domain_bpb']:.4f} ({100 * rel:+.2f}%{shown}); "
            f"needs a drop of at least {100 * cfg.min_domain_bpb_gain:.2f}%{beyond}: {_check(passed)}"
        )

    passed, general = _general_checks(
        cfg,
        base,
        trained,
        delta["general_bpb_rel"],
        0.0 if champion is None else champion_drift,
        intervals.get("general_bpb_rel_ci"),
    )
    ok &= passed
    reasons += general

    gain = delta["probe_acc_points"]
    if gain is None:
        reasons.append("no fact probe ran for both models: probe check not applied")
    else:
        passed = gain >= cfg.min_probe_gain - EPS
        ok &= passed
        reasons.append(
            f"fact-probe accuracy {base['probe_acc']:.3f} -> {trained['probe_acc']:.3f} ({gain:+.3f}); "
            f"needs a gain of at least {cfg.min_probe_gain:+.3f}: {_check(passed)}"
        )
    passed, earlier = _earlier_probe_checks(cfg, base, trained, delta["earlier_probe_points"])
    return Decision(promote=bool(ok and passed), reasons=reasons + earlier)


def _earlier_probe_checks(cfg: PromoteConfig, base: dict, trained: dict, points: dict) -> tuple[bool, list[str]]:
    """Knowledge of earlier refreshes: each earlier run's auto probe may drop by ``max_probe_forgetting``."""
    if not points:
        return True, []
    ok, reasons = True, []
    limit = cfg.max_probe_forgetting
    for run_id, change in sorted(points.items()):
        before, after = base["earlier_probes"][run_id]["acc"], trained["earlier_probes"][run_id]["acc"]
        shown = f"auto probe of earlier run {run_id}: accuracy {before:.3f} -> {after:.3f} ({change:+.3f})"
        if limit is None:
            reasons.append(f"{shown}; not gated (max_probe_forgetting unset)")
            continue
        passed = -change <= limit + EPS
        ok &= passed
        reasons.append(f"{shown}; a drop of at most {limit:.3f} (max_probe_forgetting) is allowed: {_check(passed)}")
    return ok, reasons
