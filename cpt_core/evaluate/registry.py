"""The model registry: champion pointer, run history and lineage, in one JSON file.

``<root>/state/registry.json`` outlives the runs::

    {"champion": {run_id, model_dir, metrics, promoted_at} | null,
     "history":  [{run_id, model_dir, parent, parent_run_id, tokens_key, source_urls, shards, config_hash,
                   metrics, base_metrics, delta, general_bpb_rel_to_base, promote, reasons,
                   previous_champion, recorded_at}, ...],
     "resets":   [{at, from, to}, ...]}

Every write is a read-modify-write under an exclusive ``flock`` on a sidecar lock file, finished by an atomic
rename, so two runs promoting at once cannot lose each other's entry and a crash never leaves half a file.
``Registry.promote_if`` reads the champion, asks the gate (``cpt_core.evaluate.gate.decide``) and records the
answer under that one lock: of two candidates trained from the same champion, the second is judged against the
first's promoted result, and refused because it started from a stale parent; never are both promoted. Recording a run again replaces its entry in place (keeping its first
``recorded_at``): a retried or resumed promote stage leaves the registry byte-for-byte as one recording would.

Lineage: each entry names its ``parent`` (the run id or model it started from) and what it was trained on
(tokens manifest key, shard folder, fetched source URLs, config hash), so ``Registry.lineage(run_id)`` walks
any checkpoint back through its ancestors to the first base model; ``general_bpb_rel_to_base`` is the general
bits/byte change since that first base model, compounded along the lineage.
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from cpt_core.evaluate.gate import Decision, PromoteConfig, compound, decide, same_model
from cpt_core.evaluate.stage import eval_delta, load_results
from cpt_core.faults import fault_point
from cpt_core.io import atomic_write_json
from cpt_core.layout import run_relative_path
from cpt_core.stage import config_hash, run_stage

METRICS = ("domain_bpb", "general_bpb", "probe_acc")


class ChampionMissingError(FileNotFoundError):
    """The champion pointer names a model folder that no longer exists."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _metrics(column: dict) -> dict:
    return {key: column.get(key) for key in METRICS}


def _find(data: dict, run_id: str) -> dict | None:
    return next((e for e in data["history"] if e["run_id"] == run_id), None)


def _baseline(data: dict, run_id: str | None) -> dict | None:
    """The champion a run is judged against: the current one, or, if the run itself was already promoted (a
    rerun of the gate), the champion it replaced."""
    champion = data["champion"]
    if champion and run_id and champion["run_id"] == run_id:
        return (_find(data, run_id) or {}).get("previous_champion")
    return champion


def _drift(data: dict, run_id: str) -> float | None:
    """``run_id``'s relative general bpb change since the original base model; None when unknown."""
    entry, seen = _find(data, run_id), set()
    chain = []
    while entry is not None and "general_bpb_rel_to_base" not in entry:
        if entry["run_id"] in seen:
            return None
        seen.add(entry["run_id"])
        chain.append(entry)
        parent_run = entry.get("parent_run_id")
        if parent_run is None:
            entry = {"general_bpb_rel_to_base": 0.0}  # started from the original base model
        else:
            entry = _find(data, parent_run)
    if entry is None:
        return None
    drift = entry["general_bpb_rel_to_base"]
    for link in reversed(chain):
        drift = compound(drift, (link.get("delta") or {}).get("general_bpb_rel"))
    return drift


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

    def champion_model(self) -> dict | None:
        """The champion, checked to still have its model folder; None when there is no champion.

        Raises ``ChampionMissingError`` naming the champion, its folder and the repair commands otherwise:
        silently starting from the base model instead would fork the lineage.
        """
        champion = self.champion()
        if champion is None or Path(champion["model_dir"]).exists():
            return champion
        root = self.path.parent.parent
        moved = run_relative_path(champion["model_dir"], champion["run_id"])
        if moved is not None and (root / moved).exists():  # the root was moved, or is a mirror of a URL root
            return {**champion, "model_dir": str(root / moved)}
        raise ChampionMissingError(
            f"the champion {champion['run_id']} in the model registry {self.path} points to the model folder "
            f"{champion['model_dir']}, which no longer exists. Repair the pointer: "
            f"`cptflow registry ls --root {root}` lists the runs, then "
            f"`cptflow registry reset-champion --root {root} --to <promoted run>` picks one whose folder exists, "
            f"or `cptflow registry reset-champion --root {root} --base` starts again from the base model"
        )

    def history(self) -> list[dict]:
        return self._load()["history"]

    def entry(self, run_id: str) -> dict | None:
        return _find(self._load(), run_id)

    def baseline(self, run_id: str | None = None) -> tuple[dict | None, float | None]:
        """What the gate judges ``run_id`` against: the champion (or, for a rerun of a promoted run's gate, the
        champion it replaced) and that champion's general bpb drift since the original base."""
        data = self._load()
        champion = _baseline(data, run_id)
        return champion, (_drift(data, champion["run_id"]) if champion else 0.0)

    def general_drift(self, run_id: str) -> float | None:
        """``run_id``'s relative general bits/byte change since the original base model of its lineage."""
        return _drift(self._load(), run_id)

    # ---------------------------------------------------------------------------------------- writing

    def promote_if(
        self, run_id: str, model_dir: Path | str, results: dict, cfg: PromoteConfig, lineage: dict
    ) -> tuple[Decision, dict, dict | None]:
        """Decide and record under one lock: re-read the champion, gate the run against it, record.

        Returns ``(decision, entry, champion after recording)``. ``lineage`` as for ``record``.
        """
        self._check_lineage(run_id, lineage)
        with self._locked():
            data = self._load()
            champion = _baseline(data, run_id)
            drift = _drift(data, champion["run_id"]) if champion else 0.0
            decision = decide(cfg, results, champion, parent=lineage.get("parent"), champion_drift=drift)
            entry = self._apply(data, run_id, model_dir, results, decision, lineage)
            atomic_write_json(self.path, data)
        return decision, entry, data["champion"]

    def record(
        self, run_id: str, model_dir: Path | str, results: dict, decision: Decision, lineage: dict
    ) -> dict:
        """Add (or replace) ``run_id``'s history entry; move the champion pointer when it was promoted.

        ``lineage`` needs ``parent`` (the run id or model the run started from) and may hold
        ``parent_run_id``, ``base_source``, ``tokens_key``, ``shards``, ``source_urls`` and ``config_hash``
        or the whole ``config`` (stored as its hash). Returns the entry.
        """
        self._check_lineage(run_id, lineage)
        with self._locked():
            data = self._load()
            entry = self._apply(data, run_id, model_dir, results, decision, lineage)
            atomic_write_json(self.path, data)
        return entry

    @staticmethod
    def _check_lineage(run_id: str, lineage: dict) -> None:
        if "parent" not in lineage:
            raise ValueError(f"lineage of run {run_id} lacks 'parent' (the model it started from)")

    def _apply(
        self, data: dict, run_id: str, model_dir: Path | str, results: dict, decision: Decision, lineage: dict
    ) -> dict:
        """Write ``run_id``'s entry and the champion pointer into ``data`` (in memory)."""
        history = data["history"]
        index = next((i for i, e in enumerate(history) if e["run_id"] == run_id), None)
        previous = history[index] if index is not None else None
        parent = lineage["parent"]
        parent_run_id = lineage.get("parent_run_id") or next(
            (
                e["run_id"]
                for e in history
                if e["run_id"] != run_id and (e["run_id"] == parent or same_model(parent, e["model_dir"]))
            ),
            None,
        )
        chash = lineage.get("config_hash") or (config_hash(lineage["config"]) if "config" in lineage else None)
        base, trained = results.get("base") or {}, results.get("trained") or {}
        intervals = {k: v for k, v in (results.get("delta") or {}).items() if k.endswith("_ci")}
        delta = {**eval_delta(base, trained), **intervals}
        parent_drift = 0.0 if parent_run_id is None else _drift(data, parent_run_id)
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
            "delta": delta,
            "general_bpb_rel_to_base": compound(parent_drift, delta["general_bpb_rel"]),
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
        return entry

    def reset_champion(self, to: str | None) -> dict | None:
        """Point the champion at the promoted run ``to`` (whose model folder must exist), or, with None, back
        at the base model (no champion: the next run starts from the configured base). Returns the champion."""
        with self._locked():
            data = self._load()
            old = data["champion"]["run_id"] if data["champion"] else None
            champion = None
            if to is not None:
                entry = _find(data, to)
                if entry is None:
                    raise KeyError(f"run {to!r} is not in the model registry {self.path}")
                if not entry["promote"]:
                    raise ValueError(f"run {to} was not promoted by the gate; only a promoted run can be champion")
                if not Path(entry["model_dir"]).exists():
                    raise ChampionMissingError(f"run {to}'s model folder {entry['model_dir']} does not exist")
                champion = {
                    "run_id": to,
                    "model_dir": entry["model_dir"],
                    "metrics": entry["metrics"],
                    "promoted_at": _now(),
                }
            data["champion"] = champion
            data.setdefault("resets", []).append({"at": _now(), "from": old, "to": to})
            atomic_write_json(self.path, data)
        return champion

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
    """The promote stage: gate the run and record it in the registry (one lock), write ``decision.json``.

    Returns the stage manifest; its ``summary`` has ``promote`` and ``reasons``. Recording is idempotent, so
    a retried stage cannot duplicate history; a skipped stage whose registry entry has gone missing (a
    registry restored from backup) is recorded again from its ``decision.json``.
    """
    registry = Registry(registry_path)

    def work(partial: Path) -> dict:
        results = load_results(results_path)
        decision, entry, champion = registry.promote_if(run_id, model_dir, results, cfg, lineage)
        fault_point("promote:recorded")
        atomic_write_json(
            partial / "decision.json",
            {
                "run_id": run_id,
                "model_dir": str(model_dir),
                **decision.to_dict(),
                "metrics": entry["metrics"],
                "base_metrics": entry["base_metrics"],
                "delta": {**(results.get("delta") or {}), **entry["delta"]},
                "general_bpb_rel_to_base": entry["general_bpb_rel_to_base"],
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
