"""Knowledge uptake without a knowledge graph: which synthesis strategy teaches the demo's facts best.

    .venv/bin/python benchmarks/knowledge_uptake.py                  # every arm, the demo recipe's settings
    .venv/bin/python benchmarks/knowledge_uptake.py --quick          # fewer steps per arm, a smaller generator run
    .venv/bin/python benchmarks/knowledge_uptake.py --arms articles,entity --run-id uptake-1   # a subset / resume
    .venv/bin/python benchmarks/knowledge_uptake.py --arms entity --run-id uptake-1 --variant q3 \
        --set synthesize.questions_per_relation=3          # a recipe variant, in its own arm folders

The demo (configs/demo.yaml) runs with its knowledge graph hidden from the pipeline (demo source
``knowledge_graph: false``): the pipeline sees only the crawled pages. The crawl, extraction and curation run
once and are shared; then each arm runs synthesize -> tokenize -> train -> evaluate through the stage
functions, on the same curated documents and the same held-out split:

    articles   the curated articles only (no synthesis)
    entity     + entity-centric templated restatements (synthesize.strategies [entity])
    model      + model-based rephrasing by the local generator (synthesize.strategies [model])
    both       + both (synthesize.strategies [entity, model])
    graph      the hand-made graph given to the pipeline (its QA lines), as the upper reference

The evaluator alone holds the graph: every arm, and the base model once, is scored on the graph's fact probe
(an outside check) and on one auto-made probe (the probe the synthesize stage builds from held-out relations
of the entity arm: the same items for every arm). Also domain and general bits/byte, and the tokens trained.

The last line holds key=value figures: base=, articles_only=, best_auto=, graph= (accuracies on the graph's
probe, as fractions), best_arm=, general_bpb_change= (of the best arm without the graph, relative) and
wall_s=. Stages are resumable: rerunning with the same ``--run-id`` skips finished work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARMS = {  # arm: (synthesize strategies, the graph given to tokenize)
    "articles": ([], False),
    "entity": (["entity"], False),
    "model": (["model"], False),
    "both": (["entity", "model"], False),
    "graph": ([], True),
}
LABELS = {
    "articles": "articles only",
    "entity": "+ entity restatements",
    "model": "+ model rephrasing",
    "both": "+ entity + model",
    "graph": "hand-made graph (reference)",
}
QUICK_STEPS = 30
QUICK_EVAL_CHARS = 6000  # of held-out domain and general text each


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    parser.add_argument(
        "--root",
        type=Path,
        default=ROOT / "uptake-data",
        help="data root (default: uptake-data/, its own: on the demo's root an earlier crawl leaves nothing new)",
    )
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_STEPS} training steps per arm; generator: wrap_qa only, 128 new tokens; "
        f"bits/byte on {QUICK_EVAL_CHARS} characters",
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="training steps per arm (overrides --quick)"
    )
    parser.add_argument("--run-id", default=None, help="reuse a run id to resume it")
    parser.add_argument("--variant", default=None, help="name of a --set variant: its arms get their own folders")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="config override applied to every arm (e.g. synthesize.budget_multiple=3)",
    )
    args = parser.parse_args()
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        parser.error(f"--arms: unknown arm(s) {', '.join(unknown)}; arms are {', '.join(ARMS)}")
    return args


def hidden_graph_config(args: argparse.Namespace):
    """The demo recipe with its graph hidden from the pipeline, and the benchmark's overrides."""
    import yaml

    from cpt_core.config import apply_overrides, validate_config

    recipe = yaml.safe_load(args.config.read_text())
    data = apply_overrides(recipe, args.set)
    for source in data["ingest"]["sources"]:
        if source.get("kind") == "demo":
            source["knowledge_graph"] = False
    data["root"] = str(args.root.resolve())
    data["run_id"] = args.run_id or time.strftime("uptake-%Y%m%d-%H%M%S")
    if args.quick:
        gen = data.setdefault("synthesize", {}).setdefault("generator", {})
        gen.update({"styles": ["wrap_qa"], "max_new_tokens": 128})
        ev = data.setdefault("evaluate", {})
        ev["domain_max_chars"] = min(ev.get("domain_max_chars", 15000), QUICK_EVAL_CHARS)
        ev.setdefault("general_heldout", {})["max_chars"] = QUICK_EVAL_CHARS
    train = data.setdefault("train", {})
    train["timeout_s"] = max(train.get("timeout_s", 0), 4 * 3600)  # an arm on busy shared cores runs long
    steps = args.max_steps or (QUICK_STEPS if args.quick else None)
    if steps:
        data.setdefault("train", {})["max_steps"] = steps
    config = validate_config(data, str(args.config))
    if config.ingest.demo is None:
        sys.exit(f"{args.config}: the benchmark needs a demo source (ingest.sources kind: demo)")
    probe_cfg = validate_config(yaml.safe_load(args.config.read_text()), str(args.config)).synthesize
    return config, probe_cfg


def shared_stages(config, layout) -> Path:
    """Crawl, extract and curate once (the flows); returns the demo graph's file, which only evaluate reads."""
    from flows.curate import curate_flow
    from flows.ingest import demo_sources, ingest_flow

    with demo_sources(config, layout) as served:
        if served.knowledge_graph is not None:
            raise RuntimeError("the demo graph leaked into the pipeline's config")
        ingest_flow(served, layout)
    curate_flow(config, layout)
    return layout.sources / "knowledge_graph.jsonl"


def run_arm(name: str, config, layout, model_dir: Path, graph: Path, variant: str | None) -> dict:
    """synthesize -> tokenize -> train for one arm; returns its folder and stage summaries."""
    from cpt_core.data.tokenize import run_tokenize
    from cpt_core.synthesize.stage import run_synthesize
    from cpt_core.train.launch import run_train

    strategies, with_graph = ARMS[name]
    arm = layout.run / "arms" / (f"{name}@{variant}" if variant else name)
    cfg = config.synthesize.model_copy(update={"strategies": strategies})
    t0 = time.monotonic()
    synth = run_synthesize(
        cfg,
        layout.curated,
        arm / "synthesize",
        config.tokenize.heldout_fraction,
        config.tokenize.heldout_max_docs,
        has_knowledge_graph=with_graph,
        generator_dir=model_dir if "model" in strategies else None,
        cache_dir=layout.cache / "synthesize",
    )
    t1 = time.monotonic()
    tokens = run_tokenize(
        config.tokenize,
        layout.curated,
        model_dir,
        arm / "tokens",
        knowledge_graph=graph if with_graph else None,
        synthetic_dir=arm / "synthesize",
    )
    train = run_train(config.train, model_dir, arm / "tokens", arm / "model")
    return {
        "dir": arm,
        "train_key": train["key"],
        "synthesize": synth["summary"],
        "tokenize": tokens["summary"],
        "train": train["summary"],
        "synth_s": round(t1 - t0, 1),
        "train_s": round(train.get("seconds", 0), 1),
    }


def reference_probe(config, probe_cfg, layout) -> Path:
    """The auto-made probe every arm is scored on: the recipe's entity strategy's held-out relations (cheap to
    make; the same items whatever ``--set`` changes)."""
    from cpt_core.synthesize.stage import PROBE_FILE, run_synthesize

    cfg = probe_cfg.model_copy(update={"strategies": ["entity"]})
    out = layout.run / "arms" / "probe" / "synthesize"
    run_synthesize(
        cfg, layout.curated, out, config.tokenize.heldout_fraction, config.tokenize.heldout_max_docs
    )
    return out / PROBE_FILE


def evaluate(config, model_dir: Path, heldout: Path, graph: Path, probe: Path, workdir: Path, key: str) -> dict:
    """One model's figures, kept in ``workdir/result.json`` for the model trained under ``key``."""
    from cpt_core.evaluate.stage import evaluate_model

    result_file = workdir / "result.json"
    if result_file.is_file() and json.loads(result_file.read_text()).get("key") == key:
        return json.loads(result_file.read_text())
    r = evaluate_model(config.evaluate, model_dir, heldout, graph, workdir, auto_probe=probe)
    keep = {k: r[k] for k in ("domain_bpb", "general_bpb", "probe_acc", "auto_probe_acc", "seconds")}
    keep["probe_n"], keep["auto_probe_n"] = r["probe"]["n"], (r["auto_probe"] or {}).get("n")
    keep["key"] = key
    workdir.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(keep))
    return keep


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pct(new: float, old: float) -> str:
    return f"{100 * (new - old) / old:+.1f} %"


def print_table(base: dict, rows: dict, results: dict, variant: str | None = None) -> None:
    print(
        "\n| arm | graph probe | auto probe | domain bits/byte | general bits/byte | tokens trained | steps "
        "| synthetic docs |\n|---|---|---|---|---|---|---|---|"
    )
    print(
        f"| base model | {base['probe_acc']:.1%} | {base['auto_probe_acc']:.1%} | {base['domain_bpb']:.4f} "
        f"| {base['general_bpb']:.4f} | 0 | 0 | |"
    )
    for name, r in results.items():
        s, t = rows[name]["synthesize"], rows[name]["train"]
        forms = ", ".join(f"{k} {v}" for k, v in sorted(s.get("docs_by_form", {}).items())) or "-"
        print(
            f"| {LABELS[name]}{f' [{variant}]' if variant else ''} | {r['probe_acc']:.1%} ({100 * (r['probe_acc'] - base['probe_acc']):+.1f} pts) "
            f"| {r['auto_probe_acc']:.1%} ({100 * (r['auto_probe_acc'] - base['auto_probe_acc']):+.1f} pts) "
            f"| {r['domain_bpb']:.4f} ({_pct(r['domain_bpb'], base['domain_bpb'])}) "
            f"| {r['general_bpb']:.4f} ({_pct(r['general_bpb'], base['general_bpb'])}) "
            f"| {t.get('tokens')} | {t.get('steps')} | {forms} |"
        )
    print(
        f"\ngraph probe: n={base['probe_n']}; auto probe: n={base['auto_probe_n']} (the entity arm's held-out "
        "relations, scored for every arm)"
    )


def main() -> None:
    args = parse_args()
    for key, value in (
        ("TOKENIZERS_PARALLELISM", "false"),
        ("HF_HUB_OFFLINE", "1"),
        ("DO_NOT_TRACK", "1"),
        ("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
        ("PREFECT_HOME", str(ROOT / ".prefect")),
    ):
        os.environ.setdefault(key, value)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.monotonic()
    from cpt_core.layout import RunLayout
    from cpt_core.train.base_model import resolve_base_model

    config, probe_cfg = hidden_graph_config(args)
    layout = RunLayout.create(config.root, config.run_id)
    print(f"run: {layout.run}  arms: {', '.join(args.arms)}  max_steps: {config.train.max_steps}", flush=True)
    graph = shared_stages(config, layout)
    model_dir = resolve_base_model(config.base_model, layout.cache)
    probe = reference_probe(config, probe_cfg, layout)
    probes_key = digest(probe)[:16]  # a changed auto probe re-scores every model, the base model included
    rows, results, heldout = {}, {}, None
    for name in args.arms:
        print(f"arm {name}: synthesize, tokenize, train ...", flush=True)
        rows[name] = run_arm(name, config, layout, model_dir, graph, args.variant)
        arm_heldout = rows[name]["dir"] / "tokens" / "heldout" / "domain.jsonl"
        if heldout is None:
            heldout = arm_heldout
        elif digest(arm_heldout) != digest(heldout):
            raise RuntimeError(f"arm {name}: held-out domain text differs from the first arm's")
        arm_dir = rows[name]["dir"]
        results[name] = evaluate(
            config, arm_dir / "model" / "final", heldout, graph, probe, arm_dir / "eval",
            f"{rows[name]['train_key']}:{probes_key}",
        )
        print(f"arm {name}: {json.dumps(results[name])} (train {rows[name]['train_s']} s)", flush=True)
    base = evaluate(config, model_dir, heldout, graph, probe, layout.run / "arms" / "base-eval", f"base:{probes_key}")
    wall = time.monotonic() - started
    print_table(base, rows, results, args.variant)
    print(f"wall time: {wall:.0f} s; training steps per arm: {config.train.max_steps or 'recipe (epochs)'}")
    auto = {k: v for k, v in results.items() if not ARMS[k][1] and k != "articles"}
    best = max(auto, key=lambda k: (auto[k]["probe_acc"], -auto[k]["general_bpb"])) if auto else None
    figures = {"base": f"{base['probe_acc']:.3f}"}
    if "articles" in results:
        figures["articles_only"] = f"{results['articles']['probe_acc']:.3f}"
    if best:
        figures["best_auto"] = f"{auto[best]['probe_acc']:.3f}"
        figures["best_arm"] = best
        figures["general_bpb_change"] = (
            f"{(auto[best]['general_bpb'] - base['general_bpb']) / base['general_bpb']:+.4f}"
        )
        figures["gain_points"] = f"{100 * (auto[best]['probe_acc'] - base['probe_acc']):+.1f}"
    if "graph" in results:
        figures["graph"] = f"{results['graph']['probe_acc']:.3f}"
    figures["wall_s"] = f"{wall:.0f}"
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
