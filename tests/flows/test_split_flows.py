"""data-refresh, then train-eval on its data, then eval-only of the trained model: the deployable flows beside
knowledge-refresh, on the small demo site with the tiny model."""

from __future__ import annotations

import json

import pytest

from cpt_core.layout import RunLayout
from cpt_core.state import read_outcome, visible_runs
from flows.data_refresh import data_refresh
from flows.eval_only import eval_only
from flows.train_eval import train_eval
from tests.flows.conftest import small_config

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


@pytest.fixture(scope="module")
def data_run(tmp_path_factory, tiny_model, prefect_harness):
    root = tmp_path_factory.mktemp("split")
    config = small_config(root, tiny_model, run_id="d1", train={"max_steps": 2})
    return config, data_refresh(config), RunLayout(root.resolve(), "d1")


def test_data_refresh_curates_records_data_only_and_trains_nothing(data_run):
    config, result, layout = data_run
    assert result["outcome"] == "data_only" and result["model"] is None
    assert (layout.curated / "_manifest.json").is_file() and not layout.tokens.exists() and not layout.model.exists()
    assert read_outcome(layout.state, "d1")["outcome"] == "data_only"
    # The next run sees its crawl and dedup state, but the registry holds no model.
    assert visible_runs(layout.state, "later") == ["d1"]
    assert not layout.registry.exists() or json.loads(layout.registry.read_text())["champion"] is None
    report = (layout.report / "run_report.md").read_text()
    assert "**Data only**" in report and "train-eval" in report and "Warning" not in report
    # The curate flow's own report: the per-language funnel, the accepted corpus's profile, the plot beside it.
    curate = (layout.report / "curate.md").read_text()
    assert "| step | language | in | out | dropped | dropped by reason |" in curate and "### By host" in curate
    assert (layout.report / "curate_funnel.png").read_bytes()[:4] == b"\x89PNG"


def test_train_eval_rejects_a_run_without_curated_data_naming_the_parameter(data_run, tmp_path):
    config, _, _ = data_run
    with pytest.raises(ValueError, match="data_run: run 'nope'"):
        train_eval(config.model_copy(update={"run_id": None}), data_run="nope")
    with pytest.raises(ValueError, match="exactly one of the parameters data_run"):
        train_eval(config)
    with pytest.raises(ValueError, match="shards: .* holds no train"):
        train_eval(config.model_copy(update={"run_id": "s0"}), shards=str(tmp_path))


def test_train_eval_continues_the_data_run_then_eval_only_scores_its_model(data_run, tmp_path):
    config, _, layout = data_run
    result = train_eval(config.model_copy(update={"run_id": None}), data_run="d1")
    assert result["run_id"] == "d1" and result["outcome"] in ("promoted", "rejected")
    assert set(result["skipped"]) >= {"crawl", "extract", "curate/near_dedup"}  # reused, not redone
    assert (layout.model / "final" / "model.safetensors").is_file()
    assert read_outcome(layout.state, "d1")["outcome"] == result["outcome"]
    assert "tokenize" in (layout.report / "run_report.md").read_text()

    # eval-only: the trained model against the champion (or the base), on the held-out text given.
    evaluated = eval_only(
        config.model_copy(update={"run_id": "e1"}), model_dir=str(layout.model / "final"),
        heldout=str(layout.tokens / "heldout" / "domain.jsonl"),
    )  # fmt: skip
    e1 = RunLayout(layout.root, "e1")
    assert evaluated["outcome"] == "evaluated" and not (e1.run / "promote").exists()
    results = json.loads((e1.eval / "results.json").read_text())
    trained = json.loads((layout.eval / "results.json").read_text())["trained"]
    assert results["trained"]["domain_bpb"] == pytest.approx(trained["domain_bpb"])
    assert read_outcome(layout.state, "e1") is None  # no promotion unless asked
    with pytest.raises(ValueError, match="model_dir: .* not a saved model"):
        eval_only(config.model_copy(update={"run_id": "e2"}), model_dir=str(tmp_path))

    # train-eval on those shards, as a new run.
    again = train_eval(config.model_copy(update={"run_id": "s1"}), shards=str(layout.tokens))
    s1 = RunLayout(layout.root, "s1")
    assert again["outcome"] in ("promoted", "rejected") and s1.tokens.resolve() == layout.tokens.resolve()
    assert (s1.model / "final" / "model.safetensors").is_file() and (s1.eval / "results.json").is_file()
