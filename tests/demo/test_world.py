"""The invented world: unique names, facts spread over relations and answer types, Korean particles."""

from __future__ import annotations

import random

import pytest

from cpt_core.data.knowledge_graph import probe_rows
from cpt_core.demo.world import RELATIONS, Names, ko_fill, make_facts


def test_facts_are_deterministic_in_the_rng_and_use_every_name_once():
    facts = make_facts(40, random.Random(5), Names(random.Random(5)))
    again = make_facts(40, random.Random(5), Names(random.Random(5)))
    assert facts == again
    names = [f.subject for f in facts] + [f.object for f in facts]
    assert len(names) == len(set(names))
    assert {f.relation for f in facts} == set(RELATIONS)
    for f in facts:
        assert RELATIONS[f.relation][1] == f.object_type
        assert f.date.startswith("2026-") and f.subject in f.statement and f.object in f.statement


@pytest.mark.parametrize("n_facts", [5, 9, 17, 60, 150])
def test_probe_rows_have_distractors_for_any_size(n_facts):
    facts = make_facts(n_facts, random.Random(11), Names(random.Random(11)))
    assert len(facts) == n_facts
    rows = probe_rows(facts, n_choices=4, seed=0)
    assert len(rows) == n_facts
    for row, fact in zip(rows, facts, strict=True):
        assert len(set(row["choices"])) == 4 and row["choices"][row["answer"]] == fact.object


def test_korean_particles_follow_the_final_sound():
    assert ko_fill("{s}{eul} {o}{i}", "Ixtenia Labs", "Tagaris Medal", "") == "Ixtenia Labs를 Tagaris Medal이"
    assert ko_fill("{s}{eun} {o}{ro}", "Velmora", "Tarsk", "") == "Velmora는 Tarsk로"
    assert ko_fill("{s}{eun} {o}{ro}", "Stogadon", "Orbel", "") == "Stogadon은 Orbel로"
    assert ko_fill("{s}{eul}", "Zentari X3", "", "") == "Zentari X3을"


# ------------------------------------------------------------------------------------ article quality
