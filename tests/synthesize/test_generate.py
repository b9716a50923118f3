"""The model strategy: WRAP and EntiGraph documents from a local generator model, cached and deterministic."""

from __future__ import annotations

import json

import pytest

from cpt_core.synthesize import generate
from cpt_core.synthesize.generate import GeneratorConfig
from cpt_core.synthesize.stage import PROBE_FILE, SYNTHETIC_FILE, SynthesizeConfig, run_synthesize
from cpt_core.train.base_model import build_tiny_llama
from tests.synthesize.test_synthesize import _corpus, _rows, curated  # noqa: F401 (fixture)

GEN = {"styles": ["wrap_wiki", "wrap_qa", "entigraph"], "max_new_tokens": 12, "temperature": 0.9, "seed": 3,
       "batch_size": 8, "pairs_per_document": 1}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    texts = [d["text"] for d in _corpus()]
    return build_tiny_llama(tmp_path_factory.mktemp("gen") / "model", texts * 3, vocab_size=300, seq_len=256)


@pytest.fixture
def calls(monkeypatch):
    """Prompts the generator model was asked to complete, batch by batch."""
    seen: list[list[str]] = []
    original = generate.HFGenerator.generate

    def counted(self, prompts):
        seen.append(list(prompts))
        return original(self, prompts)

    monkeypatch.setattr(generate.HFGenerator, "generate", counted)
    return seen


def _run(curated, out, model, cache, **gen):  # noqa: F811
    cfg = SynthesizeConfig(strategies=["model"], probe={"fraction": 0.3}, generator={**GEN, **gen})
    return run_synthesize(cfg, curated, out, 0.15, 5, generator_dir=model, cache_dir=cache)


def test_generator_writes_every_style_from_training_text_only(curated, tiny, tmp_path, calls):  # noqa: F811
    s = _run(curated, tmp_path / "syn", tiny, tmp_path / "cache")["summary"]
    rows = _rows(tmp_path / "syn" / SYNTHETIC_FILE)
    assert s["docs_out"] == len(rows) > 0 and s["generator"]["generated"] == s["generator"]["requests"] > 0
    assert {r["metadata"]["form"] for r in rows} == {"wrap_wiki", "wrap_qa", "entigraph"}
    assert all(r["metadata"]["strategy"] == "model" and r["text"] for r in rows)
    prompts = [p for batch in calls for p in batch]
    assert all(len(batch) <= GEN["batch_size"] for batch in calls)
    assert any("Discuss how" in p for p in prompts) and any("Wikipedia" in p for p in prompts)
    held_ids = set(json.loads((tmp_path / "syn" / "synthesis.json").read_text())["heldout_ids"])
    probe = _rows(tmp_path / "syn" / PROBE_FILE)
    assert held_ids and probe  # the model strategy alone still makes the run's probe
    heldout_texts = [d["text"] for d in _corpus() if d["id"] in held_ids]
    for prompt in prompts:
        assert not any(text[:40] in prompt for text in heldout_texts)
        assert not any(item["evidence"] in prompt for item in probe)
    assert not {src for r in rows for src in r["metadata"]["source_docs"]} & held_ids


def test_generated_documents_are_cached_and_deterministic(curated, tiny, tmp_path, calls):  # noqa: F811
    gen = {"styles": ["wrap_qa", "entigraph"], "max_new_tokens": 6}
    first = _run(curated, tmp_path / "a", tiny, tmp_path / "cache", **gen)
    n_calls = len(calls)
    assert n_calls > 0
    rerun = _run(curated, tmp_path / "b", tiny, tmp_path / "cache", **gen)  # another output folder: the stage reruns
    assert not rerun["skipped"] and len(calls) == n_calls, "a rerun must not call the model again"
    assert rerun["summary"]["generator"]["cached"] == rerun["summary"]["generator"]["requests"]
    assert rerun["output_hash"] == first["output_hash"]
    fresh = _run(curated, tmp_path / "c", tiny, tmp_path / "cache2", **gen)  # no cache: same seed, same documents
    assert len(calls) > n_calls and fresh["output_hash"] == first["output_hash"]
    other = _run(curated, tmp_path / "d", tiny, tmp_path / "cache", **{**gen, "seed": 4})  # a new seed misses the cache
    assert other["summary"]["generator"]["cached"] == 0 and other["key"] != first["key"]


def test_model_and_entity_strategies_combine_and_prompts_are_checked(curated, tiny, tmp_path):  # noqa: F811
    cfg = SynthesizeConfig(strategies=["entity", "model"], generator={**GEN, "styles": ["wrap_wiki"]})
    s = run_synthesize(cfg, curated, tmp_path / "syn", 0.15, 5, generator_dir=tiny, cache_dir=tmp_path / "c")
    assert {"wrap_wiki", "pair"} <= set(s["summary"]["docs_by_form"])
    with pytest.raises(ValueError, match="generator model"):
        run_synthesize(cfg, curated, tmp_path / "x", 0.15, 5)
    with pytest.raises(ValueError, match="entity_b"):
        GeneratorConfig(prompts={"entigraph": "{document} and {entity_a}"})
    with pytest.raises(ValueError, match="unknown style"):
        GeneratorConfig(prompts={"poem": "{document}"})
