"""deployments/prefect.yaml and automations.yaml: up to date with their generator, every entrypoint imports,
every deployment's parameters pass its flow's parameter schema, and a bad parameter is rejected naming the
field; the automations are valid Prefect automations."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
# Parameters without a default that a deployment leaves to `prefect deployment run --param`.
RUN_TIME = {"eval-only": {"model_dir": "/models/candidate"}}


def _render_module():
    spec = importlib.util.spec_from_file_location("deployments_render", ROOT / "deployments" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _deployments() -> list[dict]:
    return yaml.safe_load(PREFECT_YAML.read_text())["deployments"]


def _flow(entrypoint: str):
    from prefect.flows import load_flow_from_entrypoint

    return load_flow_from_entrypoint(str(ROOT / entrypoint))


def test_prefect_yaml_is_what_the_generator_writes():
    assert PREFECT_YAML.read_text() == _render_module().render(), "run `python deployments/render.py`"


def test_automations_yaml_is_what_the_generator_writes_and_prefect_accepts_it():
    from prefect.events.schemas.automations import AutomationCore, Posture

    path = ROOT / "deployments" / "automations.yaml"
    assert path.read_text() == _render_module().render_automations(), "run `python deployments/render.py`"
    (crash,) = [AutomationCore.model_validate(a) for a in yaml.safe_load(path.read_text())["automations"]]
    trigger = crash.trigger
    assert trigger.posture == Posture.Proactive and trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed"} <= trigger.expect
    assert trigger.for_each == {"prefect.resource.id"} and trigger.within.total_seconds() == 180
    assert crash.actions[0].type == "change-flow-run-state" and crash.actions[0].state.value == "CRASHED"


def test_every_flow_recipe_and_schedule_is_deployed():
    names = set()
    for dep in _deployments():
        names.add(f"{_flow(dep['entrypoint']).name}/{dep['name']}")
    recipes = {f"knowledge-refresh/{p.stem}" for p in (ROOT / "configs").glob("*.yaml")}
    assert {"demo", "korean_7b", "finance_domain"} <= {n.split("/")[1] for n in recipes}
    assert names == {"knowledge-refresh/weekly", "data-refresh/daily", "train-eval/on-demand",
                     "eval-only/on-demand"} | recipes  # fmt: skip
    crons = {f"{d['entrypoint']}:{d['name']}": [s["cron"] for s in d["schedules"]] for d in _deployments()}
    assert crons["flows/knowledge_refresh.py:knowledge_refresh:weekly"] == ["0 3 * * 1"]
    assert crons["flows/data_refresh.py:data_refresh:daily"] == ["0 2 * * *"]
    for dep in _deployments():
        assert dep["work_pool"]["name"] in ("cptflow-process", "cptflow-gpu") and dep["enforce_parameter_schema"]
        if dep["name"] in ("weekly", "demo", "daily"):
            assert dep["parameters"]["config"] == yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())


@pytest.mark.parametrize("index", range(len(_deployments())), ids=lambda i: _deployments()[i]["name"])
def test_each_deployment_validates_against_its_flow_schema(index):
    from prefect.utilities.schema_tools import validate

    dep = _deployments()[index]
    flow = _flow(dep["entrypoint"])
    parameters = {**dep["parameters"], **RUN_TIME.get(flow.name, {})}
    # What the server checks on `prefect deployment run` (enforce_parameter_schema) ...
    validate(parameters, flow.parameters.model_dump(), raise_on_error=True, ignore_required=False)
    # ... and what the flow itself checks when it starts.
    validated = flow.validate_parameters(parameters)
    assert validated["config"].name == dep["parameters"]["config"]["name"]


def test_a_bad_parameter_is_rejected_naming_the_field():
    from prefect.exceptions import ParameterTypeError
    from prefect.utilities.schema_tools import ValidationError, validate

    dep = next(d for d in _deployments() if d["name"] == "daily")
    flow = _flow(dep["entrypoint"])
    bad = yaml.safe_load(yaml.safe_dump(dep["parameters"]))
    bad["config"]["train"]["lrr"] = 0.1  # a typo
    with pytest.raises(ValidationError, match="lrr"):
        validate(bad, flow.parameters.model_dump(), raise_on_error=True)
    with pytest.raises(ParameterTypeError, match=r"lrr"):
        flow.validate_parameters(bad)
    bad = yaml.safe_load(yaml.safe_dump(dep["parameters"]))
    bad["config"]["curate"]["language"]["min_score"] = "high"
    with pytest.raises(ParameterTypeError, match=r"min_score"):
        flow.validate_parameters(bad)


def test_data_refresh_runs_on_the_snapshot_event():
    from prefect.events import DeploymentEventTrigger
    from prefect.events.schemas.events import Resource

    from flows.events import SNAPSHOT_READY, snapshot_resource_id

    dep = next(d for d in _deployments() if d["name"] == "daily")
    (trigger,) = dep["triggers"]
    parsed = DeploymentEventTrigger.model_validate(trigger)
    assert parsed.expect == {SNAPSHOT_READY} and parsed.enabled
    assert parsed.match.matches(Resource({"prefect.resource.id": snapshot_resource_id("/exports/wiki")}))
    assert not parsed.match.matches(Resource({"prefect.resource.id": "prefect.flow-run.1"}))
    schema = _flow(dep["entrypoint"]).parameters.model_dump()["properties"]
    assert set(trigger["parameters"]) <= set(schema)  # every templated parameter is one the flow takes
