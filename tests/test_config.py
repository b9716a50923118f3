from pathlib import Path

import pytest
import yaml

from cpt_core.config import ConfigError, RunConfig, apply_overrides, load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_validates(recipe):
    cfg = load_config(recipe)
    assert isinstance(cfg, RunConfig)


def test_misspelt_key_names_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "train.lrr" in str(err.value)
    assert "unknown field" in str(err.value)


def test_bad_value_names_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("curate:\n  language:\n    min_score: 3\n")
    with pytest.raises(ConfigError, match=r"curate\.language\.min_score"):
        load_config(path)


def test_not_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_are_typed_and_validated(tmp_path):
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["train.lr=3e-4", "curate.language.languages=[en]"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.curate.language.languages == ["en"]
    with pytest.raises(ConfigError, match="train.nope"):
        load_config(ROOT / "configs" / "demo.yaml", ["train.nope=1"])
    with pytest.raises(ConfigError, match="must look like"):
        apply_overrides({}, ["train.lr"])


def test_run_id_defaults_to_a_timestamp_and_is_kept_when_given():
    assert RunConfig().with_run_id().run_id.startswith("cpt-")
    assert validate_config({"run_id": "r1"}).with_run_id().run_id == "r1"


def test_prefect_yaml_parameters_are_the_recipes():
    prefect_yaml = yaml.safe_load((ROOT / "deployments" / "prefect.yaml").read_text())
    recipes = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "configs").glob("*.yaml"))]
    for deployment in prefect_yaml["deployments"]:
        config = deployment["parameters"]["config"]
        assert config in recipes, f"{deployment['name']}: run `python deployments/render.py`"
        validate_config(config, "prefect.yaml")
