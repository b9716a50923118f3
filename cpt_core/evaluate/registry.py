"""The model registry: champion pointer, promotion gate and lineage.

One JSON file, ``<root>/state/registry.json``, outlives the runs::

    {"champion": {run_id, model_dir, metrics, promoted_at} | null,
     "history":  [{run_id, model_dir, parent, parent_run_id, tokens_key, source_urls, shards, config_hash,
                   metrics, base_metrics, delta, promote, reasons, previous_champion, recorded_at}, ...]}

Every write is a read-modify-write under an exclusive ``flock`` on a sidecar lock file, finished by an atomic
rename, so two runs promoting at once cannot lose each other's entry and a crash never leaves half a file.
Recording a run again replaces its entry in place (keeping its first ``recorded_at``): a retried or resumed
promote stage leaves the registry byte-for-byte as one recording would.

**The gate** (``Registry.decide``) compares the trained model with the ``base`` column of the same
evaluation, not with numbers stored from an earlier run: bits-per-byte and probe accuracy depend on the
held-out text and probe they were measured on, which change every refresh, so only two models measured side
by side are comparable. A run that continues from the champion (``BaseModelConfig.continue_from_champion``)
has the champion as its base, so "better than base" *is* "better than the champion". A run that started from
some other checkpoint while a champion exists measured the wrong baseline; the gate refuses it and says so.

Lineage: each entry names its ``parent`` (the run id or model it started from) and what it was trained on
(tokens manifest key, shard folder, fetched source URLs, config hash), so ``Registry.lineage(run_id)`` walks
any checkpoint back through its ancestors to the first base model.
"""

from __future__ import annotations

import fcntl
import json
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from cpt_core.evaluate.stage import eval_delta, load_results
from cpt_core.io import atomic_write_json
from cpt_core.stage import config_hash, run_stage

# Comparisons of relative changes tolerate float rounding: a gain of exactly the threshold passes.
EPS = 1e-12
METRICS = ("domain_bpb", "general_bpb", "probe_acc")


class PromoteConfig(BaseModel):
    """Promote when the domain gain is real and the general loss stays within tolerance."""

    model_config = ConfigDict(extra="forbid")
    min_domain_bpb_gain: float = Field(
        0.01, description="relative domain bits/byte drop required (0.01 = 1%)"
    )
    max_general_bpb_regression: float = Field(0.02, description="relative general bits/byte rise allowed")
    min_probe_gain: float = Field(0.0, description="fact-probe accuracy gain required, in points of 1.0")


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _metrics(column: dict) -> dict:
    return {key: column.get(key) for key in METRICS}


def _bad(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _same_model(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    if a == b:
        return True
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, ValueError):
        return False


class Registry:
    """The champion pointer and run history in one JSON file (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    # ---------------------------------------------------------------------------------------- reading

    def _load(self) -> dict:
        if not self.path.exists():
            return {"champion": None, "history": []}
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"model registry {self.path} is not valid JSON: {err}") from None
        if not isinstance(data, dict) or not isinstance(data.get("history"), list):
            raise ValueError(f"model registry {self.path} lacks a 'history' list")
        data.setdefault("champion", None)
        return data

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def champion(self) -> dict | None:
        """``{run_id, model_dir, metrics, promoted_at}`` of the current champion, or None."""
        return self._load()["champion"]

    def history(self) -> list[dict]:
        return self._load()["history"]

    def entry(self, run_id: str) -> dict | None:
        return next((e for e in self.history() if e["run_id"] == run_id), None)

    def _baseline_champion(self, run_id: str | None) -> dict | None:
        """The champion a run is judged against: the current one, or, if the run itself was already
        promoted (a rerun of the gate), the champion it replaced."""
        data = self._load()
        champion = data["champion"]
        if champion and run_id and champion["run_id"] == run_id:
            entry = next((e for e in data["history"] if e["run_id"] == run_id), {})
            return entry.get("previous_champion")
        return champion

    # ---------------------------------------------------------------------------------------- the gate

    def decide(
        self, cfg: PromoteConfig, results: dict, parent: str | None = None, run_id: str | None = None
    ) -> Decision:
        """Promote or not, with one reason per check (passed or failed).

        ``results`` is an evaluate stage's ``results.json`` (``base`` and ``trained`` columns). The baseline
        is the ``base`` column: when a champion exists the run is expected to have started from it, so that
        column is the champion as measured on this run's held-out text and probe (numbers stored from earlier
        runs were measured on other text and are not comparable). ``parent`` (the run id or model the run
        started from), when given, is checked against the champion: a run that started elsewhere is refused.
        Checks: domain bpb falls by at least ``min_domain_bpb_gain`` (relative); general bpb rises by at most
        ``max_general_bpb_regression`` (relative); probe accuracy gains at least ``min_probe_gain`` points,
        when a probe ran for both models.
        """
        base, trained = results.get("base") or {}, results.get("trained") or {}
        delta = eval_delta(base, trained)
        reasons: list[str] = []
        ok = True

        champion = self._baseline_champion(run_id)
        if champion is None:
            reasons.append("no champion yet: the baseline is the base model the run started from")
        elif parent is not None and not (
            parent == champion["run_id"] or _same_model(parent, champion.get("model_dir"))
        ):
            ok = False
            reasons.append(
                f"the run started from {parent}, not from the champion {champion['run_id']}: its base column "
                "measures another model, so it cannot show a gain over the champion (rerun with "
                "continue_from_champion)"
            )
        else:
            reasons.append(
                f"baseline: the champion {champion['run_id']}, measured on this run's held-out data (base column)"
            )

        rel = delta["domain_bpb_rel"]
        if _bad(rel):
            ok = False
            reasons.append("domain bits/byte missing for base or trained: cannot judge the domain gain")
        else:
            passed = rel <= -cfg.min_domain_bpb_gain + EPS
            ok &= passed
            reasons.append(
                f"domain bits/byte {base['domain_bpb']:.4f} -> {trained['domain_bpb']:.4f} ({100 * rel:+.2f}%); "
                f"needs a drop of at least {100 * cfg.min_domain_bpb_gain:.2f}%: {'ok' if passed else 'FAILED'}"
            )

        rel = delta["general_bpb_rel"]
        if _bad(rel):
            ok = False
            reasons.append("general bits/byte missing for base or trained: cannot judge forgetting")
        else:
            passed = rel <= cfg.max_general_bpb_regression + EPS
            ok &= passed
            reasons.append(
                f"general bits/byte {base['general_bpb']:.4f} -> {trained['general_bpb']:.4f} ({100 * rel:+.2f}%); "
                f"a rise of at most {100 * cfg.max_general_bpb_regression:.2f}% is allowed: "
                f"{'ok' if passed else 'FAILED'}"
            )

        gain = delta["probe_acc_points"]
        if gain is None:
            reasons.append("no fact probe ran for both models: probe check not applied")
        else:
            passed = gain >= cfg.min_probe_gain - EPS
            ok &= passed
            reasons.append(
                f"fact-probe accuracy {base['probe_acc']:.3f} -> {trained['probe_acc']:.3f} ({gain:+.3f}); "
                f"needs a gain of at least {cfg.min_probe_gain:+.3f}: {'ok' if passed else 'FAILED'}"
            )
        return Decision(promote=bool(ok), reasons=reasons)

    # ---------------------------------------------------------------------------------------- writing

    def record(
        self, run_id: str, model_dir: Path | str, results: dict, decision: Decision, lineage: dict
    ) -> dict:
        """Add (or replace) ``run_id``'s history entry; move the champion pointer when it was promoted.

        ``lineage`` needs ``parent`` (the run id or model the run started from) and may hold
        ``parent_run_id``, ``base_source``, ``tokens_key``, ``shards``, ``source_urls`` and ``config_hash``
        or the whole ``config`` (stored as its hash). Returns the entry.
        """
        if "parent" not in lineage:
            raise ValueError(f"lineage of run {run_id} lacks 'parent' (the model it started from)")
        with self._locked():
            data = self._load()
            history = data["history"]
            index = next((i for i, e in enumerate(history) if e["run_id"] == run_id), None)
            previous = history[index] if index is not None else None
            parent = lineage["parent"]
            parent_run_id = lineage.get("parent_run_id") or next(
                (
                    e["run_id"]
                    for e in history
                    if e["run_id"] != run_id
                    and (e["run_id"] == parent or _same_model(parent, e["model_dir"]))
                ),
                None,
            )
            chash = lineage.get("config_hash") or (
                config_hash(lineage["config"]) if "config" in lineage else None
            )
            base, trained = results.get("base") or {}, results.get("trained") or {}
            entry = {
                "run_id": run_id,
                "model_dir": str(model_dir),
                "parent": parent,
                "parent_run_id": parent_run_id,
                "base_source": lineage.get("base_source"),
                "tokens_key": lineage.get("tokens_key"),
                "shards": lineage.get("shards"),
                "source_urls": lineage.get("source_urls"),
                "config_hash": chash,
                "metrics": _metrics(trained),
                "base_metrics": _metrics(base),
                "delta": eval_delta(base, trained),
                "promote": decision.promote,
                "reasons": list(decision.reasons),
                # The champion this run was judged against: kept from the first recording, so a rerun
                # compares with the same model and a re-recorded rejection can restore it.
                "previous_champion": previous["previous_champion"] if previous else data["champion"],
                "recorded_at": previous["recorded_at"] if previous else _now(),
            }
            if index is None:
                history.append(entry)
            else:
                history[index] = entry
            champion = data["champion"]
            if decision.promote:
                if not (champion and champion["run_id"] == run_id):
                    data["champion"] = {
                        "run_id": run_id,
                        "model_dir": str(model_dir),
                        "metrics": entry["metrics"],
                        "promoted_at": _now(),
                    }
                else:
                    data["champion"] = {**champion, "model_dir": str(model_dir), "metrics": entry["metrics"]}
            elif champion and champion["run_id"] == run_id:
                data["champion"] = entry["previous_champion"]
            atomic_write_json(self.path, data)
        return entry

    def lineage(self, run_id: str) -> list[dict]:
        """``run_id``'s entry, its parent run's, ... and last ``{run_id: None, model: <first base>,
        base_model: True}``."""
        entries = {e["run_id"]: e for e in self.history()}
        if run_id not in entries:
            raise KeyError(f"run {run_id!r} is not in the model registry {self.path}")
        chain: list[dict] = []
        current = entries[run_id]
        while True:
            chain.append(current)
            parent_run = current.get("parent_run_id")
            if parent_run is None:
                chain.append({"run_id": None, "model": current["parent"], "base_model": True})
                return chain
            if parent_run in {c["run_id"] for c in chain}:
                raise ValueError(f"model registry {self.path}: lineage of {run_id} loops at {parent_run}")
            if parent_run not in entries:
                chain.append({"run_id": parent_run, "model": current["parent"], "missing": True})
                return chain
            current = entries[parent_run]


def run_promote(
    cfg: PromoteConfig,
    registry_path: Path,
    run_id: str,
    model_dir: Path,
    results_path: Path,
    lineage: dict,
    output: Path,
) -> dict:
    """The promote stage: gate the run, record it in the registry, write ``decision.json``.

    Returns the stage manifest; its ``summary`` has ``promote`` and ``reasons``. Recording is idempotent, so
    a retried stage cannot duplicate history; a skipped stage whose registry entry has gone missing (a
    registry restored from backup) is recorded again from its ``decision.json``.
    """
    registry = Registry(registry_path)

    def work(partial: Path) -> dict:
        results = load_results(results_path)
        decision = registry.decide(cfg, results, parent=lineage.get("parent"), run_id=run_id)
        entry = registry.record(run_id, model_dir, results, decision, lineage)
        champion = registry.champion()
        atomic_write_json(
            partial / "decision.json",
            {
                "run_id": run_id,
                "model_dir": str(model_dir),
                **decision.to_dict(),
                "metrics": entry["metrics"],
                "base_metrics": entry["base_metrics"],
                "delta": entry["delta"],
                "champion": champion,
            },
        )
        verdict = "promoted to champion" if decision.promote else "not promoted"
        failed = [r for r in decision.reasons if "FAILED" in r or "cannot" in r]
        return {
            "promote": decision.promote,
            "reasons": decision.reasons,
            "champion": champion["run_id"] if champion else None,
            "log_line": f"run {run_id} {verdict}" + (f": {failed[0]}" if failed else ""),
        }

    manifest = run_stage(
        "promote",
        output,
        cfg,
        [Path(results_path)],
        work,
        extra_key={"run_id": run_id, "model_dir": str(model_dir), "lineage": lineage},
        code="cpt_core.evaluate",
    )
    if manifest.get("skipped") and registry.entry(run_id) is None:
        saved = json.loads((Path(output) / "decision.json").read_text())
        decision = Decision(promote=saved["promote"], reasons=saved["reasons"])
        registry.record(run_id, model_dir, load_results(results_path), decision, lineage)
    return manifest
