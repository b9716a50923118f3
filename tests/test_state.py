"""Which runs' state another run may see: finished runs whose data was learned, pinned when a run starts."""

import json

import pytest

from cpt_core.state import finished_runs, read_outcome, record_outcome, visible_runs


def test_only_promoted_and_nothing_new_runs_are_visible(tmp_path):
    state = tmp_path / "state"
    record_outcome(state, "w1", "promoted")
    record_outcome(state, "w2", "rejected")
    record_outcome(state, "w3", "nothing_new")
    # w4 failed: no record at all
    assert [r["run_id"] for r in finished_runs(state)] == ["w1", "w2", "w3"]
    assert visible_runs(state, "w5") == ["w1", "w3"]
    assert read_outcome(state, "w2")["outcome"] == "rejected" and read_outcome(state, "w4") is None


def test_view_is_pinned_when_the_run_starts(tmp_path):
    state = tmp_path / "state"
    record_outcome(state, "w1", "promoted")
    assert visible_runs(state, "w2") == ["w1"]
    pin = tmp_path / "runs" / "w2" / "state_view.json"
    assert json.loads(pin.read_text())["visible_runs"] == ["w1"]
    record_outcome(state, "w3", "promoted")  # finishes while w2 is being retried
    assert visible_runs(state, "w2") == ["w1"], "a retry sees what its first attempt saw"
    assert visible_runs(state, "w4") == ["w1", "w3"]
    assert "w2" not in visible_runs(state, "w2")


def test_bad_records_are_clear_errors(tmp_path):
    state = tmp_path / "state"
    with pytest.raises(ValueError, match="unknown run outcome 'done'"):
        record_outcome(state, "w1", "done")
    (state / "finished").mkdir(parents=True)
    (state / "finished" / "w1.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"w1\.json is not valid JSON.*delete it"):
        finished_runs(state)
    (state / "finished" / "w1.json").write_text(json.dumps({"outcome": "maybe"}))
    with pytest.raises(ValueError, match="no valid 'outcome'"):
        visible_runs(state, "w2")
    pin = tmp_path / "runs" / "w3" / "state_view.json"
    pin.parent.mkdir(parents=True)
    pin.write_text("[]")
    with pytest.raises(ValueError, match="state_view.json is unreadable"):
        visible_runs(state, "w3")
