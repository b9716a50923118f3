"""The ``cptflow`` command: run the whole flow, or one stage over a folder, outside Prefect's scheduler.

    cptflow run configs/demo.yaml                      # the knowledge-refresh flow, end to end
    cptflow run configs/demo.yaml --set train.lr=3e-4  # any field, dotted
    cptflow run configs/demo.yaml --run-id demo-1      # resume (or no-op rerun of) a given run
    cptflow stage quality --config C --input DOCS --output OUT   # one stage over datatrove JSONL
    cptflow validate configs/korean_7b.yaml            # check a recipe without running it
    cptflow plan configs/korean_7b.yaml                # tokens, steps, per-GPU memory and time of its training
    cptflow registry ls --root R                       # the model registry: runs, champion, lineage
    cptflow registry reset-champion --root R --to RUN  # repair the champion pointer (or --base)
    cptflow notify snapshot /exports/wiki-2025-01-06   # tell the Prefect server a new snapshot is ready

A run or a stage holds its root (``cpt_core.lock.RootLock``): a second one on the same root fails at once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import NoReturn

import typer

from cpt_core.config import ConfigError, RunConfig, load_config
from cpt_core.layout import CURATE_STEPS
from cpt_core.lock import RootBusyError, RootLock
from cpt_core.storage import RootMirror, is_remote

# Offline-friendly defaults for Prefect's embedded server; users' explicit settings win.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Continued pre-training, end to end.")
registry_app = typer.Typer(no_args_is_help=True, help="The model registry: runs, champion pointer, lineage.")
app.add_typer(registry_app, name="registry")
notify_app = typer.Typer(no_args_is_help=True, help="Events for the Prefect server's automations.")
app.add_typer(notify_app, name="notify")


class Stage(str, Enum):
    crawl = "crawl"
    extract = "extract"
    language = "language"
    quality = "quality"
    select = "select"
    exact_dedup = "exact_dedup"
    near_dedup = "near_dedup"
    decontaminate = "decontaminate"
    tokenize = "tokenize"
    train = "train"
    evaluate = "evaluate"


def _load(config: Path, overrides: list[str] | None, run_id: str | None = None) -> RunConfig:
    try:
        cfg = load_config(config, overrides or [])
    except ConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    if run_id:
        cfg = cfg.model_copy(update={"run_id": run_id})
    return cfg


SET_HELP = "override a field: --set train.lr=3e-4 (repeatable)"


@app.command()
def validate(config: Path, set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP)) -> None:
    """Check a config: unknown keys and bad values are reported with the file and the field."""
    cfg = _load(config, set_)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))


@app.command()
def run(
    config: Path,
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    run_id: str | None = typer.Option(None, help="resume this run id (a finished run does no work)"),
    fresh: bool = typer.Option(False, help="delete the root's runs/ and state/ first (demo convenience)"),
) -> None:
    """Run the knowledge-refresh flow end to end and print where its report is."""
    cfg = _load(config, set_, run_id)
    from flows.knowledge_refresh import knowledge_refresh

    try:
        if fresh and is_remote(cfg.root):
            typer.echo(f"--fresh clears a local root only; delete {cfg.root}/runs and state/ with your storage's tools")
            raise typer.Exit(2)
        if fresh:
            with RootLock(cfg.root, "fresh"):
                shutil.rmtree(Path(cfg.root) / "runs", ignore_errors=True)
                for path in (Path(cfg.root) / "state").glob("*"):
                    if path.is_dir():
                        shutil.rmtree(path)
                    elif path.name != ".root.lock":
                        path.unlink()
        result = knowledge_refresh(cfg)
    except RootBusyError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    typer.echo("")
    typer.echo(f"run:    {result['run_id']}  ({result['run_dir']})")
    typer.echo(f"outcome: {result['outcome']}")
    if result["model"]:
        typer.echo(f"model:  {result['model']}  promoted: {result['promoted']}")
    typer.echo(f"report: {result['report']}")


def _documents_input(path: Path, scratch: Path) -> Path:
    """Stages read ``<input>/documents/``; accept a bare folder of JSONL files too."""
    if (path / "documents").is_dir():
        return path
    if not path.is_dir() or not any(path.glob("*.jsonl*")):
        typer.echo(f"input {path} holds neither documents/ nor *.jsonl[.gz] files", err=True)
        raise typer.Exit(2)
    scratch.mkdir(parents=True, exist_ok=True)
    link = scratch / "documents"
    if not link.exists():
        link.symlink_to(path.resolve(), target_is_directory=True)
    return scratch


@app.command()
def stage(
    name: Stage,
    config: Path = typer.Option(..., help="run config (YAML)"),
    input: Path | None = typer.Option(
        None,
        help="the previous stage's output folder (extract: the crawl's; optional when the config's sources "
        "include documents or warc)",
    ),
    output: Path = typer.Option(..., help="this stage's output folder"),
    model: Path | None = typer.Option(None, help="model/tokenizer folder (tokenize, train, evaluate base)"),
    heldout: Path | None = typer.Option(None, help="held-out domain JSONL (evaluate)"),
    state: Path | None = typer.Option(None, help="state folder (crawl state, dedup index); default <root>/state"),
    run_id: str = typer.Option("cli", help="run id under which state entries are kept"),
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    seed: list[str] | None = typer.Option(None, "--seed", help="crawl: start URL, replacing the config's seeds"),
    allow_host: list[str] | None = typer.Option(
        None, "--allow-host", help="crawl: host (or host:port) allowed to be a private address, e.g. 127.0.0.1"
    ),
) -> None:
    """Run one stage over a folder, exactly as the flow would, and print its manifest summary."""
    from cpt_core.progress import log_progress

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    progress = log_progress(logging.getLogger(f"cptflow.{name.value}"))
    cfg = _with_crawl_overrides(_load(config, set_), seed, allow_host)
    if is_remote(cfg.root):
        typer.echo(f"root {cfg.root} is a URL: `cptflow stage` works on local folders (--set root=DIR)", err=True)
        raise typer.Exit(2)
    try:
        with RootLock(cfg.root, run_id):
            manifest = _run_one_stage(name, cfg, input, output, model, heldout, state, run_id, progress)
    except RootBusyError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1) from None
    summary = {k: v for k, v in manifest.get("summary", {}).items() if k != "log_line"}
    typer.echo(json.dumps({"stage": name.value, "skipped": manifest.get("skipped"), **summary}, indent=2))
    if manifest.get("summary", {}).get("log_line"):
        typer.echo(manifest["summary"]["log_line"])
    for place in manifest.get("summary", {}).get("unreadable", []):
        typer.echo(f"unreadable input (counted as dropped, the rest went on): {place}", err=True)


def _with_crawl_overrides(cfg: RunConfig, seeds: list[str] | None, allow_hosts: list[str] | None) -> RunConfig:
    """``--seed`` replaces the crawled sources by one web source with these seeds (no sitemaps or feeds);
    ``--allow-host`` extends the private-address allowlist of every crawled source."""
    from cpt_core.ingest.crawl import CrawlConfig
    from cpt_core.ingest.sources import DemoSource, WebSource

    if not seeds and not allow_hosts:
        return cfg
    crawled = [s for s in cfg.ingest.sources if isinstance(s, WebSource | DemoSource)]
    others = [s for s in cfg.ingest.sources if not isinstance(s, WebSource | DemoSource)]
    if seeds:
        base = cfg.ingest.crawl or CrawlConfig()
        crawl = base.model_copy(update={"seed_urls": list(seeds), "sitemaps": [], "feeds": []})
        crawled = [WebSource(crawl=CrawlConfig.model_validate(crawl.model_dump()))]
    if allow_hosts:
        crawled = [
            s.model_copy(update={"crawl": s.crawl.model_copy(
                update={"allow_private_hosts": [*s.crawl.allow_private_hosts, *allow_hosts]})})
            for s in crawled
        ]
    return cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"sources": [*crawled, *others]})})


def _run_one_stage(
    name: Stage,
    cfg: RunConfig,
    input: Path | None,
    output: Path,
    model: Path | None,
    heldout: Path | None,
    state: Path | None,
    run_id: str,
    progress,
) -> dict:
    state = state or Path(cfg.root) / "state"
    kg = Path(cfg.knowledge_graph) if cfg.knowledge_graph else None

    def need(value, what):
        if value is None:
            typer.echo(f"stage {name.value} needs --{what}", err=True)
            raise typer.Exit(2)
        return value

    if name is Stage.crawl:
        from cpt_core.ingest.crawl import crawl_with_state

        manifest = crawl_with_state(cfg.ingest.crawl, output, state, run_id, progress)
    elif name is Stage.extract:
        manifest = _run_extract(cfg, input, output, progress, need)
    elif name.value in CURATE_STEPS:
        from cpt_core.curate.pipeline import run_curate_step

        docs = _documents_input(need(input, "input"), output.with_name(output.name + ".input"))
        eval_texts = _eval_texts(cfg, state, run_id, output) if name is Stage.decontaminate else None
        manifest = run_curate_step(
            name.value, cfg.curate, docs, output, state / "dedup", run_id, progress, eval_texts=eval_texts
        )
    elif name is Stage.tokenize:
        from cpt_core.data.tokenize import run_tokenize

        docs = _documents_input(need(input, "input"), output.with_name(output.name + ".input"))
        manifest = run_tokenize(cfg.tokenize, docs, need(model, "model"), output, kg, progress)
    elif name is Stage.train:
        from cpt_core.train.launch import run_train

        manifest = run_train(cfg.train, need(model, "model"), need(input, "input"), output, progress)
    else:
        from cpt_core.evaluate.stage import run_evaluate

        manifest = run_evaluate(
            cfg.evaluate, need(model, "model"), need(input, "input"), need(heldout, "heldout"), kg, output, progress
        )
    return manifest


@app.command()
def plan(
    config: Path,
    set_: list[str] | None = typer.Option(None, "--set", help=SET_HELP),
    tokens: int | None = typer.Option(None, help="training tokens (default: estimated from the crawl budget)"),
    gpu_gb: float = typer.Option(80, help="memory of one GPU, GB"),
    gpu_name: str = typer.Option("H100", help="the GPU, for the printout"),
    peak_tflops: float = typer.Option(989, help="dense bf16 peak of one GPU, TFLOP/s"),
    mfu: float = typer.Option(0.4, help="assumed model FLOPs utilisation"),
    shape: str | None = typer.Option(None, help="model shape when no config.json is at hand: layers=32,hidden=..."),
) -> None:
    """Print a recipe's training plan: tokens, steps, per-GPU memory per layout, time at an assumed MFU."""
    from cpt_core.train.plan import plan_recipe, render

    cfg = _load(config, set_)
    try:
        overrides = None
        if shape:
            overrides = {k: (v.lower() == "true" if k == "tied" else int(v))
                         for k, v in (kv.split("=", 1) for kv in shape.split(","))}  # fmt: skip
        result = plan_recipe(cfg, tokens=tokens, gpu_gb=gpu_gb, peak_tflops=peak_tflops, mfu=mfu,
                             shape_overrides=overrides)  # fmt: skip
    except (ValueError, TypeError) as err:
        _fail(err)
    typer.echo(render(result, cfg.name, gpu_name, peak_tflops, mfu))


def _eval_texts(cfg: RunConfig, state: Path, run_id: str, output: Path) -> Path:
    """The run's evaluation texts (as the curate flow gathers them), written beside ``output``."""
    from cpt_core.curate.decontaminate import gather_eval_texts, write_eval_texts
    from cpt_core.state import visible_runs

    probes = [state / "probes" / f"{r}.jsonl" for r in visible_runs(state, run_id)] if cfg.evaluate.auto_probe else []
    kg = Path(cfg.knowledge_graph) if cfg.knowledge_graph and cfg.evaluate.fact_probe else None
    rows = gather_eval_texts(
        kg, cfg.evaluate.lm_eval_tasks, cfg.evaluate.general_heldout, [p for p in probes if p.is_file()]
    )
    return write_eval_texts(rows, output.with_name(output.name + ".eval_texts.jsonl"))


def _run_extract(cfg: RunConfig, crawl_dir: Path | None, output: Path, progress, need) -> dict:
    """Extract over the crawl folder ``--input`` and the config's documents/warc sources (``--input`` may be
    left out when the config has such sources and nothing crawled to read)."""
    from cpt_core.ingest.extract import run_extract
    from cpt_core.ingest.sources import DocumentsSource, WarcSource

    sources = list(cfg.ingest.sources)
    if not any(isinstance(s, DocumentsSource | WarcSource) for s in sources):
        crawl_dir = need(crawl_dir, "input")
    return run_extract(
        cfg.ingest.extract, crawl_dir, output, progress, sources=sources, secret_block=_secret_block
    )


def _secret_block(name: str) -> str:
    """The value of a Prefect Secret block named by a source's storage options."""
    from prefect.blocks.system import Secret

    value = Secret.load(name).get()
    return value if isinstance(value, str) else json.dumps(value)


ROOT_HELP = "the data root holding runs/ and state/ (a folder or, for ls and show, an fsspec URL)"


@contextmanager
def _registry(root: str):
    """The root's registry; a URL root's (endpoint and credentials from AWS_ENDPOINT_URL etc.) read into a
    scratch folder."""
    from cpt_core.evaluate.registry import Registry

    if not is_remote(root):
        yield Registry(Path(root).expanduser() / "state" / "registry.json")
        return
    with tempfile.TemporaryDirectory(prefix="cptflow-registry-") as scratch:
        mirror = RootMirror(root, scratch)
        mirror.pull("state/registry.json")
        yield Registry(mirror.local / "state" / "registry.json")


def _fail(err: Exception) -> NoReturn:
    typer.echo(str(err.args[0]) if isinstance(err, KeyError) else str(err), err=True)
    raise typer.Exit(1) from None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.2f}%"


@registry_app.command("ls")
def registry_ls(root: str = typer.Option(..., help=ROOT_HELP)) -> None:
    """Every recorded run: gate verdict, parent, general bits/byte drift since the original base, folder."""
    from cpt_core.evaluate.registry import ChampionMissingError

    with _registry(root) as registry:
        try:
            history, champion = registry.history(), registry.champion()
        except ValueError as err:
            _fail(err)
    typer.echo(f"champion: {champion['run_id'] if champion else '(none: runs start from the base model)'}")
    for e in history:
        mark = "*" if champion and champion["run_id"] == e["run_id"] else " "
        folder = "" if is_remote(root) or Path(e["model_dir"]).exists() else "  (model folder missing)"
        typer.echo(
            f"{mark} {e['run_id']}  {'promoted' if e['promote'] else 'rejected'}  parent={e['parent_run_id'] or e['parent']}"
            f"  general_vs_base={_pct(e.get('general_bpb_rel_to_base'))}  {e['model_dir']}{folder}"
        )
    if is_remote(root):  # the champion's folder is in the bucket; a run pulls it from there
        return
    try:
        registry.champion_model()
    except ChampionMissingError as err:
        typer.echo(str(err), err=True)


@registry_app.command("show")
def registry_show(run: str, root: str = typer.Option(..., help=ROOT_HELP)) -> None:
    """One run's registry entry and its lineage back to the first base model, as JSON."""
    with _registry(root) as registry:
        try:
            entry = registry.entry(run)
            if entry is None:
                raise KeyError(f"run {run!r} is not in the model registry {root}")
            lineage = [c["run_id"] or c["model"] for c in registry.lineage(run)]
        except (KeyError, ValueError) as err:
            _fail(err)
        champion = registry.champion()
    is_champion = bool(champion and champion["run_id"] == run)
    typer.echo(json.dumps({**entry, "champion": is_champion, "lineage": lineage}, indent=2))


@registry_app.command("reset-champion")
def registry_reset_champion(
    root: str = typer.Option(..., help=ROOT_HELP),
    to: str | None = typer.Option(None, help="a promoted run whose model folder exists"),
    base: bool = typer.Option(False, help="no champion: the next run starts from the configured base model"),
) -> None:
    """Repair the champion pointer: to a promoted run whose folder exists, or back to the base model."""
    if (to is None) == (not base):
        typer.echo("reset-champion needs exactly one of --to RUN or --base", err=True)
        raise typer.Exit(2)
    if is_remote(root):
        _fail(ValueError(f"reset-champion repairs a local root; {root} is a URL (edit its state/registry.json)"))
    from cpt_core.evaluate.registry import Registry

    registry = Registry(Path(root).expanduser() / "state" / "registry.json")
    if not registry.path.exists():
        _fail(FileNotFoundError(f"no model registry at {registry.path}"))
    try:
        with RootLock(root, "registry-reset-champion"):
            champion = registry.reset_champion(to)
    except (RootBusyError, KeyError, ValueError, FileNotFoundError) as err:
        _fail(err)
    if champion:
        typer.echo(f"champion: {champion['run_id']} ({champion['model_dir']})")
    else:
        typer.echo("champion: none; the next run starts from the configured base model")


@notify_app.command("snapshot")
def notify_snapshot(
    path: str = typer.Argument(..., help="the snapshot: a folder or fsspec URL of documents"),
    source: str = typer.Option("snapshot", help="the source's name, as the run's reports show it"),
) -> None:
    """Emit `cptflow.snapshot.ready` to the Prefect server (PREFECT_API_URL): the data-refresh/daily
    deployment's trigger starts a data-refresh run that ingests PATH."""
    from prefect.settings import PREFECT_API_URL

    from flows.events import emit_snapshot_ready

    if "://" not in path:
        if not Path(path).exists():
            typer.echo(f"snapshot {path} does not exist", err=True)
            raise typer.Exit(2)
        path = str(Path(path).resolve())
    if not PREFECT_API_URL.value():
        typer.echo("PREFECT_API_URL is not set: events need a Prefect server (see README, Operations)", err=True)
        raise typer.Exit(2)
    from prefect.events.worker import EventsWorker

    event = emit_snapshot_ready(path, source)
    EventsWorker.drain_all(timeout=30)  # sent before the command returns, not at interpreter exit
    if event is None:
        typer.echo("events are disabled in this Prefect profile: nothing was sent", err=True)
        raise typer.Exit(1)
    typer.echo(f"emitted {event.event} for {path} (event {event.id})")


def main() -> None:  # pragma: no cover - console entry
    sys.exit(app())


if __name__ == "__main__":
    main()
