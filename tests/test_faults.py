"""Kill -9 anywhere, rerun, same output: every stage, parametrised by kill point.

Each case runs one stage through ``cptflow stage`` in its own process group and SIGKILLs the whole group at a
named point inside the stage (``cpt_core.faults``). The same command is then run again, unharmed, and its
output must equal an uninterrupted run's: the same documents (no duplicate, none missing), the same WARC
records, the same token shards.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from warcio.archiveiterator import ArchiveIterator

from cpt_core.config import validate_config
from cpt_core.curate.pipeline import run_curate_step
from cpt_core.data.tokenize import run_tokenize
from cpt_core.demo.server import serve
from cpt_core.demo.site import DemoSiteConfig, build_site
from cpt_core.evaluate.stage import run_evaluate
from cpt_core.faults import ENV
from cpt_core.ingest.crawl import run_crawl
from cpt_core.ingest.extract import run_extract
from cpt_core.layout import CURATE_STEPS
from cpt_core.train.base_model import build_tiny_llama
from cpt_core.train.launch import run_train

SITE = {"seed": 5, "n_facts": 8, "korean_share": 0.3, "slow_delay_s": 0.0}


def _config(root: Path, base_url: str) -> dict:
    return {
        "name": "faults",
        "root": str(root),
        "ingest": {
            "sources": [{"kind": "web", "crawl": {"seed_urls": [base_url], "timeout_s": 5.0, "retries": 0,
                                                  "max_pages": 200, "delay_s": 0.0,
                                                  "allow_private_hosts": ["127.0.0.1"]}}],
            "extract": {"timeout_s": 30.0},
        },
        "curate": {"language": {"languages": ["en", "ko"]}},
        "tokenize": {"seq_len": 64, "replay": {"source": "stdlib-docstrings", "max_chars": 6000},
                     "shard_sequences": 8},
        "evaluate": {"general_heldout": {"max_chars": 3000}, "domain_max_chars": 3000, "bpb_seq_len": 64,
                     "fact_probe": False},
        "train": {"max_steps": 10, "micro_batch_size": 2, "checkpoint_every": 3, "log_every": 1,
                  "precision": "fp32", "lr": 1e-3},
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The demo site served for the whole module, a tiny model, and an uninterrupted run of every stage."""
    root = tmp_path_factory.mktemp("faults")
    site = build_site(DemoSiteConfig(**SITE))
    with serve(site, "127.0.0.1", 0, 0.0) as base_url:
        data = _config(root, base_url)
        (root / "run.yaml").write_text(yaml.safe_dump(data))
        cfg = validate_config(data, "faults")
        ref = root / "reference"
        run_crawl(cfg.ingest.crawl, ref / "crawl", {})
        run_extract(cfg.ingest.extract, ref / "crawl", ref / "extract")
        previous = ref / "extract"
        for step in CURATE_STEPS:
            run_curate_step(step, cfg.curate, previous, ref / step, root / "ref-state", "ref", earlier_runs=[])
            previous = ref / step
        texts = [d["text"] for d in _docs(previous / "documents")]
        model = build_tiny_llama(root / "model", texts, vocab_size=400, seq_len=64)
        run_tokenize(cfg.tokenize, previous, model, ref / "tokenize")
        run_train(cfg.train, model, ref / "tokenize", ref / "train")
        yield root, cfg, ref, model


def _docs(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(Path(folder).glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


def _warc(folder: Path) -> list[tuple[str, bytes]]:
    records = []
    for path in sorted((folder / "warc").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh):
                if rec.rec_type == "response":
                    records.append((rec.rec_headers.get_header("WARC-Target-URI"), rec.content_stream().read()))
    return records


def _fetch_log(folder: Path) -> list[tuple[str, str]]:
    rows = [json.loads(x) for x in (folder / "fetch_log.jsonl").read_text().splitlines()]
    return sorted((r["url"], r["reason"]) for r in rows)


def _stage_cmd(root: Path, stage: str, input_dir: Path | None, output: Path, model: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "flows.cli", "stage", stage, "--config", str(root / "run.yaml"),
           "--output", str(output), "--state", str(output.parent / "state"), "--run-id", "killed"]
    if input_dir is not None:
        cmd += ["--input", str(input_dir)]
    if model is not None:
        cmd += ["--model", str(model)]
    return cmd


def _run(cmd: list[str], kill_at: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if kill_at:
        env[ENV] = kill_at
    # its own process group: the kill takes the stage and every worker it started, and nothing else
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, start_new_session=True)


# stage, kill point, input (a reference output), model needed
CASES = [
    ("crawl", "crawl:page@5", None, False),
    ("crawl", "crawl:commit", None, False),
    ("extract", "extract:document@3", "crawl", False),
    *[(step, "curate:document@4", prev, False)
      for step, prev in zip(CURATE_STEPS, ("extract", *CURATE_STEPS[:-1]), strict=True)],
    ("near_dedup", "curate/near_dedup:commit", "exact_dedup", False),
    ("tokenize", "tokenize:shards", "near_dedup", True),
]


@pytest.mark.parametrize(("stage", "kill_at", "source", "needs_model"), CASES, ids=[c[1] + "-" + c[0] for c in CASES])
def test_killed_stage_reruns_to_the_same_output(world, tmp_path, stage, kill_at, source, needs_model):
    root, cfg, ref, model = world
    out = tmp_path / stage
    cmd = _stage_cmd(root, stage, ref / source if source else None, out, model if needs_model else None)
    killed = _run(cmd, kill_at)
    assert killed.returncode == -signal.SIGKILL, f"never reached {kill_at}:\n{killed.stderr[-3000:]}"
    assert not (out / "_manifest.json").exists(), "killed before the stage committed"
    again = _run(cmd, None)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "_manifest.json").exists() and not out.with_name(out.name + ".partial").exists()
    expected = ref / stage
    if stage == "crawl":
        assert _warc(out) == _warc(expected)
        assert _fetch_log(out) == _fetch_log(expected)
    elif stage == "tokenize":
        for rel in ("heldout/domain.jsonl", *[p.relative_to(expected).as_posix()
                                              for p in sorted((expected / "train").glob("*.arrow"))]):
            assert (out / rel).read_bytes() == (expected / rel).read_bytes(), rel
    else:
        for sub in ("documents", "dropped"):
            got, want = _docs(out / sub), _docs(expected / sub)
            assert [d["id"] for d in got] == [d["id"] for d in want], f"{sub}: duplicated or missing documents"
            assert got == want


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_killed_training_resumes_from_its_checkpoint_and_leaves_no_orphan(world, tmp_path):
    import time

    root, cfg, ref, model = world
    out = tmp_path / "train"
    cmd = _stage_cmd(root, "train", ref / "tokenize", out, model)
    killed = _run(cmd, "train:step@7")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    deadline = time.monotonic() + 10
    while _processes_mentioning(str(out)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_mentioning(str(out)), "the trainer outlived the killed stage"
    assert list(out.with_name("train.checkpoints").glob("step-*")), "a checkpoint survived the kill"
    again = _run(cmd, None)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads((out / "_manifest.json").read_text())["summary"]
    assert summary["resumed_from_step"] == 6 and summary["steps"] == 10
    got, want = _metrics(out), _metrics(ref / "train")
    assert [r["step"] for r in got] == list(range(1, 11)), "each step logged once"
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], abs=1e-3), "exact resume"


def test_killed_promotion_records_the_run_once(tmp_path):
    import textwrap

    model = tmp_path / "model"
    model.mkdir()
    results = tmp_path / "results.json"
    results.write_text(json.dumps({
        "base": {"domain_bpb": 2.0, "general_bpb": 1.0, "probe_acc": 0.3},
        "trained": {"domain_bpb": 1.6, "general_bpb": 1.005, "probe_acc": 0.5},
    }))
    code = textwrap.dedent(f"""
        from cpt_core.evaluate.gate import PromoteConfig
        from cpt_core.evaluate.registry import run_promote
        run_promote(PromoteConfig(), {str(tmp_path / "registry.json")!r}, "w1", {str(model)!r}, {str(results)!r},
                    {{"parent": "base"}}, {str(tmp_path / "promote")!r})
    """)
    cmd = [sys.executable, "-c", code]
    killed = _run(cmd, "promote:recorded")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "promote" / "_manifest.json").exists()
    again = _run(cmd, None)
    assert again.returncode == 0, again.stderr[-3000:]
    registry = json.loads((tmp_path / "registry.json").read_text())
    assert [e["run_id"] for e in registry["history"]] == ["w1"], "recorded once"
    assert registry["champion"]["run_id"] == "w1"
    decision = json.loads((tmp_path / "promote" / "decision.json").read_text())
    assert decision["promote"] is True, decision["reasons"]


def test_killed_evaluation_reruns_to_the_same_results(world, tmp_path):
    root, cfg, ref, model = world
    out = tmp_path / "eval"
    heldout = ref / "tokenize" / "heldout" / "domain.jsonl"
    cmd = _stage_cmd(root, "evaluate", ref / "train" / "final", out, model) + ["--heldout", str(heldout)]
    killed = _run(cmd, "evaluate:model@1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (out / "_manifest.json").exists()
    again = _run(cmd, None)
    assert again.returncode == 0, again.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    reference = run_evaluate(cfg.evaluate, model, ref / "train" / "final", heldout, None, tmp_path / "ref-eval")
    want = json.loads((tmp_path / "ref-eval" / "results.json").read_text())
    assert reference["summary"]["trained_domain_bpb"] == results["trained"]["domain_bpb"]
    for column in ("base", "trained"):
        for metric in ("domain_bpb", "general_bpb"):
            assert results[column][metric] == pytest.approx(want[column][metric], rel=1e-6)


def test_only_transient_errors_are_worth_a_retry():
    import errno

    import httpx
    from pydantic import BaseModel, ValidationError

    from cpt_core.faults import RetryConfig, TransientError, is_transient

    class Strict(BaseModel):
        n: int

    try:
        Strict(n="x")
    except ValidationError as err:
        invalid = err
    wrapped = RuntimeError("upload failed")
    wrapped.__cause__ = ConnectionResetError(errno.ECONNRESET, "reset")
    transient = [ConnectionResetError(), TimeoutError("read timed out"), TransientError("storage busy"),
                 OSError(errno.EAGAIN, "try again"), httpx.ConnectError("refused"), wrapped]  # fmt: skip
    deterministic = [ValueError("bad field"), invalid, FileNotFoundError(2, "missing input"), PermissionError(),
                     KeyError("text"), RuntimeError("training exited with code 1"), None]  # fmt: skip
    assert [is_transient(e) for e in transient] == [True] * len(transient)
    assert [is_transient(e) for e in deterministic] == [False] * len(deterministic)
    assert RetryConfig().retries == 2 and RetryConfig(delay_s=2).delays() == [2, 4]
    with pytest.raises(ValidationError):
        RetryConfig(retires=3)
