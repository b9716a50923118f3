"""Token-weighted mixing of domain and replay text, with an optional schedule over training.

Sources come in two groups: ``domain`` (the curated domain documents, the knowledge graph's question/answer
documents and the synthesize stage's documents, all repeated as their epochs say) and ``replay`` (general
text, which keeps forgetting down). ``tokenize.mix`` gives their token weights (``{domain: 0.75, replay:
0.25}``; ``tokenize.replay_ratio`` is the shorthand for the replay weight), and ``tokenize.schedule`` changes
them from a fraction of training on (``[{from_fraction: 0.8, weights: {domain: 0.9, replay: 0.1}}]``: the
last 20 % of the tokens lean on the domain, the usual annealing recipe).

Every domain token is trained on once per epoch: the domain tokens fix the total length ``T`` through
``sum_p L_p * T * w_p = D`` (phase ``p`` covers a share ``L_p`` of the tokens with domain weight ``w_p``), and
each phase gets ``L_p * T * (1 - w_p)`` replay tokens. With one phase this is ``replay = D * r / (1 - r)``.

Sampling is deterministic (``seed``): with one phase the domain and replay documents are shuffled together;
with several, the domain documents are shuffled, dealt to the phases in order until each phase's domain
share is met, and each phase is shuffled on its own. Replay documents are taken whole, in pool order
(cycling when the pool is short), skipping one that would overshoot the target by more than it fills: a
replay document is never cut, since a cut followed by a separator would teach a document end that is not
there. The realised tokens per source and per phase are reported, not assumed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

GROUPS = ("domain", "replay")


class MixPhase(BaseModel):
    """From ``from_fraction`` of the training tokens on, mix the sources by ``weights``."""

    model_config = ConfigDict(extra="forbid")
    from_fraction: float = Field(gt=0, lt=1)
    weights: dict[str, float]


def normalise_weights(weights: dict[str, float], where: str) -> dict[str, float]:
    """Weights over ``GROUPS`` summing to 1; unknown or negative weights raise, naming ``where``."""
    unknown = sorted(set(weights) - set(GROUPS))
    if unknown:
        raise ValueError(f"{where}: unknown source(s) {unknown}; expected {', '.join(GROUPS)}")
    if any(w < 0 for w in weights.values()):
        raise ValueError(f"{where}: weights must be >= 0, got {weights}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"{where}: weights sum to 0")
    return {g: weights.get(g, 0.0) / total for g in GROUPS}


@dataclass(frozen=True)
class Phase:
    start: float
    end: float
    weights: dict[str, float]


def build_phases(base: dict[str, float], schedule: list[MixPhase]) -> list[Phase]:
    """The phases of training: ``base`` from 0, then each schedule entry from its ``from_fraction``."""
    starts = [p.from_fraction for p in schedule]
    if starts != sorted(set(starts)):
        raise ValueError(f"tokenize.schedule: from_fraction must increase strictly, got {starts}")
    entries = [(0.0, normalise_weights(base, "tokenize.mix"))]
    entries += [(p.from_fraction, normalise_weights(p.weights, f"tokenize.schedule[{i}].weights"))
                for i, p in enumerate(schedule)]  # fmt: skip
    ends = [start for start, _ in entries[1:]] + [1.0]
    return [Phase(start, end, w) for (start, w), end in zip(entries, ends, strict=True)]


def phase_targets(domain_tokens: int, phases: list[Phase]) -> list[tuple[int, int]]:
    """(domain, replay) token targets of each phase, so every domain token lands in exactly one phase."""
    share = sum((p.end - p.start) * p.weights["domain"] for p in phases)
    if share <= 0:
        raise ValueError("tokenize.mix/schedule: the domain weight is 0 in every phase")
    total = domain_tokens / share
    return [
        (round((p.end - p.start) * total * p.weights["domain"]), round((p.end - p.start) * total * p.weights["replay"]))
        for p in phases
    ]


def pick_replay(costs: list[int], target: int, start: int = 0) -> tuple[list[int], int]:
    """Positions of whole replay documents (cost = tokens incl. control tokens) worth about ``target``
    tokens, from ``start`` in pool order, cycling; and the position to continue from."""
    picked: list[int] = []
    n, used, i, idle = len(costs), 0, start, 0
    if target <= 0 or not n:
        return picked, start
    while used < target and idle < n:
        k = i % n
        i += 1
        cost = costs[k]
        if cost > 0 and (used + cost <= target or used + cost - target < target - used):
            picked.append(k)
            used += cost
            idle = 0
        else:
            idle += 1
    return picked, i % n


def plan_stream(
    core: list[tuple[str, int]],
    core_costs: list[int],
    replay_refs: list[int],
    replay_costs: list[int],
    phases: list[Phase],
    targets: list[tuple[int, int]],
    rng: random.Random,
) -> list[tuple[int, str, int]]:
    """The packing order: ``(phase, source, ref)`` for every document, phase by phase."""
    if len(phases) == 1:
        picked, _ = pick_replay(replay_costs, targets[0][1])
        stream = core + [("replay", replay_refs[k]) for k in picked]
        rng.shuffle(stream)
        return [(0, source, ref) for source, ref in stream]
    order = list(range(len(core)))
    rng.shuffle(order)
    dealt: list[list[tuple[str, int]]] = [[] for _ in phases]
    bounds, acc = [], 0
    for domain, _ in targets:
        acc += domain
        bounds.append(acc)
    pos, phase = 0, 0
    for j in order:
        while phase < len(phases) - 1 and pos + core_costs[j] / 2 >= bounds[phase]:
            phase += 1
        dealt[phase].append(core[j])
        pos += core_costs[j]
    out: list[tuple[int, str, int]] = []
    start = 0
    for p, (_, replay_target) in enumerate(targets):
        picked, start = pick_replay(replay_costs, replay_target, start)
        items = dealt[p] + [("replay", replay_refs[k]) for k in picked]
        rng.shuffle(items)
        out += [(p, source, ref) for source, ref in items]
    return out
