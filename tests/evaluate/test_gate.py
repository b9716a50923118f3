"""The promotion gate: a pure decision, each check with its reason, validated thresholds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cpt_core.evaluate.gate import PromoteConfig, compound, decide

CFG = PromoteConfig(min_domain_bpb_gain=0.01, max_general_bpb_regression=0.02, min_probe_gain=0.0)


def results(domain=(2.0, 1.8), general=(1.0, 1.01), probe=(0.25, 0.5)) -> dict:
    base = {"domain_bpb": domain[0], "general_bpb": general[0], "probe_acc": probe[0] if probe else None}
    trained = {"domain_bpb": domain[1], "general_bpb": general[1], "probe_acc": probe[1] if probe else None}
    return {"base": base, "trained": trained}


def test_promotes_when_every_check_passes():
    d = decide(CFG, results(), None)
    assert d.promote
    assert any("no champion" in r for r in d.reasons)
    # domain, general vs parent, general vs original base, probe
    assert sum(r.endswith(": ok") for r in d.reasons) == 4


@pytest.mark.parametrize(
    ("res", "failing"),
    [
        (results(domain=(2.0, 1.99)), "domain bits/byte"),  # -0.5%: not enough gain
        (results(domain=(2.0, 2.1)), "domain bits/byte"),  # got worse
        (results(general=(1.0, 1.03)), "general bits/byte 1.0000"),  # +3% forgetting vs the parent
        (results(probe=(0.5, 0.25)), "fact-probe accuracy"),  # probe fell
    ],
)
def test_rejects_for_each_failed_check(res, failing):
    d = decide(CFG, res, None)
    assert not d.promote
    failed = [r for r in d.reasons if "FAILED" in r]
    assert len(failed) == 1 and failed[0].startswith(failing)


def test_thresholds_are_inclusive_and_probe_optional():
    # Exactly 1% domain gain and exactly 2% general regression pass; no probe -> the probe check is skipped.
    d = decide(CFG, results(domain=(2.0, 1.98), general=(1.0, 1.02), probe=None), None)
    assert d.promote, d.reasons
    assert any("probe check not applied" in r for r in d.reasons)
    strict = PromoteConfig(min_probe_gain=0.1)
    assert not decide(strict, results(probe=(0.5, 0.55)), None).promote
    assert decide(strict, results(probe=(0.5, 0.6)), None).promote


def test_rejects_missing_metrics():
    bad = results()
    bad["trained"]["general_bpb"] = None
    d = decide(CFG, bad, None)
    assert not d.promote
    assert any("general bits/byte missing" in r for r in d.reasons)


def test_general_regression_is_bounded_against_the_original_base():
    cfg = PromoteConfig(max_general_regression_vs_base=0.04)
    champion = {"run_id": "r2", "model_dir": "/m/r2"}
    # The champion is already 3% worse than the original base; this run adds 1.5%: 1.03 * 1.015 = +4.54% in all.
    d = decide(cfg, results(general=(1.03, 1.03 * 1.015)), champion, parent="r2", champion_drift=0.03)
    assert not d.promote
    failed = [r for r in d.reasons if "FAILED" in r]
    assert len(failed) == 1 and "max_general_regression_vs_base" in failed[0]
    assert "original base" in failed[0] and "+4.54%" in failed[0]
    # The same run on a champion with no drift passes.
    assert decide(cfg, results(general=(1.03, 1.03 * 1.015)), champion, parent="r2", champion_drift=0.0).promote
    # Unknown drift (a lineage entry without its general change) cannot be bounded: rejected.
    d = decide(cfg, results(), champion, parent="r2", champion_drift=None)
    assert not d.promote and any("cannot bound forgetting since the original base" in r for r in d.reasons)
    assert compound(0.1, 0.1) == pytest.approx(0.21) and compound(None, 0.1) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_domain_bpb_gain", -0.01),
        ("max_general_bpb_regression", -0.02),
        ("max_general_regression_vs_base", 1.5),
        ("max_general_regression_vs_base", -0.1),
        ("min_probe_gain", 2.0),
    ],
)
def test_thresholds_are_validated_naming_the_field(field, value):
    with pytest.raises(ValidationError) as err:
        PromoteConfig(**{field: value})
    assert field in str(err.value)


def test_bad_threshold_in_a_recipe_names_file_and_field(tmp_path):
    from cpt_core.config import ConfigError, load_config

    recipe = tmp_path / "bad.yaml"
    recipe.write_text("promote:\n  max_general_bpb_regression: -0.5\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe, [])
    assert str(recipe) in str(err.value) and "promote.max_general_bpb_regression" in str(err.value)


def with_intervals(res: dict, domain_ci=None, general_ci=None) -> dict:
    res["delta"] = {"domain_bpb_rel_ci": domain_ci, "general_bpb_rel_ci": general_ci}
    return res


def test_a_point_gain_whose_interval_reaches_below_the_threshold_is_refused():
    # -10% domain on the point value clears the old point rule, but the interval reaches -0.5%: refused.
    res = results()
    assert decide(CFG, res, None).promote
    d = decide(CFG, with_intervals(res, domain_ci=[-0.2, -0.005], general_ci=[0.0, 0.015]), None)
    assert not d.promote
    failed = [r for r in d.reasons if "FAILED" in r]
    assert len(failed) == 1 and failed[0].startswith("domain bits/byte")
    assert "95% interval [-20.00%, -0.50%]" in failed[0] and "across the whole interval" in failed[0]
    # The same point gain with an interval entirely past the threshold passes.
    d = decide(CFG, with_intervals(results(), domain_ci=[-0.2, -0.02], general_ci=[0.0, 0.015]), None)
    assert d.promote, d.reasons
    # A recipe that asks for point values (tiny held-out sets) is judged on them alone.
    point = CFG.model_copy(update={"judge_on": "point"})
    d = decide(point, with_intervals(results(), domain_ci=[-0.2, -0.005], general_ci=[0.0, 0.015]), None)
    assert d.promote and not any("interval" in r for r in d.reasons), d.reasons


def test_a_general_rise_within_tolerance_whose_interval_exceeds_it_is_refused():
    # +1% general on the point value is within the 2% tolerance; the interval's upper end (+2.5%) is not.
    res = with_intervals(results(), domain_ci=[-0.2, -0.05], general_ci=[-0.005, 0.025])
    d = decide(CFG, res, None)
    assert not d.promote
    failed = [r for r in d.reasons if "FAILED" in r]
    assert len(failed) == 1 and failed[0].startswith("general bits/byte 1.0000")
    assert "+2.50%" in failed[0] and "upper end of the interval" in failed[0]
    # The bound vs the original base still uses the compounded point change, and still applies.
    champion = {"run_id": "r2", "model_dir": "/m/r2"}
    res = with_intervals(results(general=(1.0, 1.01)), domain_ci=[-0.2, -0.05], general_ci=[0.0, 0.015])
    d = decide(PromoteConfig(max_general_regression_vs_base=0.04), res, champion, parent="r2", champion_drift=0.035)
    assert not d.promote and any("max_general_regression_vs_base" in r and "FAILED" in r for r in d.reasons)


def test_missing_intervals_fall_back_to_point_values():
    d = decide(CFG, with_intervals(results(), domain_ci=None, general_ci=[float("nan"), float("nan")]), None)
    assert d.promote, d.reasons
    assert not any("interval" in r for r in d.reasons)


def _with_earlier(res: dict, before: float, after: float, run_id: str = "r0") -> dict:
    res["base"]["earlier_probes"] = {run_id: {"acc": before, "n": 40}}
    res["trained"]["earlier_probes"] = {run_id: {"acc": after, "n": 40}}
    return res


def test_forgetting_an_earlier_refresh_blocks_promotion_when_bounded():
    forgot = _with_earlier(results(), 0.6, 0.4)
    unbounded = decide(CFG, forgot, None)
    assert unbounded.promote  # reported, not gated by default
    assert any("auto probe of earlier run r0: accuracy 0.600 -> 0.400" in r and "not gated" in r
               for r in unbounded.reasons)
    bounded = PromoteConfig(max_probe_forgetting=0.05)
    d = decide(bounded, forgot, None)
    failed = [r for r in d.reasons if "FAILED" in r]
    assert not d.promote and len(failed) == 1 and "earlier run r0" in failed[0] and "max_probe_forgetting" in failed[0]
    assert decide(bounded, _with_earlier(results(), 0.6, 0.55), None).promote  # exactly the bound: allowed
    assert decide(bounded, _with_earlier(results(), 0.6, 0.7), None).promote
    with pytest.raises(ValidationError, match="max_probe_forgetting"):
        PromoteConfig(max_probe_forgetting=-0.1)
